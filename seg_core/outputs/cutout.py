"""Cut-outs people can use: a background of their choice, a crop to the butterflies, PNG or WebP.

The steps run in the order a cut-out is made: :func:`crop_box` (optional),
:func:`crop`, :func:`compose`, :func:`encode`; :func:`make_cutout` chains them.
Alpha may be a hard mask (bool) or a soft matte (float in [0, 1]); where a
matte's decontaminated colours are given they replace the photo's along the edge.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageColor

from seg_core.core.imaging import load_image

#: Background names besides colours and image files.
TRANSPARENT, BLUR = "transparent", "blur"
FORMATS = ("png", "webp")
#: Margin around the butterflies' bounding box, as a fraction of its longer side.
DEFAULT_MARGIN = 0.05
#: Blur of the "blurred original" background, as a fraction of the image diagonal.
BLUR_FRACTION = 0.02
# zlib level 1 writes a 12-megapixel RGBA PNG several times faster than the default
# level 6, for files about a fifth larger: the right trade for batch exports.
PNG_COMPRESS_LEVEL = 1
WEBP_QUALITY = 90

Background = str | tuple[int, int, int] | np.ndarray


class BackgroundError(ValueError):
    """A background the user named cannot be used (unknown colour, unreadable image)."""


@dataclass(frozen=True)
class Box:
    """A crop rectangle in pixels; it may reach outside the photo (the outside is padded)."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def _alpha_float(alpha: np.ndarray) -> np.ndarray:
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise ValueError(f"expected a 2-D alpha or mask, got shape {alpha.shape}")
    if alpha.dtype == bool:
        return alpha.astype(np.float32)
    if alpha.dtype == np.uint8:
        return alpha.astype(np.float32) / 255.0
    return np.clip(alpha.astype(np.float32), 0.0, 1.0)


def _opacity(alpha: np.ndarray) -> np.ndarray:
    """An alpha or mask as uint8 opacity 0..255 (a mask without going through floats: 48 MP add up)."""
    alpha = np.asarray(alpha)
    if alpha.dtype == bool and alpha.ndim == 2:
        return alpha.view(np.uint8) * np.uint8(255)
    return np.clip(_alpha_float(alpha) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _check_image(image: np.ndarray, alpha: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != np.shape(alpha):
        raise ValueError(f"image {image.shape[:2]} and alpha {np.shape(alpha)} sizes differ")


def parse_background(text: str) -> Background:
    """A background from a user's words: ``transparent``, ``blur``, a colour, or an image file.

    Colours are CSS names or hex (``white``, ``#1e90ff``); anything else is
    read as the path of an image.

    Raises:
        BackgroundError: neither a colour nor a readable image.
    """
    word = text.strip()
    if word.lower() in (TRANSPARENT, BLUR):
        return word.lower()
    try:
        return ImageColor.getrgb(word)[:3]
    except ValueError:
        pass
    path = Path(word)
    if not path.is_file():
        raise BackgroundError(
            f"background {text!r} is not 'transparent', 'blur', a colour (name or #rrggbb) or an image file"
        )
    try:
        return load_image(path)
    except ValueError as exc:
        raise BackgroundError(f"background image {text!r} cannot be used: {exc}") from exc


def crop_box(alpha: np.ndarray, margin: float = DEFAULT_MARGIN, square: bool = False) -> Box | None:
    """The rectangle holding every visible pixel, grown by a margin, optionally made square.

    Args:
        alpha: (H, W) mask or matte; every pixel above 0 counts, so all butterflies are kept.
        margin: added on each side, as a fraction of the box's longer side.
        square: widen the shorter side to the longer one, centred.

    Returns:
        The :class:`Box` (it may extend past the photo when the margin or
        squaring needs it), or None when nothing is visible.
    """
    visible = _alpha_float(alpha) > 0
    rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
    if not rows.size:
        return None
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    pad = round(margin * max(bottom - top, right - left))
    top, bottom, left, right = top - pad, bottom + pad, left - pad, right + pad
    if square:
        side = max(bottom - top, right - left)
        top -= (side - (bottom - top)) // 2
        left -= (side - (right - left)) // 2
        bottom, right = top + side, left + side
    return Box(left, top, right, bottom)


def crop(image: np.ndarray, alpha: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``box`` out of a photo and its alpha; outside the photo, edge colours and alpha 0.

    Returns:
        (image, alpha) of the box's size; alpha keeps its dtype.
    """
    _check_image(image, alpha)
    height, width = image.shape[:2]
    pads = (max(0, -box.top), max(0, box.bottom - height), max(0, -box.left), max(0, box.right - width))
    inside = (slice(max(0, box.top), min(height, box.bottom)), slice(max(0, box.left), min(width, box.right)))
    top, bottom, left, right = pads
    # Replicated edges, not black, so a blurred-background crop does not darken at the border.
    out_image = cv2.copyMakeBorder(image[inside], top, bottom, left, right, cv2.BORDER_REPLICATE)
    out_alpha = np.pad(np.asarray(alpha)[inside], ((top, bottom), (left, right)))
    return out_image, out_alpha


def _cover(picture: np.ndarray, height: int, width: int) -> np.ndarray:
    """``picture`` scaled to cover (height, width) and centre-cropped, like CSS ``object-fit: cover``."""
    ph, pw = picture.shape[:2]
    scale = max(height / ph, width / pw)
    size = (max(width, round(pw * scale)), max(height, round(ph * scale)))
    resized = cv2.resize(picture, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return resized[top : top + height, left : left + width]


def background_layer(image: np.ndarray, background: Background) -> np.ndarray:
    """The RGB picture behind the butterfly, of the photo's size (not for ``transparent``)."""
    height, width = image.shape[:2]
    if isinstance(background, np.ndarray):
        if background.ndim != 3 or background.shape[2] != 3 or background.dtype != np.uint8:
            raise BackgroundError(f"background image must be RGB uint8, got {background.dtype} {background.shape}")
        return _cover(background, height, width)
    if background == BLUR:
        sigma = max(1.0, BLUR_FRACTION * float(np.hypot(height, width)))
        return cv2.GaussianBlur(image, (0, 0), sigma)
    if isinstance(background, tuple) and len(background) == 3:
        return np.broadcast_to(np.asarray(background, dtype=np.uint8), image.shape)
    raise BackgroundError(f"unknown background {background!r}")


def compose(
    image: np.ndarray, alpha: np.ndarray, background: Background = TRANSPARENT, foreground: np.ndarray | None = None
) -> np.ndarray:
    """The butterfly over a background.

    Args:
        image: RGB uint8 (H, W, 3) photo.
        alpha: (H, W) bool mask, uint8 0..255 or float matte in [0, 1].
        background: ``"transparent"``, ``"blur"`` (the photo blurred), an RGB
            tuple, or an RGB uint8 image (scaled to cover the photo).
        foreground: decontaminated butterfly colours (:class:`seg_core.outputs.matting.Matte`),
            used instead of the photo's; None for the photo's own.

    Returns:
        RGBA uint8 (H, W, 4) for a transparent background (colour 0 where fully
        transparent), RGB uint8 (H, W, 3) otherwise.
    """
    _check_image(image, alpha)
    colours = image if foreground is None else foreground
    if isinstance(background, str) and background == TRANSPARENT:
        out = np.zeros((*image.shape[:2], 4), dtype=np.uint8)
        out[..., 3] = _opacity(alpha)
        # Fully transparent pixels keep black colour: invisible either way, and the
        # long runs of zeros make the PNG of a 48 MP photo several times faster to write.
        np.copyto(out[..., :3], colours, where=out[..., 3:] > 0)
        return out
    behind = background_layer(image, background)
    weight = _alpha_float(alpha)[..., None]
    blended = colours.astype(np.float32) * weight + behind.astype(np.float32) * (1.0 - weight)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def encode(picture: np.ndarray, fmt: str = "png") -> bytes:
    """An RGB or RGBA uint8 picture as PNG (fast zlib level) or WebP (lossy colour, lossless alpha)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(picture).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        Image.fromarray(picture).save(buf, format="WEBP", quality=WEBP_QUALITY, alpha_quality=100)
    return buf.getvalue()


def make_cutout(
    image: np.ndarray,
    alpha: np.ndarray,
    background: Background = TRANSPARENT,
    foreground: np.ndarray | None = None,
    crop_to_subject: bool = False,
    square: bool = False,
    margin: float = DEFAULT_MARGIN,
) -> np.ndarray:
    """Crop (optionally) and compose in one call; see :func:`crop_box` and :func:`compose`.

    Nothing is cropped when the alpha is empty, so an empty mask still gives a
    picture of the photo's size.
    """
    _check_image(image, alpha)
    box = crop_box(alpha, margin, square) if crop_to_subject or square else None
    if box is not None:
        if foreground is not None:
            foreground, _ = crop(foreground, alpha, box)
        image, alpha = crop(image, alpha, box)
    return compose(image, alpha, background, foreground)
