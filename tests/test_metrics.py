import numpy as np
import pytest

from seg_core.core.metrics import (
    BoundaryCounts,
    Confusion,
    all_metrics,
    background_iou,
    boundary_counts,
    boundary_iou,
    boundary_width,
    confusion,
    dice,
    iou,
    mask_boundary,
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


def square_mask(size: int, top: int, left: int, side: int) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[top : top + side, left : left + side] = True
    return mask


def test_boundary_band_width_follows_the_image_diagonal():
    assert boundary_width((300, 400), 0.02) == 10
    assert boundary_width((10, 10), 0.02) == 1
    band = mask_boundary(square_mask(100, 20, 20, 60), dilation_ratio=0.03)  # width 4 on a 141-pixel diagonal
    assert band[20:24, 50].all() and not band[24, 50] and not band[50, 50]


def test_boundary_iou_of_identical_and_empty_masks_is_one():
    mask = square_mask(50, 10, 10, 20)
    assert boundary_iou(mask, mask) == 1.0
    assert boundary_iou(np.zeros((5, 5), bool), np.zeros((5, 5), bool)) == 1.0
    assert boundary_iou(mask, np.zeros_like(mask)) == 0.0


def test_boundary_iou_punishes_edge_errors_that_iou_hardly_sees():
    truth = square_mask(200, 20, 20, 160)
    shifted = square_mask(200, 23, 20, 160)
    assert iou(confusion(shifted, truth)) > 0.95
    assert boundary_iou(shifted, truth, dilation_ratio=0.01) < 0.8


def test_boundary_counts_add_up_over_photos():
    a, b = square_mask(40, 5, 5, 20), square_mask(40, 6, 5, 20)
    one, two = boundary_counts(a, b), boundary_counts(b, b)
    assert isinstance(one, BoundaryCounts) and one.intersection <= one.union
    total = one + two
    assert total == BoundaryCounts(one.intersection + two.intersection, one.union + two.union)
    assert total.iou == pytest.approx(total.intersection / total.union)
    with pytest.raises(ValueError, match="shapes differ"):
        boundary_counts(a, a[:3])
