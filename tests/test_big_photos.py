"""Big photos: the network's view and the full-size probabilities stay cheap and match the exact filters."""

import io

import numpy as np
import pytest
from PIL import Image

from seg_core.core.imaging import REDUCING_GAP, load_image, load_image_reduced, preprocess, resize_probability


def exact_view(rgb: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def exact_resize(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    img = Image.fromarray(prob, "F").resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)


def photo(height: int, width: int) -> np.ndarray:
    """Smooth colour gradients with fine noise, like a photo's mix of flat areas and texture."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def test_photos_under_the_reducing_gap_take_the_exact_bilinear_path():
    side = int(64 * REDUCING_GAP) - 1
    rgb = photo(side, side - 40)
    np.testing.assert_array_equal(preprocess(rgb, 64), exact_view(rgb, 64))


def test_a_big_photo_is_box_shrunk_first_and_stays_close_to_the_exact_view():
    rgb = photo(1500, 2000)
    view = preprocess(rgb, 64)
    difference = np.abs(view - exact_view(rgb, 64))
    assert view.shape == (64, 64, 3) and view.dtype == np.float32
    assert 0 < difference.max() < 0.03 and difference.mean() < 0.003


@pytest.mark.parametrize(("height", "width"), [(332, 500), (3000, 4000), (64, 64)])
def test_enlarging_probabilities_matches_the_exact_filter(height, width):
    prob = np.random.default_rng(1).random((64, 64), dtype=np.float32)
    out = resize_probability(prob, height, width)
    assert out.shape == (height, width) and out.dtype == np.float32
    np.testing.assert_allclose(out, exact_resize(prob, height, width), atol=1e-5)


def test_shrinking_probabilities_keeps_the_antialiased_filter():
    prob = np.random.default_rng(2).random((64, 64), dtype=np.float32)
    np.testing.assert_array_equal(resize_probability(prob, 30, 80), exact_resize(prob, 30, 80))


def _jpeg(width: int, height: int, orientation: int = 1) -> bytes:
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    exif = picture.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", exif=exif)
    return buffer.getvalue()


def test_a_big_jpeg_is_decoded_at_the_smallest_scale_that_still_covers_the_size_asked():
    image, shape = load_image_reduced(_jpeg(2400, 1600), 700)
    assert shape == (1600, 2400) and image.shape == (800, 1200, 3)  # 1/2: 1/4 would be 600 x 400, too small
    assert load_image_reduced(_jpeg(2400, 1600), 600)[0].shape == (400, 600, 3)
    assert load_image_reduced(_jpeg(2400, 1600), 3000)[0].shape == (1600, 2400, 3)


def test_a_turned_jpeg_is_decoded_reduced_and_upright_with_its_upright_full_shape():
    data = _jpeg(2400, 1600, orientation=6)
    image, shape = load_image_reduced(data, 700)
    assert shape == load_image(data).shape[:2] == (2400, 1600) and image.shape == (1200, 800, 3)


def test_other_formats_are_decoded_in_full():
    buffer = io.BytesIO()
    Image.new("RGB", (900, 600), (10, 20, 30)).save(buffer, "PNG")
    image, shape = load_image_reduced(buffer.getvalue(), 300)
    assert image.shape == (600, 900, 3) and shape == (600, 900)
