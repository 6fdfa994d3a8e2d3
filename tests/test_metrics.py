import numpy as np
import pytest

from seg_core.metrics import (
    Confusion,
    all_metrics,
    background_iou,
    confusion,
    dice,
    iou,
    mean_iou,
    pixel_accuracy,
)

# 3x4 hand-made masks: 3 true positives, 1 false positive, 2 false negatives, 6 true negatives.
PRED = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
TRUTH = np.array([[1, 1, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0]], dtype=bool)


def test_confusion_counts():
    assert confusion(PRED, TRUTH) == Confusion(tp=3, fp=1, fn=2, tn=6)


def test_metric_values():
    c = confusion(PRED, TRUTH)
    assert pixel_accuracy(c) == pytest.approx(9 / 12)
    assert dice(c) == pytest.approx(6 / 9)
    assert iou(c) == pytest.approx(3 / 6)
    assert background_iou(c) == pytest.approx(6 / 9)
    assert mean_iou(c) == pytest.approx((3 / 6 + 6 / 9) / 2)


def test_dice_and_iou_are_related():
    c = confusion(PRED, TRUTH)
    j = iou(c)
    assert dice(c) == pytest.approx(2 * j / (1 + j))


def test_perfect_and_disjoint():
    assert all_metrics(confusion(TRUTH, TRUTH)) == {"accuracy": 1.0, "dice": 1.0, "iou": 1.0, "mean_iou": 1.0}
    c = confusion(~TRUTH, TRUTH)
    assert iou(c) == 0.0 and dice(c) == 0.0 and pixel_accuracy(c) == 0.0


def test_empty_masks_agree_perfectly():
    empty = np.zeros((2, 2), dtype=bool)
    c = confusion(empty, empty)
    assert iou(c) == 1.0 and dice(c) == 1.0 and mean_iou(c) == 1.0


def test_whole_set_aggregation_sums_counts():
    a = confusion(PRED, TRUTH)
    b = confusion(TRUTH, TRUTH)
    total = a + b
    assert total == Confusion(3 + 5, 1, 2, 6 + 7)
    assert total.total == 24
    # Whole-set IoU weighs pixels, not photos: it differs from the mean of per-photo IoUs.
    assert iou(total) == pytest.approx(8 / 11)
    assert (iou(a) + iou(b)) / 2 == pytest.approx(0.75)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        confusion(PRED, TRUTH[:2])
