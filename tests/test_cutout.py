"""Cut-outs: backgrounds, crops to the butterflies, PNG and WebP, on tiny hand-made arrays."""

import io

import numpy as np
import pytest
from PIL import Image

from seg_core.outputs.cutout import (
    BackgroundError,
    Box,
    compose,
    crop,
    crop_box,
    encode,
    make_cutout,
    parse_background,
)


def photo_and_mask() -> tuple[np.ndarray, np.ndarray]:
    """A 20x30 photo with two 'butterflies' (squares) whose boxes together span rows 4-11, columns 3-20."""
    image = np.zeros((20, 30, 3), np.uint8)
    image[..., 0] = np.arange(30, dtype=np.uint8)[None, :] * 8
    image[..., 1] = np.arange(20, dtype=np.uint8)[:, None] * 12
    mask = np.zeros((20, 30), bool)
    mask[4:8, 3:7] = True
    mask[8:12, 15:21] = True
    return image, mask


def test_crop_box_holds_all_butterflies_with_a_margin():
    _, mask = photo_and_mask()
    assert crop_box(mask, margin=0) == Box(left=3, top=4, right=21, bottom=12)
    # 10% of the longer side (18 px) is 2 px on every side.
    assert crop_box(mask, margin=0.1) == Box(left=1, top=2, right=23, bottom=14)
    assert crop_box(np.zeros((5, 5), bool)) is None


def test_square_crop_is_centred_on_the_butterflies():
    _, mask = photo_and_mask()
    box = crop_box(mask, margin=0, square=True)
    assert box.width == box.height == 18
    assert (box.left, box.right) == (3, 21) and (box.top, box.bottom) == (-1, 17)


def test_crop_pads_outside_the_photo_with_edge_colours_and_no_alpha():
    image, mask = photo_and_mask()
    out_image, out_alpha = crop(image, mask, Box(left=-2, top=0, right=4, bottom=5))
    assert out_image.shape == (5, 6, 3) and out_alpha.shape == (5, 6) and out_alpha.dtype == bool
    assert (out_image[:, 0] == image[:5, 0]).all() and (out_image[:, 2:] == image[:5, :4]).all()
    assert not out_alpha[:, :2].any() and out_alpha[4, 5]


def test_transparent_background_keeps_visible_colours_and_uses_alpha():
    image, mask = photo_and_mask()
    out = compose(image, mask)
    assert out.shape == (20, 30, 4)
    assert (out[..., :3][mask] == image[mask]).all() and (out[..., 3] == np.where(mask, 255, 0)).all()
    # Fully transparent pixels carry no colour (smaller, faster PNGs); partly transparent ones keep theirs.
    assert (out[..., :3][~mask] == 0).all()
    soft = compose(image, np.full((20, 30), 0.5, np.float32))
    assert (soft[..., 3] == 128).all() and (soft[..., :3] == image).all()


def test_solid_colour_background_blends_by_alpha():
    image, mask = photo_and_mask()
    alpha = mask.astype(np.float32)
    alpha[0, 0] = 0.25
    out = compose(image, alpha, (255, 255, 255))
    assert out.shape == (20, 30, 3)
    assert (out[mask] == image[mask]).all()
    assert tuple(out[19, 29]) == (255, 255, 255)
    assert tuple(out[0, 0]) == (191, 191, 191)


def test_decontaminated_foreground_replaces_the_photo_colours():
    image, mask = photo_and_mask()
    foreground = np.full_like(image, 77)
    out = compose(image, mask, (0, 0, 0), foreground)
    assert (out[mask] == 77).all() and (out[~mask] == 0).all()


def test_blurred_background_is_the_photo_blurred():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 255
    out = compose(image, np.zeros((40, 40), bool), "blur")
    assert 0 < out[20, 19, 0] < 255 and 0 < out[20, 20, 0] < 255
    assert out[20, 0, 0] == 0 and out[20, 39, 0] == 255


def test_image_background_covers_the_photo():
    image, mask = photo_and_mask()
    picture = np.zeros((10, 40, 3), np.uint8)
    picture[:, :, 2] = 200
    out = compose(image, mask, picture)
    assert out.shape == (20, 30, 3) and (out[~mask] == (0, 0, 200)).all()


def test_make_cutout_crops_then_composes():
    image, mask = photo_and_mask()
    out = make_cutout(image, mask, crop_to_subject=True, margin=0)
    assert out.shape == (8, 18, 4)
    assert (out[..., :3][out[..., 3] > 0] == image[4:12, 3:21][out[..., 3] > 0]).all()
    square = make_cutout(image, mask, background=(0, 255, 0), square=True, margin=0)
    assert square.shape == (18, 18, 3) and tuple(square[0, 0]) == (0, 255, 0)
    assert make_cutout(image, np.zeros_like(mask), crop_to_subject=True).shape == (20, 30, 4)


@pytest.mark.parametrize("fmt", ["png", "webp"])
def test_encode_keeps_alpha_exactly(fmt):
    image, mask = photo_and_mask()
    rgba = compose(image, mask)
    decoded = np.asarray(Image.open(io.BytesIO(encode(rgba, fmt))))
    assert decoded.shape == rgba.shape and (decoded[..., 3] == rgba[..., 3]).all()
    assert Image.open(io.BytesIO(encode(rgba, fmt))).format == fmt.upper()
    if fmt == "png":
        assert (decoded == rgba).all()
    with pytest.raises(ValueError, match="unknown format"):
        encode(rgba, "gif")


def test_parse_background(tmp_path):
    assert parse_background("Transparent") == "transparent"
    assert parse_background("blur") == "blur"
    assert parse_background("white") == (255, 255, 255)
    assert parse_background("#1e90ff") == (30, 144, 255)
    path = tmp_path / "bg.png"
    Image.new("RGB", (4, 3), (1, 2, 3)).save(path)
    assert parse_background(str(path)).shape == (3, 4, 3)
    with pytest.raises(BackgroundError, match="not 'transparent'"):
        parse_background("no-such-colour-or-file")
    (tmp_path / "bad.png").write_text("not an image")
    with pytest.raises(BackgroundError, match="cannot be used"):
        parse_background(str(tmp_path / "bad.png"))


def test_size_mismatch_is_refused():
    image, _ = photo_and_mask()
    with pytest.raises(ValueError, match="sizes differ"):
        compose(image, np.zeros((3, 3), bool))
