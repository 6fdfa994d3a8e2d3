"""Compact results: uint8 levels give the float32 masks at every slider threshold; downloads match the library."""

import io

import numpy as np
import pytest
from PIL import Image

from seg_core.core.imaging import load_image, load_image_reduced
from seg_core.core.paths import REPO_ROOT
from seg_core.outputs.compact import (
    EDGES,
    SLIDER_THRESHOLDS,
    analyse_compact,
    approximate,
    compact,
    display_size,
    full_levels,
    is_exact,
    levels_mask,
    mismatches,
    quantise,
)
from seg_core.outputs.postprocess import display_copy
from seg_core.runtime.base import DEFAULT_MODEL, threshold_mask
from seg_core.runtime.registry import load_predictor, segment

SAMPLE = sorted((REPO_ROOT / "samples" / "images").glob("*.jpg"))[0]
GRID_THRESHOLDS = tuple(k / 200 for k in range(201))


def near_edges(ulps: int = 300) -> np.ndarray:
    """Every float32 within ``ulps`` steps of each grid threshold, the hardest values to quantise."""
    bits = EDGES[1:].view(np.int32)[:, None] + np.arange(-ulps, ulps + 1, dtype=np.int32)
    tiny = np.arange(0, ulps, dtype=np.int32).view(np.float32)  # 0 and the smallest positive floats
    return np.concatenate([bits.ravel().view(np.float32), tiny, [-0.0, -1e-9, -1.0, 1.5]]).astype(np.float32)


def test_levels_count_the_grid_thresholds_reached():
    prob = np.array([0.0, 0.004, 0.005, 0.37, 0.999, 1.0, -0.1, np.nan], dtype=np.float32)
    assert quantise(prob).tolist() == [1, 1, 2, 75, 200, 201, 0, 0]
    assert quantise(prob).dtype == np.uint8


def test_every_grid_threshold_gives_the_float32_mask_on_the_hardest_values():
    prob = near_edges()
    levels = quantise(prob)
    assert levels.dtype == np.uint8
    for t in GRID_THRESHOLDS:
        assert np.array_equal(levels_mask(levels, t), threshold_mask(prob, t)), t


def test_mismatches_finds_none_on_a_real_looking_map_and_all_slider_steps_are_exact():
    rng = np.random.default_rng(0)
    prob = np.clip(rng.normal(0.5, 0.3, (300, 400)), 0, 1).astype(np.float32)
    prob[0, :200] = EDGES[:200]  # values exactly on the thresholds
    assert mismatches(prob) == []
    assert mismatches(prob, GRID_THRESHOLDS) == []
    assert all(is_exact(t) for t in SLIDER_THRESHOLDS)


def test_slider_values_as_a_browser_sends_them_are_exact():
    # A slider may send 0.05 + 0.01 * n rather than the decimal; float32 sees no difference.
    accumulated = [0.05 + 0.01 * n for n in range(91)]
    assert all(is_exact(t) for t in accumulated)
    neighbours = [np.nextafter(t, d) for t in SLIDER_THRESHOLDS for d in (0.0, 1.0)]
    assert all(is_exact(float(t)) for t in neighbours)


def test_a_threshold_off_the_grid_is_rounded_up_to_the_next_grid_value():
    assert not is_exact(0.3712)
    prob = near_edges()
    assert np.array_equal(levels_mask(quantise(prob), 0.3712), threshold_mask(prob, 0.375))


def test_approximate_probabilities_stay_within_half_a_step():
    prob = np.linspace(0, 1, 10_001, dtype=np.float32)
    assert np.abs(approximate(quantise(prob)) - prob).max() <= 0.0025 + 1e-7


def test_display_size_matches_display_copy():
    image = np.zeros((3000, 4500, 3), dtype=np.uint8)
    small, _ = display_copy(image, np.zeros((3000, 4500), dtype=bool))
    assert display_size((3000, 4500)) == small.shape[:2] == (973, 1460)
    assert display_size((300, 400)) == (300, 400)


def test_the_shown_picture_and_mask_equal_display_copy_of_the_full_size_ones():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (2500, 3100, 3), dtype=np.uint8)
    prob = rng.random((2500, 3100), dtype=np.float32)
    result = compact(image, prob)
    for t in (0.05, 0.5, 0.95):
        small_image, small_mask = display_copy(image, threshold_mask(prob, t))
        assert np.array_equal(result.shown_mask(t), small_mask)
        assert np.array_equal(result.shrink(threshold_mask(prob, t)), small_mask)
    assert np.array_equal(result.shown_image, small_image)
    assert result.shape == (2500, 3100) and not result.is_full
    assert not result.shown_levels.flags.writeable and not result.shown_image.flags.writeable
    with pytest.raises(ValueError, match="full_levels"):
        result.full()


def test_a_photo_no_larger_than_the_screen_is_its_own_full_size_result():
    rng = np.random.default_rng(2)
    prob = rng.random((300, 400), dtype=np.float32)
    result = compact(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), prob)
    assert result.is_full and np.array_equal(result.full().levels, quantise(prob))
    assert np.array_equal(result.full().mask(0.4), threshold_mask(prob, 0.4))


def test_a_reduced_copy_keeps_the_full_shape():
    """A photo analysed from a reduced copy is shown at the size its full shape gives."""
    image = np.zeros((1000, 1500, 3), dtype=np.uint8)
    result = compact(image, np.full((1000, 1500), 0.7, np.float32), shape=(4000, 6000))
    assert result.shape == (4000, 6000) and result.shown_image.shape[:2] == display_size((4000, 6000))
    assert result.shown_mask(0.5).all() and not result.is_full


def test_compact_refuses_a_map_of_another_size():
    with pytest.raises(ValueError, match="sizes differ"):
        compact(np.zeros((10, 10, 3), dtype=np.uint8), np.zeros((10, 11), dtype=np.float32))


def test_a_compact_result_is_a_fraction_of_the_full_one():
    image = np.zeros((4000, 6000, 3), dtype=np.uint8)
    prob = np.zeros((4000, 6000), dtype=np.float32)
    result = compact(image, prob)
    full = image.nbytes + prob.nbytes
    held = result.shown_image.nbytes + result.shown_levels.nbytes
    assert held < full / 20


@pytest.fixture(scope="module")
def predictor():
    return load_predictor(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def big_photo() -> bytes:
    """A sample photo at 3000 px wide, so the display copy is smaller than the download."""
    with Image.open(SAMPLE) as photo:
        big = photo.convert("RGB").resize((3000, round(3000 * photo.height / photo.width)), Image.BICUBIC)
    buffer = io.BytesIO()
    big.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_the_download_mask_equals_the_library_mask(predictor, big_photo):
    full = full_levels(load_image(big_photo), predictor)
    for t in (0.05, 0.3, 0.5, 0.72, 0.95):
        image, direct = segment(big_photo, predictor, t)
        assert 0 < direct.mean() < 1, t  # the photo has a butterfly, so the threshold matters
        assert np.array_equal(full.mask(t), direct), t
    assert not full.levels.flags.writeable


def test_the_preview_of_a_big_photo_agrees_with_its_full_size_mask(predictor, big_photo):
    """The screen shows the model run on a reduced decode; it matches the full-size mask shrunk."""
    result = analyse_compact(big_photo, predictor)
    assert result.shape == load_image(big_photo).shape[:2] and result.shown_image.shape[1] == 1460
    shown, full = result.shown_mask(0.5), result.shrink(full_levels(load_image(big_photo), predictor).mask(0.5))
    assert (shown & full).sum() / (shown | full).sum() >= 0.98


def test_a_big_jpeg_is_decoded_reduced_with_its_full_shape(big_photo):
    image, shape = load_image_reduced(big_photo, 700)
    full = load_image(big_photo)
    assert shape == full.shape[:2] and 700 <= image.shape[1] < full.shape[1]
    assert load_image_reduced(big_photo, 4000)[0].shape == full.shape


def test_the_real_map_gives_the_same_mask_at_every_slider_step(predictor, big_photo):
    assert mismatches(predictor.predict_proba(load_image(big_photo))) == []
