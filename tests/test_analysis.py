"""One photo through one model: the cached step, the cheap step and the pictures."""

import numpy as np
import pytest

from seg_core.core.imaging import InvalidImageError, load_image, to_png_bytes
from seg_core.core.metrics import all_metrics, confusion
from seg_core.outputs.compact import CompactAnalysis, analyse_compact, compact, full_levels
from seg_core.outputs.postprocess import REMOVED_COLOUR, clean_mask
from seg_core.runtime.base import InferenceOptions, threshold_mask
from seg_core.runtime.catalogue import sample_photos
from seg_core.service.analysis import (
    Look,
    MaskSettings,
    age_text,
    before_after,
    cutout_pair,
    final_mask,
    finish_compact,
    is_cached,
    load_truth,
    views,
)

SAMPLE = sample_photos()[0]


class Ramp:
    """A stand-in model: probability rising from 0 on the left to 1 on the right."""

    name = "ramp"
    kind = "test"
    binary_only = False

    def __init__(self):
        self.options = []

    def predict_proba(self, image, options=None):
        self.options.append(options)
        height, width = image.shape[:2]
        return np.tile(np.linspace(0, 1, width, dtype=np.float32), (height, 1))


def photo(height=4, width=10) -> bytes:
    return to_png_bytes(np.full((height, width, 3), 90, np.uint8))


def test_analysis_is_read_only_and_passes_the_options_to_the_model():
    model = Ramp()
    options = InferenceOptions(second_look=False, tta=True)
    result = analyse_compact(SAMPLE.image_path.read_bytes(), model, options)
    assert model.options == [options] and result.options == options
    assert result.shown_levels.shape == result.shown_image.shape[:2] and result.model_ms >= 0
    with pytest.raises(ValueError):
        result.shown_levels[0, 0] = 1
    with pytest.raises(ValueError):
        result.shown_image[0, 0] = 0


def test_default_options_are_the_library_defaults():
    model = Ramp()
    analyse_compact(photo(), model)
    assert model.options == [InferenceOptions()]


def test_a_result_measured_before_the_request_is_cached():
    result = analyse_compact(photo(), Ramp())
    assert not is_cached(result, result.measured_at - 1)
    assert is_cached(result, result.measured_at + 1)
    assert [age_text(s) for s in (-1, 4.4, 125, 5400)] == ["0 s", "4 s", "2 min", "1.5 h"]


def test_finish_thresholds_cleans_and_scores():
    result = analyse_compact(photo(), Ramp())
    truth = np.zeros((4, 10), bool)
    truth[:, 5:] = True
    outcome = finish_compact(result, MaskSettings(threshold=0.5), to_png_bytes(truth), full=result.full())
    assert outcome.mask.tolist() == truth.tolist()
    assert outcome.scores["iou"] == 1.0 and outcome.scores["dice"] == 1.0 and outcome.truth_error is None
    higher = finish_compact(result, MaskSettings(threshold=0.9), to_png_bytes(truth), full=result.full())
    assert higher.mask.sum() < truth.sum() and higher.scores["iou"] < 1.0
    assert finish_compact(result, MaskSettings()).scores is None


def test_a_ground_truth_of_another_size_is_reported_not_raised():
    result = analyse_compact(photo(), Ramp())
    outcome = finish_compact(result, MaskSettings(), to_png_bytes(np.zeros((3, 3), bool)), full=result.full())
    assert outcome.scores is None and isinstance(outcome.truth_error, InvalidImageError)
    assert "3x3" in str(outcome.truth_error) and outcome.mask.shape == (4, 10)
    with pytest.raises(InvalidImageError):
        load_truth(b"not a png", result.shape)


def test_views_are_the_four_pictures_shown():
    result = analyse_compact(photo(), Ramp())
    mask = finish_compact(result, MaskSettings()).mask
    shown = views(result.shown_image, mask)
    assert list(shown) == ["Original", "Mask", "Overlay", "Cut-out"]
    assert all(p.shape[:2] == (4, 10) for p in shown.values())


def bar_and_butterfly() -> CompactAnalysis:
    """A 40x60 photo whose probabilities mark a 20x20 'butterfly' and a 1x3 'scale bar'."""
    image = np.full((40, 60, 3), 100, np.uint8)
    prob = np.zeros((40, 60), np.float32)
    prob[10:30, 10:30] = 0.9
    prob[38, 40:43] = 0.9
    return compact(image, prob, 1.0, 0.0)


def test_tidy_drops_the_bar_and_the_outcome_says_what_went():
    outcome = finish_compact(bar_and_butterfly(), MaskSettings(tidy=True))
    assert outcome.mask.sum() == 400 and outcome.removed.sum() == 3 and outcome.removed[38, 40:43].all()
    plain = finish_compact(bar_and_butterfly(), MaskSettings())
    assert plain.mask.sum() == 403 and not plain.removed.any()
    overlay = views(plain.analysis.shown_image, outcome.mask, outcome.removed)["Overlay"]
    assert overlay[38, 41].tolist() != [100, 100, 100] and overlay[38, 41].argmax() == np.argmax(REMOVED_COLOUR)


def test_finish_uses_a_given_edge_instead_of_thresholding():
    edge = np.zeros((40, 60), bool)
    edge[0:4, 0:4] = True
    result = bar_and_butterfly()
    outcome = finish_compact(result, MaskSettings(refine=True), edge=edge, full=result.full())
    assert outcome.mask.tolist() == edge.tolist()
    with pytest.raises(ValueError, match="full-size levels"):
        finish_compact(result, MaskSettings(refine=True), edge=edge)


def test_cutout_pair_crops_the_photo_and_the_cut_out_alike():
    result = bar_and_butterfly()
    mask = finish_compact(result, MaskSettings(tidy=True)).mask
    photo, cut = cutout_pair(result.shown_image, mask, Look(background=(0, 255, 0), crop=True))
    assert photo.shape == cut.shape == (22, 22, 3)  # 20 pixels and a 5% margin (1 px) each side
    assert cut[0, 0].tolist() == [0, 255, 0] and cut[11, 11].tolist() == [100, 100, 100]
    shown = views(result.shown_image, mask, look=Look(crop=True, square=True))["Cut-out"]
    assert shown.shape == (22, 22, 3)


def test_before_after_shows_the_photo_left_of_the_split_and_the_cut_out_right():
    result = bar_and_butterfly()
    mask = finish_compact(result, MaskSettings(tidy=True)).mask
    look = Look(background=(0, 0, 255))
    picture = before_after(result.shown_image, mask, look, 0.5)
    assert picture.shape == (40, 60, 3)
    assert picture[0, 0].tolist() == [100, 100, 100] and picture[0, 59].tolist() == [0, 0, 255]
    assert picture[0, 30].tolist() == [255, 255, 255]
    assert before_after(result.shown_image, mask, look, 0.0)[0, 40].tolist() == [0, 0, 255]
    with pytest.raises(ValueError):
        before_after(result.shown_image, mask, look, 1.5)


def test_compact_outcome_matches_the_full_size_one_and_scores_at_full_size():
    model = Ramp()
    data = photo(height=30, width=2100)
    compact = analyse_compact(data, model)
    settings = MaskSettings(threshold=0.37, tidy=True)
    # What thresholding and cleaning the full-size float map gives, computed directly.
    expected_mask = clean_mask(threshold_mask(model.predict_proba(load_image(data)), 0.37), tidy=True)
    expected_scores = all_metrics(confusion(expected_mask, np.ones((30, 2100), bool)))
    # The photo is wider than the display, so the screen gets a shrunk mask and the downloads the full one.
    full = full_levels(load_image(data), model)
    assert np.array_equal(final_mask(full, settings), expected_mask)
    truth = to_png_bytes(np.full((30, 2100), 255, np.uint8))
    scored = finish_compact(compact, settings, truth=truth, full=full)
    assert scored.scores == expected_scores and scored.mask.shape == compact.shown_image.shape[:2] != (30, 2100)
    assert np.array_equal(scored.mask, compact.shrink(expected_mask))
    shown = finish_compact(compact, settings)
    assert shown.mask.shape == scored.mask.shape and shown.scores is None


def test_a_ground_truth_of_another_size_is_reported_for_a_compact_analysis():
    compact = analyse_compact(photo(), Ramp())
    truth = to_png_bytes(np.zeros((5, 5), np.uint8))
    outcome = finish_compact(compact, MaskSettings(), truth=truth, full=compact.full())
    assert outcome.scores is None and "10x4" in str(outcome.truth_error)
