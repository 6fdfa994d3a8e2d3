"""Mask correction tools on tiny arrays: grow from a click, GrabCut from seeds, brush, undo."""

import numpy as np
import pytest

from seg_core.outputs import correction as fix


def two_wings(size: int = 40) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A photo, a probability map and a mask: the left wing seen (p 0.9), the right one half seen (p 0.3)."""
    prob = np.full((size, size), 0.01, np.float32)
    prob[10:30, 4:18] = 0.9
    prob[10:30, 22:36] = 0.3
    image = np.full((size, size, 3), 30, np.uint8)
    image[10:30, 4:18] = (200, 120, 20)
    image[10:30, 22:36] = (20, 80, 220)
    return image, prob, prob >= 0.5


def test_a_click_grows_the_half_seen_wing_and_stops_at_the_background():
    _, prob, mask = two_wings()
    region = fix.grow_region(prob, (28, 20))
    assert region[10:30, 22:36].all() and region.sum() == 20 * 14
    assert not region[10:30, 4:18].any(), "the flood climbs to likelier pixels only when they touch"


def test_a_remove_click_takes_the_region_the_network_doubts():
    _, prob, _ = two_wings()
    prob[10:30, 18:22] = 0.6  # a bridge joins the wings into one mask
    mask = prob >= 0.5
    edited = fix.apply_edit(np.zeros((40, 40, 3), np.uint8), prob, mask, fix.Edit(fix.GROW, False, ((19, 20),)))
    assert not edited[10:30, 18:22].any()
    assert edited[10:30, 4:18].all(), "pixels the network is surer of than the click stay"


def test_a_grow_click_where_the_network_sees_nothing_falls_back_to_grabcut():
    image, prob, mask = two_wings()
    prob[10:30, 22:36] = 0.001
    edited = fix.apply_edit(image, prob, mask, fix.Edit(fix.GROW, True, ((28, 20),)))
    # The blue wing has its own colour: GrabCut takes it from the click's seed.
    assert edited[10:30, 22:36].mean() > 0.9
    assert not edited[:8].any() and not edited[32:].any()
    assert edited[10:30, 4:18].all()


def test_grabcut_remove_clicks_are_background_in_the_result():
    image, prob, _ = two_wings()
    mask = prob >= 0.2
    edited = fix.grabcut_region(image, mask, [(28, 20)], add=False)
    assert not edited[20, 28]
    assert edited[10:30, 4:18].mean() > 0.9


def test_brush_paints_and_erases_a_stroke():
    _, prob, mask = two_wings()
    stroke = fix.Edit(fix.BRUSH, True, ((0, 0), (10, 0)), radius=1)
    painted = fix.apply_edit(np.zeros((40, 40, 3), np.uint8), prob, mask, stroke)
    assert painted[0, :11].all() and painted[1, 5] and not painted[3, 5]
    erased = fix.apply_edit(np.zeros((40, 40, 3), np.uint8), prob, painted, fix.Edit(fix.BRUSH, False, ((5, 20),), 2))
    assert not erased[20, 3:8].any() and not erased[18:23, 5].any() and erased[10, 10]


def test_bad_edits_are_refused():
    image, prob, mask = two_wings()
    with pytest.raises(fix.CorrectionError, match="outside"):
        fix.apply_edit(image, prob, mask, fix.Edit(fix.GROW, True, ((40, 3),)))
    with pytest.raises(fix.CorrectionError, match="unknown tool"):
        fix.apply_edit(image, prob, mask, fix.Edit("lasso", True, ((3, 3),)))
    with pytest.raises(fix.CorrectionError, match="radius"):
        fix.apply_edit(image, prob, mask, fix.Edit(fix.BRUSH, True, ((3, 3),), 0))
    with pytest.raises(fix.CorrectionError, match="differ"):
        fix.apply_edit(image, prob[:20], mask, fix.Edit(fix.GROW, True, ((3, 3),)))


def test_history_undoes_resets_and_skips_edits_that_change_nothing():
    start = np.zeros((5, 7), bool)
    history = fix.History.start(start)
    assert history.edits == 0 and history.undo() is history
    one = start.copy()
    one[1, 1] = True
    two = one.copy()
    two[4, 6] = True
    history = history.push(one).push(one).push(two)
    assert history.edits == 2 and np.array_equal(history.current, two)
    assert np.array_equal(history.undo().current, one)
    assert np.array_equal(history.reset().current, start) and history.reset().edits == 0
    with pytest.raises(fix.CorrectionError):
        history.push(np.zeros((7, 5), bool))


def test_history_keeps_the_start_and_the_last_edits():
    history = fix.History.start(np.zeros((2, 2), bool))
    masks = [np.arange(4).reshape(2, 2) == k % 4 for k in range(fix.MAX_UNDO + 5)]
    for mask in masks:
        history = history.push(mask)
    assert history.edits == fix.MAX_UNDO
    assert np.array_equal(history.current, masks[-1]) and not history.original.any()


def test_screen_points_and_drags_become_edits_in_photo_pixels():
    assert fix.from_screen(50, 25, (100, 50), (200, 400)) == (200, 100)
    assert fix.from_screen(-3, 80, (100, 50), (200, 400)) == (0, 199), "a release outside the picture stays inside"
    assert fix.drag_edit(fix.BRUSH, True, (1, 2), (5, 6), 3) == fix.Edit(fix.BRUSH, True, ((1, 2), (5, 6)), 3)
    assert fix.drag_edit(fix.GROW, False, (1, 2), (5, 6), 3) == fix.Edit(fix.GROW, False, ((1, 2),), 0)
