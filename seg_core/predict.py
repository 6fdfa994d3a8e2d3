"""Batch segmentation: a mask PNG (and optionally a cut-out PNG) for every photo in a folder.

    python -m seg_core.predict photos/ --out masks/ --model unet-best --cutout --clean largest holes

For ``photos/<stem>.<ext>`` it writes ``<out>/<stem>_mask.png`` (white butterfly
on black, at the photo's own size) and, with ``--cutout``, ``<out>/<stem>_cutout.png``
(the butterfly on a transparent background). Only the folder's own files are
read (no sub-folders); hidden files and files without a photo extension are
ignored. Unreadable photos are reported and skipped; the others are still
written. A second run skips photos whose outputs already exist, so an
interrupted batch resumes where it stopped; ``--overwrite`` redoes them.

Exit status: 0 when every photo has its outputs, 1 when some photos could not
be segmented (the rest were written), 2 for a usage error (missing folder,
unknown model, an output folder that would overwrite an input, no photos).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from seg_core.imaging import InvalidImageError, to_png_bytes
from seg_core.inference import DEFAULT_MODEL, ModelLoadError, Predictor, load_predictor, segment
from seg_core.postprocess import clean_mask, cutout

PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MASK_SUFFIX = "_mask.png"
CUTOUT_SUFFIX = "_cutout.png"
CLEAN_STEPS = ("largest", "holes")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


class OutputConflictError(ValueError):
    """The output folder would overwrite an input photo."""


@dataclass
class BatchReport:
    """What a batch run did, photo by photo (file names only).

    Attributes:
        written: photos whose outputs were written by this run.
        already_done: photos skipped because their outputs existed (resume).
        failed: photo -> why it could not be segmented.
        ignored: files that are not photos (by extension).
    """

    written: list[str] = field(default_factory=list)
    already_done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_FAILED if self.failed else EXIT_OK

    def summary(self) -> str:
        """Human-readable totals, then one line per failed photo."""
        lines = [
            f"{len(self.written)} written, {len(self.already_done)} already done (skipped), "
            f"{len(self.failed)} failed, {len(self.ignored)} non-photo files ignored"
        ]
        lines += [f"  failed: {name}: {reason}" for name, reason in self.failed.items()]
        return "\n".join(lines)


def find_photos(input_dir: Path) -> tuple[list[Path], list[Path]]:
    """Split the folder's visible files into (photos, other files), both sorted by name.

    Args:
        input_dir: the folder to scan (not recursively).

    Returns:
        Files with a photo extension (any case), and every other visible file.
    """
    files = sorted(p for p in Path(input_dir).iterdir() if p.is_file() and not p.name.startswith("."))
    photos = [p for p in files if p.suffix.lower() in PHOTO_EXTENSIONS]
    return photos, [p for p in files if p.suffix.lower() not in PHOTO_EXTENSIONS]


def output_paths(photo: Path, out_dir: Path, with_cutout: bool) -> list[Path]:
    """Where the outputs of ``photo`` go: the mask, then the cut-out when asked for."""
    suffixes = (MASK_SUFFIX, CUTOUT_SUFFIX) if with_cutout else (MASK_SUFFIX,)
    return [Path(out_dir) / f"{photo.stem}{suffix}" for suffix in suffixes]


def check_no_overwrite(input_dir: Path, out_dir: Path, files: Iterable[Path], with_cutout: bool) -> None:
    """Refuse an output folder that is the input folder or whose outputs would replace an input file.

    Paths are compared after resolving symbolic links, so a link to the input
    folder is refused too.

    Raises:
        OutputConflictError: with the first offending path.
    """
    if Path(out_dir).resolve() == Path(input_dir).resolve():
        raise OutputConflictError(f"the output folder {out_dir} is the input folder; choose another --out")
    inputs = {p.resolve() for p in files}
    for photo in files:
        for target in output_paths(photo, out_dir, with_cutout):
            if target.resolve() in inputs:
                raise OutputConflictError(f"writing {target} would overwrite an input file; choose another --out")


def segment_photo(
    photo: Path, predictor: Predictor, threshold: float, with_cutout: bool, clean: Sequence[str] = ()
) -> list[bytes]:
    """Encoded outputs of one photo, in the order of :func:`output_paths`.

    Raises:
        InvalidImageError: the file is not a usable photo.
    """
    image, mask = segment(photo, predictor, threshold)
    mask = clean_mask(mask, largest_region="largest" in clean, holes="holes" in clean)
    outputs = [to_png_bytes(mask)]
    if with_cutout:
        outputs.append(to_png_bytes(cutout(image, mask)))
    return outputs


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, so an interrupted run never leaves half a PNG."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def run_batch(
    input_dir: Path,
    out_dir: Path,
    predictor: Predictor,
    threshold: float = 0.5,
    with_cutout: bool = False,
    clean: Sequence[str] = (),
    overwrite: bool = False,
    progress: bool = True,
) -> BatchReport:
    """Segment every photo of ``input_dir`` into ``out_dir``.

    Args:
        input_dir: folder of photos (not searched recursively).
        out_dir: folder for the PNGs; created when missing.
        predictor: the model.
        threshold: probability at or above which a pixel is butterfly.
        with_cutout: also write ``<stem>_cutout.png``.
        clean: clean-up steps among :data:`CLEAN_STEPS`.
        overwrite: redo photos whose outputs already exist.
        progress: show a tqdm progress bar on stderr.

    Returns:
        The per-photo report; failures do not stop the batch.

    Raises:
        OutputConflictError: ``out_dir`` would overwrite an input.
    """
    photos, others = find_photos(input_dir)
    check_no_overwrite(input_dir, out_dir, photos + others, with_cutout)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    report = BatchReport(ignored=[p.name for p in others])
    owner: dict[str, str] = {}
    bar = tqdm(photos, unit="photo", desc="segmenting", disable=not progress, file=sys.stderr)
    for photo in bar:
        targets = output_paths(photo, out_dir, with_cutout)
        if photo.stem in owner:
            report.failed[photo.name] = f"same file name as {owner[photo.stem]}, whose outputs it would replace"
            continue
        owner[photo.stem] = photo.name
        if not overwrite and all(t.is_file() for t in targets):
            report.already_done.append(photo.name)
            continue
        try:
            outputs = segment_photo(photo, predictor, threshold, with_cutout, clean)
        except InvalidImageError as exc:
            report.failed[photo.name] = str(exc)
            bar.write(f"skipped {photo.name}: {exc}", file=sys.stderr)
            continue
        for target, data in zip(targets, outputs, strict=True):
            write_atomically(target, data)
        report.written.append(photo.name)
    return report


def _threshold(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


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
        "--clean", nargs="+", choices=CLEAN_STEPS, default=[], help="keep the largest region and/or fill holes"
    )
    parser.add_argument("--overwrite", action="store_true", help="redo photos whose outputs already exist")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if not args.input_dir.is_dir():
        parser.error(f"{args.input_dir} is not a folder")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out} is a file, not a folder")
    photos, others = find_photos(args.input_dir)
    if not photos:
        parser.error(f"{args.input_dir} holds no photos ({', '.join(sorted(PHOTO_EXTENSIONS))})")
    try:
        # Checked before the model loads, so a wrong --out fails at once.
        check_no_overwrite(args.input_dir, args.out, photos + others, args.cutout)
    except OutputConflictError as exc:
        parser.error(str(exc))
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
    )
    print(f"outputs in {args.out}")
    print(report.summary())
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
