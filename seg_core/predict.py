"""python -m seg_core.predict: masks (and cut-outs, annotations) for every photo in a folder.

The library side is :mod:`seg_core.service.batch`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seg_core.outputs.cutout import (
    FORMATS,
    TRANSPARENT,
    BackgroundError,
    parse_background,
)
from seg_core.runtime.base import DEFAULT_MODEL, ModelLoadError
from seg_core.runtime.registry import available_predictors, load_predictor
from seg_core.service.batch import (
    CLEAN_STEPS,
    ENGINES,
    PHOTO_EXTENSIONS,
    BatchReport,
    OutputConflictError,
    OutputOptions,
    check_no_overwrite,
    find_photos,
    run_batch,
    write_annotations,
)


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _output_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> OutputOptions:
    """The cut-out and refine flags as :class:`OutputOptions`; any cut-out flag implies ``--cutout``."""
    try:
        background = parse_background(args.background)
    except BackgroundError as exc:
        parser.error(str(exc))
    options = OutputOptions(
        refine=args.refine,
        soft_edges=args.soft_edges,
        background=background,
        crop=args.crop or args.square,
        square=args.square,
        fmt=args.format,
    )
    args.cutout = args.cutout or options.shapes_cutout
    if args.polygons and args.coco is None:
        parser.error("--polygons needs --coco PATH")
    if args.pixels_per_mm is not None and args.measurements is None:
        parser.error("--pixels-per-mm needs --measurements PATH")
    for path in filter(None, (args.coco, args.measurements)):
        if path.is_dir():
            parser.error(f"{path} is a folder; give a file name")
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.predict",
        description="Write <stem>_mask.png (and <stem>_cutout.png) for every photo in a folder. "
        "Unreadable photos are reported and skipped; existing outputs are kept unless --overwrite. "
        "Exit status: 0 all photos done, 1 some photos failed, 2 usage error.",
    )
    parser.add_argument("input_dir", type=Path, help="folder of photos (JPEG, PNG, WebP, BMP, TIFF, GIF)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must not be the input folder)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument("--threshold", type=_threshold, default=0.5, help="mask threshold in [0, 1] (default 0.5)")
    parser.add_argument("--cutout", action="store_true", help="also write a transparent cut-out PNG")
    parser.add_argument(
        "--clean",
        nargs="+",
        choices=(*CLEAN_STEPS, "none"),
        default=["tidy"],
        help="tidy (default): drop regions under a tenth of the largest (scale bars, specks) and fill small "
        "holes, keeping every butterfly; largest: keep only the largest region; holes: fill every hole; "
        "none: the network's mask as it is",
    )
    parser.add_argument("--refine", action="store_true", help="redraw the mask's edge with GrabCut (slower)")
    parser.add_argument("--overwrite", action="store_true", help="redo photos whose outputs already exist")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (default); ray: Ray Data, one loaded model per actor (needs requirements-ray.txt)",
    )
    parser.add_argument("--address", help="with --engine ray: join this Ray cluster (e.g. auto) instead of a local one")
    parser.add_argument("--actors", type=int, default=2, help="with --engine ray: actors, one model each (default 2)")
    cut = parser.add_argument_group("cut-outs (each of these implies --cutout)")
    cut.add_argument("--soft-edges", action="store_true", help="soft alpha edges from a matte, no background fringe")
    cut.add_argument(
        "--background",
        default=TRANSPARENT,
        help="transparent (default), blur (the photo blurred), a colour (white, #1e90ff) or an image file",
    )
    cut.add_argument("--crop", action="store_true", help="crop to all butterflies with a 5%% margin")
    cut.add_argument("--square", action="store_true", help="make the crop square (implies --crop)")
    cut.add_argument("--format", choices=FORMATS, default="png", help="cut-out format (default png; masks stay PNG)")
    notes = parser.add_argument_group("annotations (for every photo with a mask in --out, earlier runs included)")
    notes.add_argument("--coco", type=Path, metavar="PATH", help="write one COCO instances JSON file for the batch")
    notes.add_argument("--polygons", action="store_true", help="with --coco: polygons instead of RLE masks")
    notes.add_argument("--measurements", type=Path, metavar="CSV", help="write area, box and wingspan per butterfly")
    notes.add_argument("--pixels-per-mm", type=_positive, help="with --measurements: the photos' scale, for mm columns")
    args = parser.parse_args(argv)
    args.clean = [] if "none" in args.clean else args.clean
    options = _output_options(parser, args)
    if not args.input_dir.is_dir():
        parser.error(f"{args.input_dir} is not a folder")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder")
    photos, others = find_photos(args.input_dir)
    if not photos:
        parser.error(f"{args.input_dir} holds no photos ({', '.join(sorted(PHOTO_EXTENSIONS))})")
    try:
        # Checked before the model loads, so a wrong --out fails at once.
        check_no_overwrite(args.input_dir, args.out, photos + others, args.cutout, options)
    except OutputConflictError as exc:
        parser.error(str(exc))
    inputs = {p.resolve() for p in photos + others}
    for path in filter(None, (args.coco, args.measurements)):
        if path.resolve() in inputs:
            parser.error(f"writing {path} would overwrite an input file")
    if args.engine == "ray":
        report = _run_on_ray(parser, args, options)
    else:
        try:
            predictor = load_predictor(args.model)
        except ModelLoadError as exc:
            parser.error(str(exc))
        report = run_batch(
            args.input_dir,
            args.out,
            predictor,
            args.threshold,
            args.cutout,
            args.clean,
            args.overwrite,
            not args.no_progress,
            options,
        )
    if args.coco or args.measurements:
        for path in filter(None, (args.coco, args.measurements)):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_annotations(
            args.input_dir,
            args.out,
            report,
            args.coco,
            args.measurements,
            args.polygons,
            args.pixels_per_mm,
            not args.no_progress,
        )
    print(f"outputs in {args.out}")
    print(report.summary())
    return report.exit_code


def _run_on_ray(parser: argparse.ArgumentParser, args: argparse.Namespace, options: OutputOptions) -> BatchReport:
    # The actors load the model; the driver only checks the name, so it never holds a copy.
    if args.model not in available_predictors():
        parser.error(f"unknown model {args.model!r}; available: {', '.join(available_predictors())}")
    if args.actors < 1:
        parser.error("--actors must be at least 1")
    try:
        from seg_core.service import ray_engine
    except ImportError as exc:
        parser.error(f"--engine ray needs Ray: python3 -m pip install -r requirements-ray.txt ({exc})")
    return ray_engine.run_batch_ray(
        args.input_dir,
        args.out,
        args.model,
        args.threshold,
        args.cutout,
        args.clean,
        args.overwrite,
        not args.no_progress,
        options,
        address=args.address,
        actors=args.actors,
    )


if __name__ == "__main__":
    sys.exit(main())
