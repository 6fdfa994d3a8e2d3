"""Soft edges (matting) and refine edges (GrabCut) on small synthetic photos with a known soft edge."""

import numpy as np
import pytest

from seg_core.outputs.matting import band_radius, soft_matte, trimap, window
from seg_core.outputs.refine import refine_edges

RED, BLUE = np.array([200, 40, 40], np.float64), np.array([30, 110, 220], np.float64)
SIZE, CENTRE, RADIUS = 96, 48.0, 26.0


def disc_photo() -> tuple[np.ndarray, np.ndarray]:
    """A red disc on blue whose edge pixels mix the two by the disc's true coverage (alpha)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    distance = np.hypot(yy + 0.5 - CENTRE, xx + 0.5 - CENTRE)
    alpha = np.clip(RADIUS + 1.5 - distance, 0.0, 3.0) / 3.0
    image = alpha[..., None] * RED + (1 - alpha[..., None]) * BLUE
    return np.round(image).astype(np.uint8), alpha


def test_trimap_marks_a_band_around_the_edge_only():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    tri = trimap(mask, 2)
    assert tri[10, 10] == 1.0 and tri[0, 0] == 0.0
    assert tri[5, 10] == 0.5 and tri[4, 10] == 0.5 and tri[2, 10] == 0.0 and tri[8, 10] == 1.0


def test_trimap_widens_where_the_network_is_unsure():
    mask = np.zeros((20, 40), bool)
    mask[:, :20] = True
    prob = np.where(mask, 0.99, 0.01).astype(np.float32)
    prob[:, 23] = 0.4
    tri = trimap(mask, 1, prob)
    assert tri[10, 23] == 0.5 and tri[10, 25] == 0.0
    assert tri[10, 30] == 0.0


def test_window_is_the_grown_box_clipped_to_the_image():
    mask = np.zeros((10, 10), bool)
    mask[1:3, 4:6] = True
    assert window(mask, 2) == (slice(0, 5), slice(2, 8))
    assert window(np.zeros((4, 4), bool), 1) is None


def test_alpha_is_0_far_away_1_inside_and_soft_along_the_edge():
    image, true_alpha = disc_photo()
    mask = true_alpha >= 0.5
    matte = soft_matte(image, mask)
    far, inside = true_alpha == 0, true_alpha == 1
    assert matte.alpha.dtype == np.float32 and matte.alpha.shape == mask.shape
    assert (matte.alpha[:10] == 0).all() and (matte.alpha[:, :10] == 0).all()
    assert (matte.alpha[40:56, 40:56] == 1).all()
    edge = ~far & ~inside
    assert ((matte.alpha[edge] > 0.05) & (matte.alpha[edge] < 0.95)).mean() > 0.5
    # The matte follows the photo: closer to the true coverage than the hard mask is.
    assert np.abs(matte.alpha - true_alpha).mean() < 0.5 * np.abs(mask - true_alpha).mean()
    assert (matte.alpha_uint8[inside & (matte.alpha == 1)] == 255).all()


def test_edge_colours_are_decontaminated():
    image, true_alpha = disc_photo()
    matte = soft_matte(image, true_alpha >= 0.5)
    edge = (matte.alpha > 0.2) & (matte.alpha < 0.8)
    assert edge.sum() > 20
    # The photo's edge pixels are purple mixes; the recovered butterfly colour is red again.
    mixed = np.abs(image[edge].astype(np.float64) - RED).sum(axis=1).mean()
    recovered = np.abs(matte.foreground[edge].astype(np.float64) - RED).sum(axis=1).mean()
    assert recovered < 0.5 * mixed
    solid = (matte.alpha == 0) | (matte.alpha == 1)
    assert (matte.foreground[solid] == image[solid]).all()


def test_a_shrunk_window_still_gives_a_full_size_soft_matte():
    image, true_alpha = disc_photo()
    mask = true_alpha >= 0.5
    matte = soft_matte(image, mask, max_pixels=40 * 40)
    assert matte.alpha.shape == mask.shape and matte.foreground.shape == image.shape
    assert matte.alpha[0, 0] == 0 and matte.alpha[48, 48] == 1
    assert ((matte.alpha > 0) & (matte.alpha < 1)).sum() > 20
    assert np.abs(matte.alpha - true_alpha).mean() < np.abs(mask - true_alpha).mean()


def test_empty_mask_gives_an_empty_matte_and_bad_input_is_refused():
    image, _ = disc_photo()
    matte = soft_matte(image, np.zeros(image.shape[:2], bool))
    assert not matte.alpha.any() and (matte.foreground == image).all()
    with pytest.raises(ValueError, match="sizes differ"):
        soft_matte(image, np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="RGB uint8"):
        soft_matte(image.astype(np.float32), np.zeros(image.shape[:2], bool))


def test_band_radius_follows_the_size():
    assert band_radius((100, 100)) == 1 and band_radius((3000, 4000)) == 20


@pytest.mark.parametrize("max_pixels", [10**6, 48 * 48])
def test_refine_moves_a_shifted_edge_back_to_the_photo_edge(max_pixels):
    image, true_alpha = disc_photo()
    truth = true_alpha >= 0.5
    shifted = np.roll(truth, 3, axis=1)
    refined = refine_edges(image, shifted, band_fraction=0.08, max_pixels=max_pixels)
    assert (refined != truth).sum() < 0.5 * (shifted != truth).sum()


def test_refine_changes_nothing_far_from_the_mask():
    image, true_alpha = disc_photo()
    mask = true_alpha >= 0.5
    image[2:6, 2:6] = RED.astype(np.uint8)  # a red speck far from the mask stays background
    refined = refine_edges(image, mask)
    assert not refined[:8, :8].any()
    assert not refine_edges(image, np.zeros_like(mask)).any()
