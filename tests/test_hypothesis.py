"""Property: any upload gives a boolean mask of the photo's size or InvalidImageError, nothing else."""

import functools
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from seg_core.core.imaging import InvalidImageError
from seg_core.runtime.registry import load_predictor, segment

MODES = ["L", "LA", "RGB", "RGBA", "P", "CMYK", "I;16"]
FORMATS = ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"]
# File signatures, so random tails reach past format detection into the decoders.
MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP"]
SETTINGS = settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@functools.cache
def predictor():
    return load_predictor("unet-light")


@pytest.fixture(scope="module", autouse=True)
def _model_loaded_first():
    # Importing TensorFlow raises the recursion limit; doing it inside a Hypothesis run makes it warn.
    predictor()


def in_mode(rgb: np.ndarray, mode: str) -> Image.Image:
    img = Image.fromarray(rgb)
    if mode == "I;16":
        return Image.fromarray(np.asarray(img.convert("L"), dtype=np.uint16) * 257)
    return img.convert(mode)


def encode(img: Image.Image, fmt: str) -> bytes:
    """``img`` in ``fmt``; modes the format cannot store are converted the way an editor would on export."""
    for candidate in (img, img.convert("RGBA" if "A" in img.mode else "RGB"), img.convert("RGB")):
        buffer = io.BytesIO()
        try:
            candidate.save(buffer, format=fmt)
        except (OSError, ValueError, KeyError):
            continue
        return buffer.getvalue()
    raise AssertionError(f"cannot encode {img.mode} as {fmt}")


@st.composite
def photos(draw) -> tuple[bytes, tuple[int, int]]:
    height, width = draw(st.integers(1, 64)), draw(st.integers(1, 64))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    img = in_mode(rgb, draw(st.sampled_from(MODES)))
    return encode(img, draw(st.sampled_from(FORMATS))), (height, width)


def mask_or_refusal(data: bytes) -> tuple[int, int] | None:
    """The mask's (H, W), or None when the upload was refused with a message."""
    try:
        image, mask = segment(data, predictor())
    except InvalidImageError as exc:
        assert str(exc)
        return None
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert mask.dtype == bool and mask.shape == image.shape[:2]
    return mask.shape


@SETTINGS
@given(photos())
def test_every_encoded_photo_gets_a_mask_of_its_size(photo):
    data, shape = photo
    assert mask_or_refusal(data) == shape


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the corrupt metadata it skips
@SETTINGS
@given(st.one_of(st.binary(max_size=2048), st.builds(lambda m, t: m + t, st.sampled_from(MAGICS), st.binary())))
def test_random_bytes_never_raise_anything_else(data):
    mask_or_refusal(data)


@pytest.mark.filterwarnings("ignore::UserWarning")
@SETTINGS
@given(
    photos(),
    st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)), max_size=6),
    st.one_of(st.just(1.0), st.floats(0.3, 1)),
)
def test_damaged_photos_never_raise_anything_else(photo, edits, keep):
    data = bytearray(photo[0])
    for where, value in edits:
        data[int(where * len(data))] = value
    outcome = mask_or_refusal(bytes(data[: max(1, round(len(data) * keep))]))
    event("refused" if outcome is None else "segmented")
