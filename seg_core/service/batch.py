"""Batch segmentation: a mask PNG (and optionally a cut-out PNG) for every photo in a folder.

    python -m seg_core.predict photos/ --out masks/ --model unet-best --cutout --clean largest holes

For ``photos/<stem>.<ext>`` it writes ``<out>/<stem>_mask.png`` (white butterfly
on black, at the photo's own size) and, with ``--cutout``, ``<out>/<stem>_cutout.png``
(the butterfly on a transparent background). Only the folder's own files are
read (no sub-folders); hidden files and files without a photo extension are
ignored. Unreadable photos are reported and skipped; the others are still
written. A second run skips photos whose outputs already exist, so an
interrupted batch resumes where it stopped; ``--overwrite`` redoes them.
By default the mask is tidied: regions under a tenth of the largest (a scale
bar, a label, specks) are dropped and small holes filled, so several
butterflies stay; ``--clean none`` keeps the network's mask as it is.
Cut-outs can have soft edges (an alpha matte, ``--soft-edges``), another
background, a crop to the butterflies and WebP encoding; ``--refine`` redraws
the mask's edge with GrabCut. ``--coco`` and ``--measurements`` describe every
photo of the batch, those done by an earlier run included, from the masks in
``--out``: one COCO instances file, and a CSV of each butterfly's size.
``--engine ray`` runs the same job, with the same rules and report, on Ray
Data (:mod:`seg_core.service.ray_engine`), locally or on a cluster (``--address``).

Exit status: 0 when every photo has its outputs, 1 when some photos could not
be segmented (the rest were written), 2 for a usage error (missing folder,
unknown model, an output folder that would overwrite an input, no photos).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from seg_core.core.imaging import InvalidImageError, load_image, load_mask
from seg_core.outputs import annotations
from seg_core.outputs.cutout import (
    TRANSPARENT,
    Background,
    encode,
    make_cutout,
)
from seg_core.outputs.files import CUTOUT_SUFFIX, MASK_SUFFIX
from seg_core.outputs.matting import Matte, soft_matte
from seg_core.outputs.postprocess import clean_mask
from seg_core.outputs.refine import refine_edges
from seg_core.runtime.base import Predictor, threshold_mask

PHOTO_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
CLEAN_STEPS = ("tidy", "largest", "holes")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
ENGINES = ("local", "ray")


class OutputConflictError(ValueError):
    """The output folder would overwrite an input photo."""


@dataclass(frozen=True)
class OutputOptions:
    """How a photo's outputs are made beyond threshold and clean-up (the defaults give the plain outputs).

    Attributes:
        refine: redraw the mask's edge with GrabCut (:func:`seg_core.outputs.refine.refine_edges`).
        soft_edges: cut-out alpha from a matte (:func:`seg_core.outputs.matting.soft_matte`), not the hard mask.
        background: behind the cut-out; see :func:`seg_core.outputs.cutout.compose`.
        crop: crop the cut-out to all butterflies with a margin.
        square: make that crop square (implies ``crop``).
        fmt: the cut-out's format, ``png`` or ``webp``; the mask is always PNG.
    """

    refine: bool = False
    soft_edges: bool = False
    background: Background = TRANSPARENT
    crop: bool = False
    square: bool = False
    fmt: str = "png"

    @property
    def shapes_cutout(self) -> bool:
        """Whether any cut-out setting differs from the plain transparent, uncropped PNG."""
        transparent = isinstance(self.background, str) and self.background == TRANSPARENT
        return self.soft_edges or self.crop or self.square or self.fmt != "png" or not transparent


PLAIN = OutputOptions()


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


def output_paths(photo: Path, out_dir: Path, with_cutout: bool, options: OutputOptions = PLAIN) -> list[Path]:
    """Where the outputs of ``photo`` go: the mask, then the cut-out when asked for."""
    cutout_suffix = str(Path(CUTOUT_SUFFIX).with_suffix(f".{options.fmt}"))
    suffixes = (MASK_SUFFIX, cutout_suffix) if with_cutout else (MASK_SUFFIX,)
    return [Path(out_dir) / f"{photo.stem}{suffix}" for suffix in suffixes]


def check_no_overwrite(
    input_dir: Path, out_dir: Path, files: Iterable[Path], with_cutout: bool, options: OutputOptions = PLAIN
) -> None:
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
        for target in output_paths(photo, out_dir, with_cutout, options):
            if target.resolve() in inputs:
                raise OutputConflictError(f"writing {target} would overwrite an input file; choose another --out")


def segment_photo(
    photo: Path,
    predictor: Predictor,
    threshold: float,
    with_cutout: bool,
    clean: Sequence[str] = (),
    options: OutputOptions = PLAIN,
) -> list[bytes]:
    """Encoded outputs of one photo, in the order of :func:`output_paths`.

    The mask PNG carries its regions' mean probabilities (:func:`seg_core.outputs.annotations.mask_png`)
    for a later ``--coco``.

    Raises:
        InvalidImageError: the file is not a usable photo.
    """
    image = load_image(photo)
    prob = predictor.predict_proba(image)
    mask = threshold_mask(prob, threshold)
    if options.refine:
        mask = refine_edges(image, mask, prob)
    mask = clean_mask(mask, largest_region="largest" in clean, holes="holes" in clean, tidy="tidy" in clean)
    outputs = [mask_bytes(mask, prob)]
    if with_cutout:
        outputs.append(cutout_bytes(image, mask, prob, options))
    return outputs


def mask_bytes(mask: np.ndarray, prob: np.ndarray) -> bytes:
    """The mask PNG, its regions' mean probabilities stored in it (the dashboard writes the same file)."""
    return annotations.mask_png(mask, annotations.region_scores(annotations.regions(mask), prob))


def cutout_bytes(
    image: np.ndarray,
    mask: np.ndarray,
    prob: np.ndarray,
    options: OutputOptions = PLAIN,
    matte: Matte | None = None,
) -> bytes:
    """The encoded cut-out of a photo whose mask (and probability map) are known.

    ``matte`` is :func:`seg_core.outputs.matting.soft_matte` of this mask when already
    at hand (the dashboard caches it); with ``options.soft_edges`` and no
    matte, one is made here.
    """
    alpha, foreground = mask, None
    if options.soft_edges:
        matte = matte if matte is not None else soft_matte(image, mask, prob)
        alpha, foreground = matte.alpha, matte.foreground
    picture = make_cutout(image, alpha, options.background, foreground, options.crop, options.square)
    return encode(picture, options.fmt)


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
    options: OutputOptions = PLAIN,
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
        options: refine, soft edges, background, crop and format (:class:`OutputOptions`).

    Returns:
        The per-photo report; failures do not stop the batch.

    Raises:
        OutputConflictError: ``out_dir`` would overwrite an input.
    """
    report, todo = plan_batch(input_dir, out_dir, with_cutout, overwrite, options)
    bar = tqdm(todo, unit="photo", desc="segmenting", disable=not progress, file=sys.stderr)
    for photo in bar:
        try:
            outputs: list[bytes] | str = segment_photo(photo, predictor, threshold, with_cutout, clean, options)
        except InvalidImageError as exc:
            outputs = str(exc)
        store_outcome(report, photo, out_dir, with_cutout, outputs, bar, options)
    return report


def plan_batch(
    input_dir: Path, out_dir: Path, with_cutout: bool, overwrite: bool, options: OutputOptions = PLAIN
) -> tuple[BatchReport, list[Path]]:
    """The resume rules every engine shares: which photos still need segmenting.

    Creates ``out_dir``. Photos whose outputs all exist are reported as already
    done (unless ``overwrite``); a photo whose stem an earlier photo already
    claimed is reported as failed, since their outputs would replace each other.

    Returns:
        The report so far (ignored, already done and clashing files) and the photos to segment, by name.

    Raises:
        OutputConflictError: ``out_dir`` would overwrite an input.
    """
    photos, others = find_photos(input_dir)
    check_no_overwrite(input_dir, out_dir, photos + others, with_cutout, options)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    report = BatchReport(ignored=[p.name for p in others])
    owner: dict[str, str] = {}
    todo = []
    for photo in photos:
        if photo.stem in owner:
            report.failed[photo.name] = f"same file name as {owner[photo.stem]}, whose outputs it would replace"
            continue
        owner[photo.stem] = photo.name
        if not overwrite and all(t.is_file() for t in output_paths(photo, out_dir, with_cutout, options)):
            report.already_done.append(photo.name)
            continue
        todo.append(photo)
    return report, todo


def store_outcome(
    report: BatchReport,
    photo: Path,
    out_dir: Path,
    with_cutout: bool,
    outcome: list[bytes] | str,
    bar: tqdm,
    options: OutputOptions = PLAIN,
) -> None:
    """Write one photo's encoded outputs, or record why it failed (``outcome`` is then the message)."""
    if isinstance(outcome, str):
        report.failed[photo.name] = outcome
        bar.write(f"skipped {photo.name}: {outcome}", file=sys.stderr)
        return
    for target, data in zip(output_paths(photo, out_dir, with_cutout, options), outcome, strict=True):
        write_atomically(target, data)
    report.written.append(photo.name)


def write_annotations(
    input_dir: Path,
    out_dir: Path,
    report: BatchReport,
    coco_path: Path | None = None,
    measurements_path: Path | None = None,
    with_polygons: bool = False,
    pixels_per_mm: float | None = None,
    progress: bool = True,
) -> None:
    """One COCO file and/or one measurements CSV for every photo whose mask is in ``out_dir``.

    Photos done by an earlier run count too: everything is read back from the
    written masks (and the scores stored in them), so the files always match
    the masks. A mask that cannot be read is reported as a failure of its photo.
    """
    done = set(report.written) | set(report.already_done)
    photos = [p for p in find_photos(input_dir)[0] if p.name in done]
    builder, rows = annotations.CocoBuilder(), []
    for photo in tqdm(photos, unit="photo", desc="annotating", disable=not progress, file=sys.stderr):
        mask_path = output_paths(photo, out_dir, with_cutout=False)[0]
        try:
            mask = load_mask(mask_path)
        except InvalidImageError as exc:
            report.failed[photo.name] = f"its mask {mask_path.name} cannot be read: {exc}"
            continue
        if coco_path is not None:
            scores = annotations.stored_scores(mask_path)
            found = annotations.instances(mask, with_polygons=with_polygons, scores=scores)
            builder.add_image(photo.name, mask.shape[1], mask.shape[0], found)
        if measurements_path is not None:
            rows += [{"photo": photo.name, **m.as_row()} for m in annotations.measure(mask, pixels_per_mm)]
    if coco_path is not None:
        builder.write(coco_path)
    if measurements_path is not None:
        annotations.write_measurements(measurements_path, rows)
