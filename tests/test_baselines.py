"""Classical baselines: registered, binary, the photo's own size on odd inputs, sensible on real photos."""

import io

import numpy as np
import pytest
from PIL import Image

from seg_core.core.imaging import InvalidImageError, load_image, load_mask
from seg_core.core.metrics import confusion, iou
from seg_core.core.paths import REPO_ROOT
from seg_core.runtime.baselines import GRABCUT_MAX_SIDE, GRABCUT_MIN_SIDE, grabcut_rectangle, working_size
from seg_core.runtime.registry import available_predictors, baseline_names, load_predictor

BASELINES = ["grabcut", "otsu"]
SAMPLES = REPO_ROOT / "samples"


def striped(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(height * 1000 + width)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def centred_disc(height: int = 60, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A dark textured photo with a bright disc in the middle, and the disc's mask."""
    yy, xx = np.mgrid[:height, :width]
    disc = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 < (min(height, width) / 3) ** 2
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, (height, width, 3), dtype=np.uint8)
    image[disc] = rng.integers(200, 256, (int(disc.sum()), 3), dtype=np.uint8)
    return image, disc


def from_mode(mode: str) -> np.ndarray:
    """A photo saved as a PNG in another mode (grey, RGBA, palette) and decoded as the app does."""
    img = Image.fromarray(centred_disc(17, 23)[0]).convert(mode)
    if mode == "RGBA":
        img.putalpha(Image.fromarray(np.arange(17 * 23, dtype=np.uint8).reshape(17, 23)))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return load_image(buf.getvalue())


ODD_INPUTS = {
    "1x1": striped(1, 1),
    "2x2": striped(2, 2),
    "3x3": striped(3, 3),
    "1x40 strip": striped(1, 40),
    "40x2 strip": striped(40, 2),
    "3x900 strip": striped(3, 900),
    "7x5": striped(7, 5),
    "constant black": np.zeros((31, 45, 3), np.uint8),
    "constant grey": np.full((40, 30, 3), 128, np.uint8),
    "constant white 1x1": np.full((1, 1, 3), 255, np.uint8),
    "grey-derived": from_mode("L"),
    "from RGBA": from_mode("RGBA"),
    "from palette": from_mode("P"),
    "large": striped(700, 300),
}


def test_baselines_are_registered_after_the_unets():
    assert baseline_names() == BASELINES
    assert available_predictors()[-2:] == BASELINES


@pytest.mark.parametrize("name", BASELINES)
def test_info_describes_the_recipe(name):
    predictor = load_predictor(name)
    info = predictor.info()
    assert info["name"] == name and info["kind"] == "baseline" and len(info["recipe"]) > 20
    assert predictor.kind == "baseline" and predictor.binary_only


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("case", list(ODD_INPUTS))
def test_binary_mask_of_the_photos_own_size(name, case):
    image = ODD_INPUTS[case]
    prob = load_predictor(name).predict_proba(image)
    assert prob.shape == image.shape[:2] and prob.dtype == np.float32
    assert set(np.unique(prob)) <= {0.0, 1.0}


@pytest.mark.parametrize("name", BASELINES)
def test_constant_photo_has_no_butterfly(name):
    assert not load_predictor(name).predict_proba(ODD_INPUTS["constant grey"]).any()


@pytest.mark.parametrize("name", BASELINES)
def test_finds_a_centred_object(name):
    image, disc = centred_disc()
    mask = load_predictor(name).predict_proba(image) >= 0.5
    assert iou(confusion(mask, disc)) > 0.8


def test_otsu_picks_the_polarity_from_the_border():
    image, disc = centred_disc()
    otsu = load_predictor("otsu")
    assert iou(confusion(otsu.predict_proba(image) >= 0.5, disc)) > 0.8
    assert iou(confusion(otsu.predict_proba(255 - image) >= 0.5, disc)) > 0.8


@pytest.mark.parametrize("name", BASELINES)
def test_repeatable(name):
    image = load_image(SAMPLES / "images" / "0030021.jpg")
    predictor = load_predictor(name)
    assert np.array_equal(predictor.predict_proba(image), predictor.predict_proba(image))


def test_grabcut_segments_a_sample_photo():
    photo = sorted((SAMPLES / "images").glob("*.jpg"))[0]
    truth = load_mask(SAMPLES / "masks" / f"{photo.stem}_seg0.png")
    mask = load_predictor("grabcut").predict_proba(load_image(photo)) >= 0.5
    assert iou(confusion(mask, truth)) > 0.5


@pytest.mark.parametrize(
    ("size", "expected"),
    [((375, 500), (192, GRABCUT_MAX_SIDE)), ((100, 80), (100, 80)), ((2, 900), (2, 256)), ((5, 3000), (3, 256))],
)
def test_working_size_downscales_but_keeps_a_usable_rectangle(size, expected):
    assert working_size(*size) == expected
    assert max(working_size(*size)) <= max(GRABCUT_MAX_SIDE, GRABCUT_MIN_SIDE)


def test_rectangle_sits_inside_the_border():
    assert grabcut_rectangle(3, 3) == (1, 1, 1, 1)
    x, y, w, h = grabcut_rectangle(192, 256)
    assert x == y == 3 and x + w == 253 and y + h == 189


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3)), np.zeros((0, 4, 3), np.uint8)],
)
def test_rejects_arrays_that_are_not_rgb_photos(name, bad):
    with pytest.raises(InvalidImageError, match="RGB uint8"):
        load_predictor(name).predict_proba(bad)
