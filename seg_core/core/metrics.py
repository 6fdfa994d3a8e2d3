"""Segmentation metrics from confusion counts.

Every metric is a function of (TP, FP, FN, TN) so that it can be computed for
one photo or for a whole set by summing the counts first ("whole-set"
aggregation) or by averaging per-photo values ("per-image" aggregation).
Foreground = butterfly. When a denominator is zero (both masks empty for that
class) the prediction agrees perfectly and the metric is 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Confusion:
    """Pixel confusion counts for the foreground class."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Confusion) -> Confusion:
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn


def confusion(pred: np.ndarray, truth: np.ndarray) -> Confusion:
    """Count TP/FP/FN/TN between two boolean masks of the same shape."""
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {truth.shape}")
    tp = int(np.count_nonzero(pred & truth))
    fp = int(np.count_nonzero(pred & ~truth))
    fn = int(np.count_nonzero(~pred & truth))
    return Confusion(tp, fp, fn, pred.size - tp - fp - fn)


def _ratio(num: int, den: int) -> float:
    return 1.0 if den == 0 else num / den


def pixel_accuracy(c: Confusion) -> float:
    """(TP + TN) / all pixels."""
    return _ratio(c.tp + c.tn, c.total)


def dice(c: Confusion) -> float:
    """Foreground Dice (F1): 2 TP / (2 TP + FP + FN)."""
    return _ratio(2 * c.tp, 2 * c.tp + c.fp + c.fn)


def iou(c: Confusion) -> float:
    """Foreground IoU (Jaccard): TP / (TP + FP + FN)."""
    return _ratio(c.tp, c.tp + c.fp + c.fn)


def background_iou(c: Confusion) -> float:
    """Background IoU: TN / (TN + FP + FN)."""
    return _ratio(c.tn, c.tn + c.fp + c.fn)


def mean_iou(c: Confusion) -> float:
    """Mean of foreground and background IoU (the two-class mIoU)."""
    return (iou(c) + background_iou(c)) / 2.0


METRICS = {"accuracy": pixel_accuracy, "dice": dice, "iou": iou, "mean_iou": mean_iou}


def all_metrics(c: Confusion) -> dict[str, float]:
    """Every metric in ``METRICS`` for one set of counts."""
    return {name: fn(c) for name, fn in METRICS.items()}


# Boundary IoU (Cheng et al., "Boundary IoU: Improving Object-Centric Image
# Segmentation Evaluation", CVPR 2021). Region metrics hardly move when only the
# outline is wrong, since a butterfly's interior dwarfs its edge; Boundary IoU
# compares just the band of each mask within a few pixels of its own contour.
DEFAULT_BOUNDARY_RATIO = 0.02


@dataclass(frozen=True)
class BoundaryCounts:
    """Pixels in the intersection and the union of two masks' boundary bands.

    Counts add up over photos, so a set's Boundary IoU can be taken from their sums
    (whole-set) as well as averaged per photo.
    """

    intersection: int = 0
    union: int = 0

    def __add__(self, other: BoundaryCounts) -> BoundaryCounts:
        return BoundaryCounts(self.intersection + other.intersection, self.union + other.union)

    @property
    def iou(self) -> float:
        """intersection / union; 1.0 when both bands are empty (two empty masks agree)."""
        return _ratio(self.intersection, self.union)


def boundary_width(shape: tuple[int, ...], dilation_ratio: float = DEFAULT_BOUNDARY_RATIO) -> int:
    """Band width in pixels: ``dilation_ratio`` of the image diagonal, at least 1 (as in the paper's code)."""
    height, width = shape[:2]
    return max(1, round(dilation_ratio * float(np.hypot(height, width))))


def mask_boundary(mask: np.ndarray, dilation_ratio: float = DEFAULT_BOUNDARY_RATIO) -> np.ndarray:
    """Foreground pixels within :func:`boundary_width` of the background or of the image border.

    The image border counts as background, as in the reference implementation, so
    a mask cut off by the frame has a boundary there too.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    size = 2 * boundary_width(mask.shape, dilation_ratio) + 1
    # One erosion by a (2d+1) square equals d erosions by 3x3, and OpenCV separates it.
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (size, size))
    inner = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & ~inner.astype(bool)


def boundary_counts(
    pred: np.ndarray, truth: np.ndarray, dilation_ratio: float = DEFAULT_BOUNDARY_RATIO
) -> BoundaryCounts:
    """Intersection and union of the boundary bands of two masks of the same shape.

    Compute it at the photo's own resolution: the band width follows the image
    diagonal, so a resized copy gives a different value.
    """
    pred = np.asarray(pred, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    if pred.shape != truth.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {truth.shape}")
    a, b = mask_boundary(pred, dilation_ratio), mask_boundary(truth, dilation_ratio)
    return BoundaryCounts(int(np.count_nonzero(a & b)), int(np.count_nonzero(a | b)))


def boundary_iou(pred: np.ndarray, truth: np.ndarray, dilation_ratio: float = DEFAULT_BOUNDARY_RATIO) -> float:
    """Boundary IoU of two masks (1.0 when both are empty)."""
    return boundary_counts(pred, truth, dilation_ratio).iou
