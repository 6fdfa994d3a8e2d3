"""One photo through one model: the cached step, the cheap step and the pictures."""

import numpy as np
import pytest

from seg_core.analysis import MaskSettings, age_text, analyse, finish, is_cached, load_truth, views
from seg_core.catalogue import sample_photos
from seg_core.imaging import InvalidImageError, to_png_bytes
from seg_core.inference import InferenceOptions

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
    result = analyse(SAMPLE.image_path.read_bytes(), model, options)
    assert model.options == [options] and result.options == options
    assert result.prob.shape == result.image.shape[:2] and result.model_ms >= 0
    with pytest.raises(ValueError):
        result.prob[0, 0] = 1.0
    with pytest.raises(ValueError):
        result.image[0, 0] = 0


def test_default_options_are_the_library_defaults():
    model = Ramp()
    analyse(photo(), model)
    assert model.options == [InferenceOptions()]


def test_a_result_measured_before_the_request_is_cached():
    result = analyse(photo(), Ramp())
    assert not is_cached(result, result.measured_at - 1)
    assert is_cached(result, result.measured_at + 1)
    assert [age_text(s) for s in (-1, 4.4, 125, 5400)] == ["0 s", "4 s", "2 min", "1.5 h"]


def test_finish_thresholds_cleans_and_scores():
    result = analyse(photo(), Ramp())
    truth = np.zeros((4, 10), bool)
    truth[:, 5:] = True
    outcome = finish(result, MaskSettings(threshold=0.5), to_png_bytes(truth))
    assert outcome.mask.tolist() == truth.tolist()
    assert outcome.scores["iou"] == 1.0 and outcome.scores["dice"] == 1.0 and outcome.truth_error is None
    higher = finish(result, MaskSettings(threshold=0.9), to_png_bytes(truth))
    assert higher.mask.sum() < truth.sum() and higher.scores["iou"] < 1.0
    assert finish(result, MaskSettings()).scores is None


def test_a_ground_truth_of_another_size_is_reported_not_raised():
    result = analyse(photo(), Ramp())
    outcome = finish(result, MaskSettings(), to_png_bytes(np.zeros((3, 3), bool)))
    assert outcome.scores is None and isinstance(outcome.truth_error, InvalidImageError)
    assert "3x3" in str(outcome.truth_error) and outcome.mask.shape == (4, 10)
    with pytest.raises(InvalidImageError):
        load_truth(b"not a png", result.image)


def test_views_are_the_four_pictures_shown():
    result = analyse(photo(), Ramp())
    mask = finish(result, MaskSettings()).mask
    shown = views(result.image, mask)
    assert list(shown) == ["Original", "Mask", "Overlay", "Cut-out"]
    assert all(p.shape[:2] == (4, 10) for p in shown.values())
