"""The second look: which regions get one, how results blend back, and that it helps small butterflies."""

import numpy as np

from seg_core.core.imaging import load_image, load_mask
from seg_core.core.metrics import confusion, iou
from seg_core.core.paths import REPO_ROOT
from seg_core.data import photo_transforms as pt
from seg_core.models.registry import create_model, model_config
from seg_core.runtime import second_look as sl
from seg_core.runtime.base import DEFAULT_MODEL, InferenceOptions, threshold_mask
from seg_core.runtime.predictor import UNetPredictor
from seg_core.runtime.registry import load_predictor

SAMPLE = "0010010"


def blob(shape, top, left, height, width) -> np.ndarray:
    prob = np.zeros(shape, np.float32)
    prob[top : top + height, left : left + width] = 0.9
    return prob


def test_a_small_region_gets_a_window_with_context():
    windows = sl.find_windows(blob((400, 600), 100, 200, 40, 60))
    assert len(windows) == 1
    w = windows[0]
    assert w.top <= 100 and w.left <= 200 and w.top + w.height >= 140 and w.left + w.width >= 260
    assert w.height < 400 / sl.SecondLookConfig().min_gain


def test_a_butterfly_filling_the_frame_gets_no_second_look():
    assert sl.find_windows(blob((400, 600), 40, 60, 320, 480)) == []


def test_specks_and_empty_maps_get_no_second_look():
    assert sl.find_windows(np.zeros((300, 300), np.float32)) == []
    assert sl.find_windows(blob((1000, 1000), 10, 10, 3, 3)) == []


def test_windows_stay_inside_the_photo():
    for top, left in [(0, 0), (370, 570), (0, 570)]:
        (w,) = sl.find_windows(blob((400, 600), top, left, 30, 30))
        assert w.top >= 0 and w.top + w.height <= 400 and w.left >= 0 and w.left + w.width <= 600


def test_blend_replaces_the_inside_and_feathers_only_inner_edges():
    prob = np.zeros((100, 100), np.float32)
    window = sl.Window(0, 20, 50, 50)
    out = sl.blend(prob, [window], [np.ones((50, 50), np.float32)], feather=0.2)
    assert out[0, 45] == 1.0  # on the photo's top border: no feather
    assert out[25, 45] == 1.0  # deep inside
    assert 0 < out[49, 45] < 0.2 and 0 < out[25, 20] < 0.2  # inner edges fade out
    assert out[80, 80] == 0.0 and prob.max() == 0.0  # outside untouched, input not modified


def test_second_look_raises_iou_on_a_small_butterfly():
    image = load_image(REPO_ROOT / "samples" / "images" / f"{SAMPLE}.jpg")
    truth = load_mask(REPO_ROOT / "samples" / "masks" / f"{SAMPLE}_seg0.png")
    small, small_truth = pt.small_in_frame(image, truth, 4.0, (0.4, 0.6))
    predictor = load_predictor(DEFAULT_MODEL)
    single = predictor.predict_proba(small, InferenceOptions(second_look=False))
    second = predictor.predict_proba(small, InferenceOptions())
    assert iou(confusion(threshold_mask(second), small_truth)) > iou(confusion(threshold_mask(single), small_truth))


def test_tta_and_second_look_keep_the_photo_size():
    predictor = load_predictor(DEFAULT_MODEL)
    image = np.random.default_rng(0).integers(0, 255, (97, 143, 3), dtype=np.uint8)
    prob = predictor.predict_proba(image, InferenceOptions(tta=True))
    assert prob.shape == (97, 143) and prob.dtype == np.float32 and prob.min() >= 0 and prob.max() <= 1


def test_tta_undoes_each_view_exactly():
    # A "network" that returns its input's red channel commutes with flips and
    # turns, so averaging the undone views must give back exactly one pass.
    config = model_config("unet8", input_size=32)
    predictor = UNetPredictor.from_model(create_model("unet8", input_size=32), config, "t")
    predictor._forward = lambda batch: batch[..., :1]
    image = np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    one = predictor.predict_proba(image, InferenceOptions(second_look=False))
    four = predictor.predict_proba(image, InferenceOptions(second_look=False, tta=True))
    np.testing.assert_allclose(one, four, atol=1e-6)


def test_crops_are_seen_in_four_views_and_the_first_pass_in_one():
    config = model_config("unet8", input_size=32)
    predictor = UNetPredictor.from_model(create_model("unet8", input_size=32), config, "t")
    sizes = []

    def red_channel(batch):  # bright pixels are "butterfly": one small bright square gets a second look
        sizes.append(len(batch))
        return batch[..., :1]

    predictor._forward = red_channel
    image = np.zeros((320, 480, 3), np.uint8)
    image[100:140, 200:260] = 255
    predictor.predict_proba(image, InferenceOptions())
    assert sl.SecondLookConfig().crop_tta and sizes == [1, 4]
    sizes.clear()
    predictor.predict_proba(image, InferenceOptions(second_look=False))
    assert sizes == [1]
