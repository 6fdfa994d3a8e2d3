"""One photo through one model, step by step, as the dashboard and the memory soak run it.

The steps are split by cost. :func:`seg_core.outputs.compact.analyse_compact`
decodes the photo at the size shown and runs the model once, keeping only a
:class:`~seg_core.outputs.compact.CompactAnalysis` (the photo and its probability
levels at display size). :func:`finish_compact` thresholds and cleans it at the
current settings, at display size, so a slider move never touches a full-size array; full-size
work happens only when a result needs it, from the photo decoded in full and its
:func:`seg_core.outputs.compact.full_levels`: :func:`final_mask` (downloads,
measurements, COCO, scoring), :func:`refined_edge` and the matte behind soft
edges. :func:`views` makes the pictures that are
shown, and :func:`before_after` the photo and its cut-out joined at a
slider's position. :mod:`benchmarks.memcheck` calls the
same functions, so it measures the Segment page's own code path. The files a
user downloads are made by the batch CLI's own functions
(:func:`seg_core.service.batch.mask_bytes`, :func:`seg_core.service.batch.cutout_bytes`)
through :func:`mask_file` and :func:`cutout_file`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import cv2
import numpy as np

from seg_core.core.imaging import ImageSource, InvalidImageError, check_same_size, load_mask
from seg_core.core.metrics import all_metrics, confusion
from seg_core.outputs import annotations
from seg_core.outputs.compact import CompactAnalysis, FullLevels
from seg_core.outputs.cutout import DEFAULT_MARGIN, TRANSPARENT, Background, compose, crop, crop_box
from seg_core.outputs.matting import Matte
from seg_core.outputs.postprocess import (
    DISPLAY_MAX_SIDE,
    clean_mask,
    cutout,
    display_copy,
    mask_image,
    on_checkerboard,
    overlay,
    removed_pixels,
)
from seg_core.outputs.refine import refine_edges
from seg_core.runtime.base import Predictor
from seg_core.runtime.registry import load_predictor
from seg_core.service.batch import OutputOptions, cutout_bytes, mask_bytes

#: Colour of the line where the before/after picture joins the photo and the cut-out.
SPLIT_LINE = (255, 255, 255)


def is_cached(analysis: CompactAnalysis, asked_at: float) -> bool:
    """True when ``analysis`` was measured before ``asked_at`` (``time.time()``), i.e. came from a cache."""
    return analysis.measured_at < asked_at


def age_text(seconds: float) -> str:
    """A short, rounded age such as ``"4 s"``, ``"12 min"`` or ``"1.5 h"``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def load_warm(name: str) -> Predictor:
    """Load a model and run it once on a small blank photo.

    The first call of a U-Net traces its graph; doing that here keeps it out of
    the first real photo's time.

    Raises:
        ModelLoadError: unknown name, or a model folder that does not load.
    """
    predictor = load_predictor(name)
    predictor.predict_proba(np.zeros((32, 32, 3), dtype=np.uint8))
    return predictor


def digest(data: bytes) -> str:
    """SHA-256 of uploaded bytes: the cache key of a photo."""
    return hashlib.sha256(data).hexdigest()


def load_truth(source: ImageSource, image: np.ndarray | tuple[int, int]) -> np.ndarray:
    """Decode a ground-truth mask and check that it was made for ``image`` (the photo, or its (height, width)).

    Raises:
        InvalidImageError: unreadable mask, or its size differs from the photo's.
    """
    truth = load_mask(source)
    check_same_size(np.broadcast_to(False, image) if isinstance(image, tuple) else image, truth)
    return truth


@dataclass(frozen=True)
class MaskSettings:
    """How a probability map becomes the final mask.

    The steps run in the batch CLI's order: threshold, refine, then the
    clean-up (:func:`seg_core.outputs.postprocess.clean_mask`: tidy, largest, holes).

    Attributes:
        threshold: probability at or above which a pixel is butterfly.
        largest: keep only the largest connected region.
        holes: fill holes inside the butterfly.
        tidy: drop regions much smaller than the largest and fill small holes
            (the CLI's default clean-up, which keeps several butterflies).
        refine: redraw the edge with GrabCut at full resolution (slow).
    """

    threshold: float = 0.5
    largest: bool = False
    holes: bool = False
    tidy: bool = False
    refine: bool = False


@dataclass(frozen=True)
class Outcome:
    """What one photo produced at the current settings.

    Attributes:
        analysis: the compact photo and probabilities behind it.
        mask: the final boolean mask, at display size.
        scores: every metric of :data:`seg_core.core.metrics.METRICS` against the
            ground truth, or None without a usable one.
        truth_error: why a given ground truth could not be used, if it could not.
        removed: boolean mask of the pixels the clean-up took away (a scale
            bar, specks), all False when it removed nothing; the size of ``mask``.
    """

    analysis: CompactAnalysis
    mask: np.ndarray
    scores: dict[str, float] | None = None
    truth_error: InvalidImageError | None = None
    removed: np.ndarray | None = None


def refined_edge(full: FullLevels, image: np.ndarray, threshold: float) -> np.ndarray:
    """The full-size thresholded mask with its edge redrawn by GrabCut on ``image`` (the photo decoded in full).

    The slow step behind "refine edges"; the dashboard caches it per photo,
    model, options and threshold.
    """
    return refine_edges(image, full.mask(threshold), full.probabilities())


def final_mask(full: FullLevels, settings: MaskSettings, edge: np.ndarray | None = None) -> np.ndarray:
    """The full-size final mask: thresholded (or ``edge``, the :func:`refined_edge`), then cleaned up.

    What the downloads, the measurements, COCO export and scoring use; on the
    0.005 threshold grid (:func:`seg_core.outputs.compact.is_exact`), which holds every
    slider position, equal to thresholding the float probability map itself.
    """
    raw = full.mask(settings.threshold) if edge is None else edge
    return clean_mask(raw, largest_region=settings.largest, holes=settings.holes, tidy=settings.tidy)


def finish_compact(
    analysis: CompactAnalysis,
    settings: MaskSettings,
    truth: ImageSource | None = None,
    edge: np.ndarray | None = None,
    full: FullLevels | None = None,
) -> Outcome:
    """What the screen shows for a compact analysis: the final mask and what the clean-up removed, at display size.

    Without a ground truth or a refined edge, everything happens at display
    size, cheap on every slider move for any photo size (the clean-up then
    sees the shrunk mask, so on a photo larger than the display it can differ
    from the full-size one by a few edge pixels). With either, the full-size
    :func:`final_mask` is made from ``full``, scored, and shrunk for the screen.

    Args:
        analysis: the compact analysis.
        settings: threshold, refine and clean-up.
        truth: a ground-truth mask to score against, or None; one that cannot
            be used is reported in the outcome rather than raised.
        edge: the full-size :func:`refined_edge` at ``settings.threshold``, when refining.
        full: the photo's full-size levels; required with ``truth`` or ``edge``.
    """
    if truth is None and edge is None:
        raw = analysis.shown_mask(settings.threshold)
        mask = clean_mask(raw, largest_region=settings.largest, holes=settings.holes, tidy=settings.tidy)
        return Outcome(analysis, mask, removed=removed_pixels(raw, mask))
    if full is None:
        raise ValueError("scoring against a ground truth or a refined edge needs the full-size levels")
    raw = full.mask(settings.threshold) if edge is None else edge
    final = final_mask(full, settings, raw)
    shown, removed = analysis.shrink(final), analysis.shrink(removed_pixels(raw, final))
    if truth is None:
        return Outcome(analysis, shown, removed=removed)
    try:
        scores = all_metrics(confusion(final, load_truth(truth, analysis.shape)))
    except InvalidImageError as exc:
        return Outcome(analysis, shown, truth_error=exc, removed=removed)
    return Outcome(analysis, shown, scores, removed=removed)


def shown_matte(analysis: CompactAnalysis, matte: Matte) -> Matte:
    """A full-size matte at the display size of the photo, for the cut-out on screen."""
    return Matte(_shrink(matte.alpha, DISPLAY_MAX_SIDE), _shrink(matte.foreground, DISPLAY_MAX_SIDE))


def mask_file(full: FullLevels, mask: np.ndarray) -> bytes:
    """The mask PNG download of a full-size final mask, with its regions' mean probabilities."""
    return mask_bytes(mask, full.probabilities())


def cutout_file(
    image: np.ndarray,
    full: FullLevels,
    mask: np.ndarray,
    output: OutputOptions,
    matte: Matte | None = None,
) -> bytes:
    """The cut-out download: ``image`` (the photo decoded in full) cut out by the full-size final mask."""
    return cutout_bytes(image, mask, full.probabilities(), output, matte)


def coco_instances(full: FullLevels, mask: np.ndarray, polygons: bool) -> list[dict]:
    """COCO annotations of a full-size final mask, scored by the probabilities, as ``predict --coco`` makes them."""
    return annotations.instances(mask, full.probabilities(), with_polygons=polygons)


@dataclass(frozen=True)
class Look:
    """How a cut-out is made beyond its mask; downloads apply the same at full size.

    Attributes:
        background: ``"transparent"``, ``"blur"``, an RGB tuple or an RGB image
            (see :func:`seg_core.outputs.cutout.compose`).
        crop: crop to all butterflies with :data:`seg_core.outputs.cutout.DEFAULT_MARGIN`.
        square: make that crop square (implies ``crop``).
        matte: soft edges (:func:`seg_core.outputs.matting.soft_matte` of the same mask), or None for hard ones.
    """

    background: Background = TRANSPARENT
    crop: bool = False
    square: bool = False
    matte: Matte | None = None

    @property
    def plain(self) -> bool:
        """True for the hard-edged, uncropped cut-out on a transparent background."""
        transparent = isinstance(self.background, str) and self.background == TRANSPARENT
        return transparent and self.matte is None and not (self.crop or self.square)


def _shrink(picture: np.ndarray, max_side: int) -> np.ndarray:
    """A copy whose longer side is at most ``max_side``: masks by nearest pixel, the rest by area."""
    height, width = picture.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return picture
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if picture.dtype == bool:
        return cv2.resize(picture.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return cv2.resize(picture, size, interpolation=cv2.INTER_AREA)


def cutout_pair(
    image: np.ndarray, mask: np.ndarray, look: Look, max_side: int = DISPLAY_MAX_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its cut-out as shown: cropped alike, then shrunk for display.

    The crop is taken at full resolution, so a small butterfly cropped out of
    a huge photo is still shown sharp. Transparency is shown on a checkerboard.

    Returns:
        (photo, cut-out), both RGB uint8 of the same size.
    """
    alpha = mask if look.matte is None else look.matte.alpha
    foreground = None if look.matte is None else look.matte.foreground
    box = crop_box(alpha, DEFAULT_MARGIN, look.square) if look.crop or look.square else None
    if box is not None:
        if foreground is not None:
            foreground, _ = crop(foreground, alpha, box)
        image, alpha = crop(image, alpha, box)
    small_image, small_alpha = _shrink(image, max_side), _shrink(alpha, max_side)
    small_foreground = None if foreground is None else _shrink(foreground, max_side)
    picture = compose(small_image, small_alpha, look.background, small_foreground)
    return small_image, on_checkerboard(picture) if picture.shape[2] == 4 else picture


def views(
    image: np.ndarray, mask: np.ndarray, removed: np.ndarray | None = None, look: Look | None = None
) -> dict[str, np.ndarray]:
    """The pictures shown for a photo, at display size (huge photos are shrunk; downloads are not).

    Args:
        image: the RGB photo.
        mask: its final boolean mask.
        removed: pixels the clean-up took away, tinted on the overlay
            (:data:`seg_core.outputs.postprocess.REMOVED_COLOUR`); None to show none.
        look: how the cut-out is made; None for the plain transparent one.

    Returns:
        Caption -> picture: the original, the mask, the overlay and the cut-out
        (transparency on a checkerboard).
    """
    small_image, small_mask = display_copy(image, mask)
    small_removed = None if removed is None else _shrink(np.asarray(removed, dtype=bool), DISPLAY_MAX_SIDE)
    if look is None or look.plain:
        shown_cutout = on_checkerboard(cutout(small_image, small_mask))
    else:
        shown_cutout = cutout_pair(image, mask, look)[1]
    return {
        "Original": small_image,
        "Mask": mask_image(small_mask),
        "Overlay": overlay(small_image, small_mask, removed=small_removed),
        "Cut-out": shown_cutout,
    }


def before_after(image: np.ndarray, mask: np.ndarray, look: Look, position: float) -> np.ndarray:
    """The photo left of ``position`` and its cut-out right of it, with a line between, at display size.

    Args:
        image: the RGB photo.
        mask: its final boolean mask.
        look: how the cut-out is made (the photo is cropped the same way).
        position: where the two meet, as a fraction of the width in [0, 1].
    """
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position must be in [0, 1], got {position}")
    before, after = cutout_pair(image, mask, look)
    width = before.shape[1]
    split = round(position * width)
    out = after.copy()
    out[:, :split] = before[:, :split]
    line = max(1, round(width / 400))
    out[:, max(0, split - line) : min(width, split + line)] = SPLIT_LINE
    return out
