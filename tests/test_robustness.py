"""Robustness transforms keep photo and mask aligned; augmentation stays in range; the benchmark file adds up."""

import cv2
import numpy as np
import pandas as pd
import pytest

from seg_core import robustness as robustness_cli
from seg_core.data import photo_transforms as pt
from seg_core.data.augment import AugmentConfig, PhotoPool, augment_pair
from seg_core.evaluation import robustness as rb
from seg_core.runtime.base import Predictor
from seg_core.runtime.registry import available_predictors, trained_models

BUTTERFLY, BACKGROUND = 120, 20


def synthetic_pair(centre: tuple[int, int], axes: tuple[int, int], shape=(150, 200)) -> tuple[np.ndarray, np.ndarray]:
    """A mid-grey ellipse (the "butterfly") on a dark photo, with its exact mask."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mask = ((yy - centre[0]) / axes[0]) ** 2 + ((xx - centre[1]) / axes[1]) ** 2 <= 1
    image = np.where(mask[..., None], BUTTERFLY, BACKGROUND).astype(np.uint8) * np.ones(3, np.uint8)
    return image, mask


PAIRS = [synthetic_pair((75, 90), (40, 60)), synthetic_pair((60, 120), (30, 50)), synthetic_pair((90, 80), (35, 45))]
POOL = PhotoPool([p[0] for p in PAIRS], [p[1] for p in PAIRS])


def alignment(image: np.ndarray, mask: np.ndarray) -> float:
    """Share of pixels whose luminance is nearer the mask's inside mean than its outside mean (or vice versa)."""
    lum = image.astype(np.float32).mean(axis=2)
    inside, outside = lum[mask].mean(), lum[~mask].mean()
    predicted = np.abs(lum - inside) < np.abs(lum - outside)
    return float((predicted == mask).mean())


@pytest.mark.parametrize("name", list(rb.CONDITIONS))
def test_every_condition_keeps_photo_and_mask_aligned(name):
    image, mask = rb.apply(name, PAIRS, 0)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[:2] == mask.shape and mask.dtype == bool
    assert mask.any() and not mask.all()
    assert alignment(image, mask) >= 0.95


@pytest.mark.parametrize("name", list(rb.CONDITIONS))
def test_conditions_are_deterministic(name):
    first, second = rb.apply(name, PAIRS, 1), rb.apply(name, PAIRS, 1)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_unknown_condition_is_refused():
    with pytest.raises(rb.UnknownConditionError, match="available"):
        rb.apply("sepia", PAIRS, 0)


def test_small_in_frame_shrinks_the_butterfly_by_the_frame_factor():
    image, mask = PAIRS[0]
    _, small = pt.small_in_frame(image, mask, 2.5)
    assert small.shape == mask.shape
    assert small.sum() == pytest.approx(mask.sum() / 2.5**2, rel=0.1)


def test_rotation_turns_mask_with_photo():
    image, mask = PAIRS[1]
    turned, turned_mask = pt.rotate90(image, mask, 1)
    assert turned_mask.shape == mask.shape[::-1] and np.array_equal(turned_mask, np.rot90(mask))
    assert alignment(turned, turned_mask) == 1.0


def test_several_on_one_keeps_every_butterfly():
    image, mask = PAIRS[0]
    _, together = pt.several_on_one(image, mask, PAIRS[1:], seed=3, size=0.6)
    count, _ = cv2.connectedComponents(together.astype(np.uint8))
    assert count - 1 == 3


@pytest.mark.parametrize("seed", range(12))
def test_robust_augmentation_stays_in_range_and_aligned(seed):
    image, mask = PAIRS[seed % 3]
    x, y = augment_pair(image, mask, 64, AugmentConfig.robust(), np.random.default_rng(seed), POOL)
    assert x.shape == (64, 64, 3) and x.dtype == np.float32 and y.shape == (64, 64)
    assert x.min() >= 0.0 and x.max() <= 1.0 and set(np.unique(y)) <= {0.0, 1.0}
    if 0 < y.mean() < 1:
        assert alignment(np.rint(x * 255).astype(np.uint8), y > 0.5) >= 0.85


def test_basic_augmentation_is_unchanged_by_the_robust_fields():
    # unet-bce and old cards record AugmentConfig(): the new transforms must be off there.
    cfg = AugmentConfig()
    assert not cfg.rotate90 and all(getattr(cfg, f) == 0 for f in cfg.to_dict() if f.startswith("p_"))


class Thresholder(Predictor):
    """Calls a pixel butterfly when it is brighter than the dark synthetic background."""

    name = "thresholder"

    def predict_proba(self, image, options=None):
        return (image.mean(axis=2) > (BUTTERFLY + BACKGROUND) / 2).astype(np.float32)


def test_run_condition_rows_have_counts_that_sum_to_the_area():
    rows = rb.run_condition(Thresholder(), "rotate_90", ["a", "b", "c"], PAIRS)
    df = pd.DataFrame(rows, columns=rb.COLUMNS)
    assert list(df["image_id"]) == ["a", "b", "c"]
    assert (df[["tp", "fp", "fn", "tn"]].sum(axis=1) == df["height"] * df["width"]).all()
    summary = rb.summarize(df)
    assert summary.loc[0, "iou_mean"] == pytest.approx(1.0)


def test_committed_robustness_file_covers_every_model_and_condition():
    df = rb.load_robustness()
    default = df[df["setting"] == "default"]
    assert set(default["condition"]) == set(rb.CONDITIONS)
    assert set(default["model"]) == set(available_predictors())
    per_cell = default.groupby(["model", "condition"]).size()
    # Every condition of a model covers the same photos; the U-Nets all 112 test photos
    # (GrabCut, at about a second a photo, may cover fewer: the README says how many).
    assert (per_cell.groupby(level="model").nunique() == 1).all()
    assert (per_cell.loc[trained_models()] == 112).all()
    assert (df[["tp", "fp", "fn", "tn"]].sum(axis=1) == df["height"] * df["width"]).all()


def test_cli_lists_conditions(capsys):
    robustness_cli.main(["--list"])
    out = capsys.readouterr().out
    assert all(name in out for name in rb.CONDITIONS)


def test_strength_scales_every_chance_of_the_robust_recipe():
    full, mild = AugmentConfig.robust(), AugmentConfig.robust(0.4)
    chances = [f for f in full.to_dict() if f.startswith("p_")]
    assert all(getattr(mild, f) == pytest.approx(0.4 * getattr(full, f)) for f in chances)
    assert all(getattr(AugmentConfig.robust(0.0), f) == 0 for f in chances)
