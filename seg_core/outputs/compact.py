"""Compact per-photo results: probabilities in one byte a pixel, the photo only at the size shown.

A 48-megapixel photo costs 144 MB decoded and its float32 probability map
192 MB more. What the threshold slider needs is much less:

- **Probability levels.** :func:`quantise` stores, per pixel, how many of the
  201 grid thresholds ``0, 0.005, ..., 1`` (:data:`EDGES`) the probability
  reaches, in a ``uint8`` (48 MB at 48 MP). Because the grid's values are the
  very float32 numbers that :func:`seg_core.runtime.predictor.threshold_mask` compares
  against, ``levels_mask(levels, t)`` equals ``threshold_mask(prob, t)`` bit
  for bit at every grid threshold: every 0.01 of the dashboard's slider
  (:data:`SLIDER_THRESHOLDS`) and every 0.005 of the API. :func:`is_exact`
  says whether a threshold is on the grid; off the grid the threshold is
  rounded up to the next grid value. :func:`mismatches` checks it on a
  probability map.
- **The photo at display size, analysed there.** :func:`analyse_compact`
  decodes a large JPEG reduced (:func:`seg_core.core.imaging.load_image_reduced`),
  runs the model on that copy and keeps the photo and the levels at the size
  shown (:class:`CompactAnalysis`), so an upload costs a fraction of a
  full-size pass and a slider move redraws without touching a full-size array.
- **Full size on demand.** What leaves the screen (mask and cut-out
  downloads, measurements, COCO, scores against a ground truth) is made from
  :func:`full_levels`: the photo decoded in full and the model run on it, as
  :func:`seg_core.runtime.predictor.segment` does, so a downloaded mask is the
  library's own. A photo no larger than the display is analysed at full size
  once and its levels serve both (:attr:`CompactAnalysis.is_full`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from seg_core.core.imaging import ImageSource, load_image_reduced
from seg_core.outputs.postprocess import DISPLAY_MAX_SIDE
from seg_core.runtime.base import InferenceOptions, Predictor, threshold_mask

#: Grid thresholds 0, 0.005, ..., 1 as the float32 values a float32 map is compared with.
GRID = 200
EDGES = np.array([k / GRID for k in range(GRID + 1)], dtype=np.float32)
#: The dashboard's threshold slider: 0.05 to 0.95 in steps of 0.01.
SLIDER_THRESHOLDS = tuple(k / 100 for k in range(5, 96))
#: Pixels quantised per step, so the temporary arrays stay a few MB whatever the photo's size.
_CHUNK = 1 << 20


def is_exact(threshold: float) -> bool:
    """True when masks from levels equal float32 masks at ``threshold`` (it is on the 0.005 grid)."""
    value = np.float32(threshold)
    index = int(np.searchsorted(EDGES, value))
    return index <= GRID and EDGES[index] == value


def quantise(prob: np.ndarray) -> np.ndarray:
    """Per pixel, the number of grid thresholds (:data:`EDGES`) that the probability reaches.

    Level ``q`` means ``EDGES[q - 1] <= p < EDGES[q]``: 0 for a probability
    under 0 (or NaN, which reaches no threshold), 201 for exactly 1 or more.

    Args:
        prob: float32 probabilities (any shape).

    Returns:
        uint8 levels of the same shape.
    """
    prob = np.asarray(prob, dtype=np.float32)
    levels = np.empty(prob.shape, dtype=np.uint8)
    flat_prob, flat_levels = prob.reshape(-1), levels.reshape(-1)
    for start in range(0, flat_prob.size, _CHUNK):
        flat_levels[start : start + _CHUNK] = _quantise_chunk(flat_prob[start : start + _CHUNK])
    return levels


def _quantise_chunk(p: np.ndarray) -> np.ndarray:
    # floor(p * 200) is the right grid index up to one step either way (rounding
    # of the product and of the edges); one comparison each way settles it.
    p = np.where(np.isnan(p), np.float32(-1), p)
    index = np.clip(np.floor(p * np.float32(GRID)), 0, GRID).astype(np.int16)
    index -= p < EDGES[index]
    above = np.minimum(index + 1, GRID)
    index += (p >= EDGES[above]) & (index < GRID)
    return (index + 1).astype(np.uint8)


def levels_mask(levels: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of the pixels whose probability is at least ``threshold``.

    Equal to ``threshold_mask(prob, threshold)`` for ``levels = quantise(prob)``
    when :func:`is_exact` ``(threshold)``; otherwise the threshold is rounded up
    to the next grid value.
    """
    index = int(np.searchsorted(EDGES, np.float32(threshold)))
    return np.asarray(levels) > index


def approximate(levels: np.ndarray) -> np.ndarray:
    """Float32 probabilities back from levels: the middle of each level's 0.005 band (off by at most 0.0025)."""
    centres = np.concatenate([[0.0], (np.arange(GRID) + 0.5) / GRID, [1.0]]).astype(np.float32)
    return centres[np.asarray(levels)]


def mismatches(prob: np.ndarray, thresholds: tuple[float, ...] = SLIDER_THRESHOLDS) -> list[float]:
    """The thresholds at which the mask from levels differs from the float32 mask (empty: none).

    The check behind the claim that quantising changes no mask the slider can show.
    """
    prob = np.asarray(prob, dtype=np.float32)
    levels = quantise(prob)
    return [t for t in thresholds if not np.array_equal(levels_mask(levels, t), threshold_mask(prob, t))]


def display_size(shape: tuple[int, int], max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    """(height, width) of the copy :func:`~seg_core.outputs.postprocess.display_copy` shows of a photo of ``shape``."""
    height, width = shape
    scale = max_side / max(height, width)
    if scale >= 1:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def shrink_nearest(plane: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A one-channel uint8 or bool picture at ``shape`` by nearest neighbour, as display masks are shrunk.

    Nearest neighbour picks pixels without mixing values, so shrinking levels
    and then thresholding gives the same mask as thresholding then shrinking.
    """
    if plane.shape[:2] == tuple(shape):
        return plane
    small = cv2.resize(plane.astype(np.uint8, copy=False), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return small.astype(bool) if plane.dtype == bool else small


@dataclass(frozen=True)
class FullLevels:
    """A photo's probability levels (:func:`quantise`) at its full size: what downloads and scores are made from."""

    levels: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.levels.shape

    def mask(self, threshold: float) -> np.ndarray:
        """The full-size mask at ``threshold``: ``threshold_mask(prob, threshold)`` on the grid."""
        return levels_mask(self.levels, threshold)

    def probabilities(self) -> np.ndarray:
        """Float32 probabilities within 0.0025 of the model's (:func:`approximate`)."""
        return approximate(self.levels)


@dataclass(frozen=True)
class CompactAnalysis:
    """One photo through one model at the size shown: what the dashboard caches per photo, model and options.

    Attributes:
        shape: the photo's full (height, width).
        shown_image: the RGB photo at display size (:func:`display_size`).
        shown_levels: the probability levels at display size.
        model_ms: wall time of ``predict_proba`` on the analysed copy.
        measured_at: when it was measured (``time.time()``).
        options: the inference options the levels were made with.
    """

    shape: tuple[int, int]
    shown_image: np.ndarray
    shown_levels: np.ndarray
    model_ms: float
    measured_at: float
    options: InferenceOptions = field(default_factory=InferenceOptions)

    @property
    def is_full(self) -> bool:
        """True when the photo was analysed at its full size, so :meth:`full` needs no second pass."""
        return self.shown_levels.shape == tuple(self.shape)

    def full(self) -> FullLevels:
        """The full-size levels of a photo analysed at full size (see :attr:`is_full`)."""
        if not self.is_full:
            raise ValueError(f"a {self.shape} photo was analysed at {self.shown_levels.shape}; use full_levels()")
        return FullLevels(self.shown_levels)

    def shown_mask(self, threshold: float) -> np.ndarray:
        """The mask at display size, at ``threshold`` (:func:`levels_mask`)."""
        return levels_mask(self.shown_levels, threshold)

    def shrink(self, mask: np.ndarray) -> np.ndarray:
        """A full-size mask (e.g. after clean-up) at the display size, as ``display_copy`` shrinks it."""
        if mask.shape != tuple(self.shape):
            raise ValueError(f"mask {mask.shape} is not the photo's size {self.shape}")
        return shrink_nearest(mask, self.shown_image.shape[:2])


def compact(
    image: np.ndarray,
    prob: np.ndarray,
    model_ms: float = math.nan,
    measured_at: float | None = None,
    options: InferenceOptions | None = None,
    max_side: int = DISPLAY_MAX_SIDE,
    shape: tuple[int, int] | None = None,
) -> CompactAnalysis:
    """The compact form of a photo (or its reduced copy) and its probability map, arrays read-only.

    Args:
        image: the analysed RGB photo, at full size or reduced.
        prob: its probability map, of the same size.
        shape: the photo's full (height, width); None when ``image`` is full size.
    """
    if image.shape[:2] != prob.shape:
        raise ValueError(f"image {image.shape[:2]} and probabilities {prob.shape} sizes differ")
    full_shape = tuple(prob.shape) if shape is None else tuple(shape)
    size = display_size(full_shape, max_side)
    shown_image = image if size == prob.shape else cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
    if shown_image is image:
        shown_image = image.copy()
    # Nearest neighbour picks whole pixels, so shrinking first and quantising the few
    # that are kept gives the same levels as quantising every pixel and then shrinking.
    shown_prob = prob if size == prob.shape else cv2.resize(prob, (size[1], size[0]), interpolation=cv2.INTER_NEAREST)
    shown_levels = quantise(shown_prob)
    for array in (shown_image, shown_levels):
        array.flags.writeable = False
    return CompactAnalysis(
        full_shape,
        shown_image,
        shown_levels,
        model_ms,
        time.time() if measured_at is None else measured_at,
        options or InferenceOptions(),
    )


def full_levels(image: np.ndarray, predictor: Predictor, options: InferenceOptions | None = None) -> FullLevels:
    """The full-size levels of ``image`` (the photo decoded in full), read-only: one full model pass."""
    levels = quantise(predictor.predict_proba(image, options or InferenceOptions()))
    levels.flags.writeable = False
    return FullLevels(levels)


def analyse_compact(
    source: ImageSource, predictor: Predictor, options: InferenceOptions | None = None, max_side: int = DISPLAY_MAX_SIDE
) -> CompactAnalysis:
    """Decode a photo at the size shown (reduced when it is larger), run the model once, keep the compact result.

    Raises:
        InvalidImageError: the input is not a usable photo.
    """
    options = options or InferenceOptions()
    image, shape = load_image_reduced(source, max_side)
    measured_at = time.time()
    started = time.perf_counter()
    prob = predictor.predict_proba(image, options)
    model_ms = (time.perf_counter() - started) * 1000.0
    return compact(image, prob, model_ms, measured_at, options, max_side, shape)
