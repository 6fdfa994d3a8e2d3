"""Segmentation metrics from confusion counts.

Every metric is a function of (TP, FP, FN, TN) so that it can be computed for
one photo or for a whole set by summing the counts first ("whole-set"
aggregation) or by averaging per-photo values ("per-image" aggregation).
Foreground = butterfly. When a denominator is zero (both masks empty for that
class) the prediction agrees perfectly and the metric is 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

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
