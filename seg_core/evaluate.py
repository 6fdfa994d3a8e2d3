"""python -m seg_core.evaluate: every model on a Leeds split, or on your own labelled collection.

A Leeds split is written to ``models/eval_<split>.csv``; a collection (``--folder``
or ``--coco``) to ``eval_<collection>.csv`` and ``eval_<collection>.json`` in its
own folder (or ``--out-dir``). The library side is :mod:`seg_core.evaluation.evaluate`
and :mod:`seg_core.data.collections`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from tqdm import tqdm

from seg_core.core.imaging import InvalidImageError
from seg_core.core.paths import MODELS_DIR
from seg_core.data.collections import (
    Collection,
    CollectionError,
    EmptyCollectionError,
    check_pairs,
    require_pairs,
    scan_coco,
    scan_folder,
)
from seg_core.data.leeds import (
    DATA_ENV,
    DEFAULT_DATA,
    SPLIT_FILE,
    SPLITS,
    resolve_data_dir,
    scan_dataset,
)
from seg_core.evaluation.evaluate import (
    SUMMARY_LABELS,
    SUMMARY_THRESHOLD,
    eval_path,
    evaluate,
    evaluate_collection,
    format_table,
    model_names,
    summarize,
)
from seg_core.evaluation.generalisation import (
    GENERALISATION_FILE,
    load_generalisation,
    read_blend_recipe,
    run_blend,
    run_recipe,
    run_zero_shot,
    species_folds,
    write_rows,
)
from seg_core.evaluation.generalisation import summarize as summarize_species
from seg_core.evaluation.results import (
    ResultsFormatError,
    load_eval,
)
from seg_core.runtime.base import DEFAULT_ALIAS, DEFAULT_MODEL, ModelLoadError, resolve_alias

EXAMPLES = f"""examples:
  python -m seg_core.evaluate --split test
  python -m seg_core.evaluate --folder ~/my-butterflies --models {DEFAULT_MODEL} otsu --summary-json summary.json
  python -m seg_core.evaluate --coco labels.json --images photos/ --out-dir results/
  python -m seg_core.evaluate --leave-species-out recipes/generalisation/*.toml --models u2netp

A collection folder holds images/ (PNG, JPEG, TIFF, BMP or WebP photos) and masks/
(masks with the same file names: 0/255, 0/1, palette or any non-zero as butterfly;
the convention is detected and printed). Files that cannot be used are listed with
the reason and left out; the exit status is 0 when at least one pair was evaluated.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.evaluate",
        description="Evaluate every model (trained U-Nets and classical baselines) at each photo's own resolution, "
        "on a split of the Leeds dataset or on your own labelled collection; write eval_<name>.csv and print a "
        f"summary at threshold {SUMMARY_THRESHOLD}.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--split", nargs="+", choices=SPLITS, help="Leeds split(s) to evaluate (default: test)")
    source.add_argument("--folder", type=Path, metavar="DIR", help="a collection: DIR/images/ and DIR/masks/")
    source.add_argument(
        "--leave-species-out",
        nargs="+",
        type=Path,
        metavar="RECIPE",
        help="train each recipe file once per fold of species without them and score every photo of the held-out "
        "species; a blend recipe (a 'blend' key naming two recipes) scores the blend of their fold models from "
        "--work-dir; --models adds zero-shot models scored on the same photos; rows go to --generalisation-file",
    )
    source.add_argument(
        "--coco", type=Path, metavar="FILE", help="a collection as a COCO instances file (with --images)"
    )
    parser.add_argument("--images", type=Path, metavar="DIR", help="the folder of the photos that --coco names")
    parser.add_argument("--name", help="the collection's name (default: made from the folder's or file's name)")
    parser.add_argument("--data", help=f"dataset folder (default: ${DATA_ENV} or {DEFAULT_DATA})")
    parser.add_argument("--split-file", type=Path, default=SPLIT_FILE, help="split JSON (default: models/split.json)")
    parser.add_argument(
        "--models", nargs="+", help=f"predictor names (default: all of them; '{DEFAULT_ALIAS}' is {DEFAULT_MODEL})"
    )
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="folder of trained U-Nets")
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="folder for eval_<name>.csv (default: models/ for a split, the collection's folder for a collection)",
    )
    parser.add_argument(
        "--summary-json",
        type=Path,
        metavar="FILE",
        help="write a collection's scores per model, its mask conventions and its skipped files to FILE",
    )
    parser.add_argument("--folds", type=int, default=5, help="folds of species for --leave-species-out (default 5)")
    parser.add_argument(
        "--generalisation-file",
        type=Path,
        default=GENERALISATION_FILE,
        metavar="FILE",
        help="CSV the leave-species-out rows go to; rows of other recipes in it are kept "
        "(default: models/generalisation.csv)",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="where --leave-species-out trains its fold models (default: a temporary folder)"
    )
    parser.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    parser.add_argument(
        "--summary-only", action="store_true", help="summarise the existing eval_<name>.csv without evaluating"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def _models(args: argparse.Namespace) -> list[str] | None:
    """``--models`` with the default alias replaced by the default model's name."""
    if not args.models:
        return None
    return [resolve_alias(name) for name in args.models]


def _print_summary(path: Path, title: str, markdown: bool, parser: argparse.ArgumentParser) -> None:
    try:
        results = load_eval(path)
    except ResultsFormatError as exc:  # e.g. a file from before the boundary columns
        parser.exit(2, f"error: {exc}\n")
    print(f"{title}, threshold {SUMMARY_THRESHOLD} (whole-set metrics: counts summed over photos)")
    print(format_table(summarize(results), SUMMARY_LABELS, markdown))


def _run_splits(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    out_dir = args.out_dir or MODELS_DIR
    for split in args.split or ["test"]:
        path = eval_path(out_dir, split)
        if not args.summary_only:
            try:
                path = evaluate(
                    args.data,
                    split,
                    args.split_file,
                    _models(args),
                    out_dir,
                    args.models_dir,
                    progress=not args.no_progress,
                )
            except (FileNotFoundError, ModelLoadError) as exc:  # no dataset or split file, unknown model
                parser.exit(2, f"error: {exc}\n")
            print(f"wrote {path}", file=sys.stderr)
        elif not path.is_file():
            parser.exit(2, f"error: {path} does not exist; run without --summary-only first\n")
        _print_summary(path, f"{split} split", args.markdown, parser)


def _scan(args: argparse.Namespace) -> tuple[Collection, Path]:
    """The collection the arguments name (not checked yet) and its default output folder."""
    if args.folder is not None:
        return scan_folder(args.folder, args.name), args.folder
    return scan_coco(args.coco, args.images, args.name), args.coco.parent


def _report(collection: Collection) -> None:
    """Print the files left out and the mask conventions read, on stderr."""
    if collection.skipped:
        print(f"skipped {len(collection.skipped)} file(s):", file=sys.stderr)
        for item in collection.skipped:
            print(f"  {item.file}: {item.reason}", file=sys.stderr)
    if collection.conventions:
        read = ", ".join(f"{name} ({count} photos)" for name, count in collection.conventions.items())
        print(f"masks read as: {read}", file=sys.stderr)


def _checked(collection: Collection, progress: bool) -> Collection:
    with tqdm(total=len(collection.pairs), desc="checking pairs", file=sys.stderr, disable=not progress) as bar:
        check_pairs(collection, on_progress=lambda done, total: bar.update(1))
    return collection


def _run_collection(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    try:
        collection, default_out = _scan(args)
        out_dir = args.out_dir or default_out
        path = eval_path(out_dir, collection.name)
        if args.summary_only:
            if not path.is_file():
                parser.exit(2, f"error: {path} does not exist; run without --summary-only first\n")
            _print_summary(path, f"collection {collection.name}", args.markdown, parser)
            return
        models = model_names(_models(args), args.models_dir)
        _report(_checked(collection, not args.no_progress))
        print(f"{len(collection.pairs)} pair(s) to evaluate in {collection.name}", file=sys.stderr)
        done = evaluate_collection(
            require_pairs(collection), out_dir, models, args.models_dir, progress=not args.no_progress
        )
        if args.summary_json is not None:
            args.summary_json.parent.mkdir(parents=True, exist_ok=True)
            args.summary_json.write_text(json.dumps(done.summary, indent=1) + "\n")
    except EmptyCollectionError as exc:
        parser.exit(2, f"error: {exc}\n")
    except (CollectionError, ModelLoadError, InvalidImageError, OSError) as exc:
        # A missing folder, a COCO file that is not COCO, a bad name, an unknown model, an unwritable output.
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {done.path}", file=sys.stderr)
    _print_summary(done.path, f"collection {collection.name}", args.markdown, parser)


def _run_leave_species_out(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    # Imported here: training brings in Keras, which the other modes load only with a model.
    from seg_core.models.training import RecipeError, train
    from seg_core.train import parse_args as training_args

    progress = not args.no_progress
    try:
        scan = scan_dataset(resolve_data_dir(args.data))
        folds = species_folds((s.species for s in scan.samples), args.folds)
        data = ["--data", args.data] if args.data else []
        blends = {path: read_blend_recipe(path) for path in args.leave_species_out}
        recipes = {
            path: training_args(["--config", str(path), *data, "--split", str(args.split_file)])
            for path, blend in blends.items()
            if blend is None
        }
        rows = [
            row
            for name in _models(args) or []
            for row in run_zero_shot(name, folds, args.data, args.models_dir, progress)
        ]
        with contextlib.ExitStack() as stack:
            work = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wingmask-lso-")))
            # Training recipes first: a blend recipe blends fold models they leave in the work folder.
            for path, recipe in recipes.items():
                rows += run_recipe(recipe, path.stem, folds, work, train, progress)
            for path, blend in blends.items():
                if blend is not None:
                    rows += run_blend(blend, path.stem, folds, work, args.data, args.split_file, progress)
    except (RecipeError, FileNotFoundError, ModelLoadError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    path = write_rows(rows, args.generalisation_file)
    print(f"wrote {path}", file=sys.stderr)
    print(f"leave-species-out, {len(folds)} folds: {', '.join('+'.join(f) for f in folds)}")
    print(summarize_species(load_generalisation(path)).to_string(float_format=lambda v: f"{v:.3f}"))


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.coco is not None and args.images is None:
        parser.error("--coco needs --images DIR, the folder of its photos")
    if args.images is not None and args.coco is None:
        parser.error("--images goes with --coco FILE")
    for given, option in ((args.summary_json, "--summary-json"), (args.name, "--name")):
        if given is not None and args.folder is None and args.coco is None:
            parser.error(f"{option} goes with --folder or --coco")
    # TensorFlow's C++ start-up notices would bury the progress bars; an explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.leave_species_out:
        _run_leave_species_out(args, parser)
    elif args.folder is not None or args.coco is not None:
        _run_collection(args, parser)
    else:
        _run_splits(args, parser)


if __name__ == "__main__":
    main()
