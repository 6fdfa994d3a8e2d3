"""The bad-input matrix through the library: a correct mask or a clear InvalidImageError."""

import io

import numpy as np
import pytest
from bad_inputs import case, cases, large_case, mismatched_mask, sample_photo

from seg_core.core.imaging import InvalidImageError, check_same_size, load_image, load_mask
from seg_core.core.metrics import confusion, iou
from seg_core.runtime.registry import load_predictor, segment

GOOD = [c for c in cases() if c.valid]
BAD = [c for c in cases() if not c.valid]


@pytest.fixture(scope="module")
def predictor():
    return load_predictor("unet-light")


def _check_mask(mask, image, expected):
    assert mask.dtype == bool and mask.shape == expected.shape == image.shape[:2]
    if expected.truth is not None:
        assert iou(confusion(mask, expected.truth)) >= expected.min_iou


@pytest.mark.parametrize("bad", BAD, ids=lambda c: c.name)
def test_bad_upload_is_refused_with_a_clear_message(bad, predictor):
    with pytest.raises(InvalidImageError, match=bad.error) as refused:
        segment(bad.data, predictor)
    assert "Traceback" not in str(refused.value)


@pytest.mark.parametrize("bad", BAD, ids=lambda c: c.name)
def test_bad_upload_is_refused_as_a_mask_too(bad):
    with pytest.raises(InvalidImageError, match=bad.error):
        load_mask(bad.data)


@pytest.mark.parametrize("good", GOOD, ids=lambda c: c.name)
def test_awkward_upload_gets_a_correct_mask(good, predictor):
    image, mask = segment(good.data, predictor)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    _check_mask(mask, image, good)


def test_exif_orientation_turns_the_photo_as_a_viewer_would():
    stored = np.asarray(sample_photo())
    shown = load_image(case("exif_6").data)
    assert shown.shape == (stored.shape[1], stored.shape[0], 3)
    # Orientation 6 displays the stored pixels turned 90 degrees clockwise.
    assert np.abs(shown.astype(int) - np.rot90(stored, k=-1)).mean() < 3


@pytest.mark.parametrize("name", ["empty", "text_as_jpg", "truncated_png", "png_bomb"])
def test_files_and_streams_are_refused_like_bytes(name, tmp_path):
    bad = case(name)
    path = tmp_path / bad.filename
    path.write_bytes(bad.data)
    for source in (path, str(path), io.BytesIO(bad.data)):
        with pytest.raises(InvalidImageError, match=bad.error):
            load_image(source)


def test_missing_file_is_an_invalid_image(tmp_path):
    with pytest.raises(InvalidImageError, match="no such file"):
        load_image(tmp_path / "gone.jpg")


def test_a_mask_of_another_size_is_refused():
    photo = load_image(case("palette_p").data)
    mask = load_mask(mismatched_mask())
    with pytest.raises(InvalidImageError, match=r"mask is 214x150 pixels but the photo is 429x300"):
        check_same_size(photo, mask)
    check_same_size(photo, np.zeros(photo.shape[:2], dtype=bool))


def test_a_48_megapixel_photo_gets_a_full_size_mask(predictor):
    big = large_case()
    image, mask = segment(big.data, predictor)
    _check_mask(mask, image, big)
