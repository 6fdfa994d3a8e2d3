"""Mask clean-up and display pictures on tiny hand-made arrays."""

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from seg_core.outputs.postprocess import (
    ERROR_COLOURS,
    clean_mask,
    cutout,
    display_copy,
    drop_small_regions,
    error_overlay,
    fill_holes,
    fill_small_holes,
    foreground_fraction,
    keep_largest_region,
    mask_image,
    on_checkerboard,
    overlay,
    removed_pixels,
    screen_bytes,
    tidy_mask,
    vote_count,
    vote_map,
    vote_palette,
)


def grid(rows: list[str]) -> np.ndarray:
    """A boolean mask from strings: '#' is foreground, '.' background."""
    return np.array([[c == "#" for c in row] for row in rows])


def test_keep_largest_region_drops_smaller_blobs():
    mask = grid(["##...", "##..#", ".....", "....."])
    assert (keep_largest_region(mask) == grid(["##...", "##...", ".....", "....."])).all()


def test_keep_largest_region_joins_diagonal_neighbours():
    mask = grid(["#....", ".#...", "....#"])
    assert (keep_largest_region(mask) == grid(["#....", ".#...", "....."])).all()


def test_keep_largest_region_of_empty_mask_is_empty():
    out = keep_largest_region(np.zeros((3, 4), bool))
    assert out.shape == (3, 4) and not out.any()


def test_fill_holes_fills_enclosed_background_only():
    mask = grid(["#####.", "#..#..", "#####.", "......"])
    assert (fill_holes(mask) == grid(["#####.", "####..", "#####.", "......"])).all()


def test_fill_holes_leaves_background_touching_the_border():
    # The gap at the top edge opens the ring to the outside.
    mask = grid(["#.###", "#...#", "#####"])
    assert (fill_holes(mask) == mask).all()


def test_fill_holes_uses_4_connectivity_for_background():
    # A diagonal gap does not let the outside in: the hole is enclosed.
    mask = grid([".###", "#..#", "###."])
    assert (fill_holes(mask) == grid([".###", "####", "###."])).all()


def test_clean_mask_does_not_modify_its_input():
    mask = grid(["###..#", "#.#...", "###..."])
    before = mask.copy()
    out = clean_mask(mask, largest_region=True, holes=True)
    assert (mask == before).all()
    assert (out == grid(["###...", "###...", "###..."])).all()
    assert (clean_mask(mask) == mask).all()


def test_foreground_fraction():
    assert foreground_fraction(grid(["#...", "##.."])) == pytest.approx(3 / 8)
    assert foreground_fraction(np.zeros((0, 0), bool)) == 0.0


def test_overlay_tints_only_the_mask():
    image = np.full((4, 4, 3), 100, np.uint8)
    mask = grid(["##..", "##..", "....", "...."])
    out = overlay(image, mask, colour=(200, 0, 100), alpha=0.5, outline=None)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert tuple(out[0, 0]) == (150, 50, 100)
    assert (out[~mask] == 100).all()
    assert (image == 100).all()


def test_overlay_outline_marks_the_border():
    image = np.zeros((6, 6, 3), np.uint8)
    mask = grid(["......", ".####.", ".####.", ".####.", ".####.", "......"])
    out = overlay(image, mask, alpha=0.0, outline=(255, 255, 0))
    assert tuple(out[1, 1]) == (255, 255, 0)
    assert tuple(out[0, 0]) == (0, 0, 0)


def test_overlay_rejects_size_mismatch():
    with pytest.raises(ValueError, match="sizes differ"):
        overlay(np.zeros((4, 4, 3), np.uint8), np.zeros((3, 4), bool))


def test_cutout_is_rgba_with_mask_as_alpha():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    mask = grid(["#..", ".##"])
    out = cutout(image, mask)
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    assert (out[..., :3] == image).all()
    assert (out[..., 3] == np.where(mask, 255, 0)).all()


def test_on_checkerboard_shows_opaque_pixels_and_blends_partial_ones():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)
    rgba[1, 0] = (255, 255, 255, 51)
    out = on_checkerboard(rgba, square=1)
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[0, 1]) == (200, 200, 200) and tuple(out[1, 1]) == (235, 235, 235)
    assert tuple(out[1, 0]) == (211, 211, 211)


def test_mask_image():
    assert (mask_image(grid(["#."])) == np.array([[255, 0]], np.uint8)).all()


def test_vote_count_and_map():
    a, b = grid(["##.."]), grid(["#.#."])
    assert vote_count([a, b]).tolist() == [[2, 1, 1, 0]]
    picture = vote_map([a, b])
    palette = vote_palette(2)
    assert tuple(picture[0, 0]) == (255, 255, 255)
    assert tuple(picture[0, 3]) == (0, 0, 0)
    assert tuple(picture[0, 1]) == tuple(palette[1])


def test_vote_palette_has_distinct_colours():
    palette = vote_palette(5)
    assert palette.shape == (6, 3) and len({tuple(c) for c in palette}) == 6


def test_vote_count_rejects_mismatched_or_missing_masks():
    with pytest.raises(ValueError):
        vote_count([])
    with pytest.raises(ValueError, match="differ"):
        vote_count([np.zeros((2, 2), bool), np.zeros((2, 3), bool)])


def test_error_overlay_colours_hits_false_positives_and_misses():
    image = np.zeros((1, 4, 3), np.uint8)
    pred, truth = grid(["##.."]), grid(["#.#."])
    out = error_overlay(image, pred, truth, alpha=1.0)
    assert tuple(out[0, 0]) == ERROR_COLOURS["hit"]
    assert tuple(out[0, 1]) == ERROR_COLOURS["false_positive"]
    assert tuple(out[0, 2]) == ERROR_COLOURS["missed"]
    assert tuple(out[0, 3]) == (0, 0, 0)


def test_display_copy_shrinks_only_large_photos():
    image = np.zeros((30, 60, 3), dtype=np.uint8)
    mask = np.zeros((30, 60), dtype=bool)
    mask[10:20, 20:40] = True
    same_image, same_mask = display_copy(image, mask, max_side=60)
    assert same_image is image and same_mask.shape == (30, 60)
    small_image, small_mask = display_copy(image, mask, max_side=20)
    assert small_image.shape == (10, 20, 3) and small_mask.shape == (10, 20)
    assert small_mask.dtype == bool and small_mask[5, 10] and not small_mask[0, 0]


def two_butterflies_and_a_scale_bar() -> np.ndarray:
    """Two blobs of similar size (one with a pinhole), a thin bar and a speck."""
    mask = np.zeros((60, 80), bool)
    mask[5:25, 5:30] = True
    mask[12, 15] = False  # pinhole
    mask[8:30, 45:70] = True
    mask[50:52, 10:35] = True  # scale bar: 50 pixels, under a tenth of the larger butterfly
    mask[40, 75] = True  # speck
    return mask


def test_tidy_keeps_both_butterflies_and_drops_the_bar_and_speck():
    mask = two_butterflies_and_a_scale_bar()
    out = tidy_mask(mask)
    assert out[5:25, 5:30].all() and out[8:30, 45:70].all()
    assert not out[50:52].any() and not out[40, 75]
    assert out.sum() == 20 * 25 + 22 * 25
    # "Largest only" still drops the smaller butterfly.
    assert not keep_largest_region(mask)[5:25, 5:30].any()


def test_drop_small_regions_fraction_bounds():
    mask = two_butterflies_and_a_scale_bar()
    assert (drop_small_regions(mask, 0.0) == mask).all()
    assert drop_small_regions(mask, 1.0).sum() == 22 * 25
    assert not drop_small_regions(np.zeros((3, 3), bool)).any()
    with pytest.raises(ValueError, match="min_fraction"):
        drop_small_regions(mask, 1.5)


def test_fill_small_holes_leaves_large_enclosed_gaps_open():
    ring = np.ones((30, 30), bool)
    ring[10:20, 10:20] = False  # 100-pixel gap: a third of the 800-pixel ring
    ring[3, 3] = False  # pinhole
    out = fill_small_holes(ring, max_fraction=0.02)
    assert out[3, 3] and not out[10:20, 10:20].any()
    assert fill_small_holes(ring, max_fraction=0.5).all()
    assert (fill_small_holes(ring, max_fraction=0.0) == ring).all()


def whole_photo_reference(mask: np.ndarray, min_fraction: float, max_hole_fraction: float) -> np.ndarray:
    """Tidy by the definition, over the whole photo: regions by area, then holes not joined to the border."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    areas = stats[1:, cv2.CC_STAT_AREA]
    kept = np.isin(labels, 1 + np.flatnonzero(areas >= min_fraction * areas.max()))
    padded = np.pad(~kept, 1, constant_values=True).astype(np.uint8)
    _, holes, hole_stats, _ = cv2.connectedComponentsWithStats(padded, connectivity=4)
    small = hole_stats[:, cv2.CC_STAT_AREA] < max_hole_fraction * areas.max()
    small[[0, holes[0, 0]]] = False
    return kept | small[holes[1:-1, 1:-1]]


def test_tidy_inside_the_foregrounds_box_matches_the_whole_photo_definition():
    rng = np.random.default_rng(3)
    for _ in range(300):
        height, width = rng.integers(1, 25, 2)
        mask = rng.random((height, width)) < rng.random()
        for fractions in ((0.1, 0.02), (0.0, 0.5), (0.6, 1.0)):
            expected = whole_photo_reference(mask, *fractions)
            assert (tidy_mask(mask, *fractions) == expected).all(), (mask.astype(int), fractions)
            assert (fill_small_holes(drop_small_regions(mask, fractions[0]), fractions[1]) == expected).all()


def test_clean_mask_tidy_step_runs_first():
    mask = two_butterflies_and_a_scale_bar()
    assert (clean_mask(mask, tidy=True) == tidy_mask(mask)).all()
    assert (clean_mask(mask, tidy=True, largest_region=True) == keep_largest_region(tidy_mask(mask))).all()


def test_overlay_shows_removed_pixels_in_their_own_colour():
    mask = two_butterflies_and_a_scale_bar()
    kept = tidy_mask(mask)
    gone = removed_pixels(mask, kept)
    assert gone[50, 20] and gone[40, 75] and not gone[10, 10] and not gone[12, 15]
    image = np.zeros((*mask.shape, 3), np.uint8)
    out = overlay(image, kept, colour=(255, 0, 0), alpha=1.0, outline=None, removed=gone, removed_colour=(0, 0, 255))
    assert tuple(out[10, 10]) == (255, 0, 0) and tuple(out[50, 20]) == (0, 0, 255) and tuple(out[0, 0]) == (0, 0, 0)
    with pytest.raises(ValueError, match="sizes differ"):
        removed_pixels(mask, mask[:3])


def test_screen_pictures_are_jpeg_for_photos_and_exact_png_for_masks_and_transparency():
    rng = np.random.default_rng(3)
    photo = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    shown = Image.open(io.BytesIO(screen_bytes(photo)))
    assert shown.format == "JPEG" and shown.size == (40, 30) and shown.mode == "RGB"
    for picture in (mask_image(rng.random((30, 40)) > 0.5), np.dstack([photo, photo[..., 0]])):
        decoded = Image.open(io.BytesIO(screen_bytes(picture)))
        assert decoded.format == "PNG" and np.array_equal(np.asarray(decoded), picture)
    for bad in (photo.astype(np.float32), photo[..., :2], np.zeros((2, 2, 2, 3), np.uint8)):
        with pytest.raises(ValueError, match="grey, RGB or RGBA"):
            screen_bytes(bad)
