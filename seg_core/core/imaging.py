"""Image decoding, validation and the one preprocessing function.

Training, evaluation and inference all call :func:`preprocess` and
:func:`resize_probability`, so the network sees photos the same way everywhere.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from seg_core.core.config import INPUT_SIZE

# 50 megapixels admits an 8000x6000 camera photo; larger images are refused
# before decoding so a tiny "decompression bomb" file cannot exhaust memory.
MAX_PIXELS = 50_000_000
MAX_SIDE = 12_000
#: Photos this many times the network's input on a side are box-shrunk first (see preprocess).
REDUCING_GAP = 3.0

ImageSource = bytes | str | Path | BinaryIO | Image.Image


class InvalidImageError(ValueError):
    """The input cannot be used as a photo or mask; the message says why."""


def _open(source: ImageSource) -> Image.Image:
    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(bytes(source))
    if _is_empty(source):
        raise InvalidImageError("the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(source)
    except FileNotFoundError as exc:
        raise InvalidImageError(f"no such file: {source}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses these from the header alone, before any pixel is decoded.
        raise InvalidImageError(
            f"image is too large (over {Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels); the limit is {_LIMITS}"
        ) from exc
    except Exception as exc:  # Pillow's format plugins raise many unrelated types on malformed headers
        raise InvalidImageError(f"not a readable image ({_reason(exc)})") from exc


def _is_empty(source: str | Path | BinaryIO) -> bool:
    # Pillow would only say "unrecognised format" about an empty upload.
    if isinstance(source, (str, Path)):
        path = Path(source)
        return path.is_file() and path.stat().st_size == 0
    return isinstance(source, io.BytesIO) and source.getbuffer().nbytes == 0


@contextlib.contextmanager
def _decoding(what: str) -> Iterator[None]:
    """Turn any failure while decoding pixels into :class:`InvalidImageError`."""
    try:
        yield
    except InvalidImageError:
        raise
    except Exception as exc:  # a hostile file can make a Pillow decoder raise almost any type
        raise InvalidImageError(f"the {what} is corrupt or truncated ({_reason(exc)})") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "unrecognised file format"
    return str(exc) or type(exc).__name__


_LIMITS = f"{MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE} pixels a side"


def check_size(width: int, height: int) -> None:
    """Refuse images that are empty or larger than the documented limits.

    Raises:
        InvalidImageError: a side is 0, or the image exceeds ``MAX_PIXELS`` or ``MAX_SIDE``.
    """
    if width < 1 or height < 1:
        raise InvalidImageError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise InvalidImageError(f"image is too large ({width}x{height}); the limit is {_LIMITS}")


def check_same_size(image: np.ndarray, mask: np.ndarray) -> None:
    """Refuse a mask that was not made for this photo (its size differs).

    Args:
        image: the decoded photo, (H, W) or (H, W, C).
        mask: the decoded mask, (H, W).

    Raises:
        InvalidImageError: the two sizes differ; the message gives both as width x height.
    """
    (ih, iw), (mh, mw) = image.shape[:2], mask.shape[:2]
    if (ih, iw) != (mh, mw):
        raise InvalidImageError(
            f"the mask is {mw}x{mh} pixels but the photo is {iw}x{ih}; use the mask made for this photo"
        )


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent pixels become white, as a viewer would show them on a page.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def open_image(source: ImageSource) -> Image.Image:
    """Open an image without decoding its pixels, refusing what :func:`load_image` refuses up front.

    For readers that need the file's own mode (a palette, 16 bits, an alpha
    channel) rather than RGB, e.g. ground-truth masks from other tools.

    Raises:
        InvalidImageError: empty or unreadable file, or too large an image.
    """
    img = _open(source)
    check_size(*img.size)
    return img


def load_image(source: ImageSource) -> np.ndarray:
    """Decode a photo into an RGB ``uint8`` array of shape (H, W, 3).

    Applies the EXIF orientation (so the array matches what a viewer shows),
    takes the first frame of animations, and converts grey, palette, alpha,
    CMYK and 16-bit images to 8-bit RGB.

    Raises:
        InvalidImageError: empty, unreadable, truncated, or too large input.
    """
    img = _open(source)
    check_size(*img.size)
    return _decode(img)


#: EXIF orientations that turn the picture a quarter (width and height swap).
_TURNING_ORIENTATIONS = (5, 6, 7, 8)


def load_image_reduced(source: ImageSource, min_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """A photo decoded for a preview whose longer side needs ``min_side`` pixels, and its full (height, width).

    A JPEG larger than that is decoded at 1/2, 1/4 or 1/8 scale, the smallest
    still at least ``min_side`` on its longer side (Pillow's ``draft``: the
    JPEG decoder itself skips the detail, so a 48 MP photo decodes several
    times faster and into a sixteenth of the memory). Other formats are
    decoded at full size. Orientation and colour handling as :func:`load_image`.

    Raises:
        InvalidImageError: empty, unreadable, truncated, or too large input.
    """
    img = _open(source)
    check_size(*img.size)
    width, height = img.size
    if img.getexif().get(ExifTags.Base.Orientation, 1) in _TURNING_ORIENTATIONS:
        width, height = height, width
    scale = min_side / max(img.size)
    if scale < 1:
        with _decoding("image"):
            img.draft(None, (math.ceil(img.size[0] * scale), math.ceil(img.size[1] * scale)))
    return _decode(img), (height, width)


def _decode(img: Image.Image) -> np.ndarray:
    with _decoding("image"):
        img.seek(0)
        img.load()
        # exif_transpose copies even when there is nothing to do: 190 MB for a 48 MP photo.
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            img = ImageOps.exif_transpose(img)
        rgb = _to_rgb(img)
        return np.asarray(rgb, dtype=np.uint8).copy()


def load_mask(source: ImageSource) -> np.ndarray:
    """Decode a ground-truth mask into a boolean array (True = butterfly).

    Two conventions are detected from the pixel values: the official Leeds
    palette masks (values 1 and 3 are foreground, everything else background)
    and 8-bit masks with 0 = background, 255 = foreground and anti-aliased
    edges, binarised at 128.

    Raises:
        InvalidImageError: the file is not a readable image.
    """
    img = _open(source)
    check_size(*img.size)
    with _decoding("mask"):
        img.load()
        values = np.asarray(img) if img.mode == "P" else np.asarray(img.convert("L"))
    if values.max(initial=0) <= 3:
        return (values == 1) | (values == 3)
    return values >= 128


#: The resampling filters a network's config may name for its input (``resample``).
RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "lanczos": Image.Resampling.LANCZOS}


def preprocess(rgb: np.ndarray, size: int = INPUT_SIZE, resample: str = "bilinear") -> np.ndarray:
    """The network's view of a photo: resized to (size, size), float32 in [0, 1].

    ``resample`` is the network's own filter: bilinear for ours, LANCZOS for the
    zero-shot U²-Netp (rembg's, whose weights saw photos resized that way).
    A photo at least ``REDUCING_GAP`` times the input size on a side is first
    shrunk by a whole factor with a box filter (Pillow's ``reducing_gap``),
    which keeps a 48 MP photo's view cheap and is visually the same; smaller
    photos, every Leeds photo among them, take the exact path.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InvalidImageError(f"expected an RGB uint8 array, got {rgb.dtype} {rgb.shape}")
    resized = Image.fromarray(rgb).resize((size, size), RESAMPLING[resample], reducing_gap=REDUCING_GAP)
    return np.asarray(resized, dtype=np.float32) / 255.0


def resize_mask(mask: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """Resize a boolean mask to (size, size) the way photos are resized, as float32 0/1."""
    img = Image.fromarray(mask.astype(np.float32), "F")
    return (np.asarray(img.resize((size, size), Image.Resampling.BILINEAR)) >= 0.5).astype(np.float32)


def resize_probability(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinearly resize a 2-D probability map back to the photo's (height, width).

    Enlarging goes through OpenCV, about 20 times faster than Pillow on a 48 MP
    photo and the same to within 1e-6; shrinking (photos smaller than the
    network's input) keeps Pillow's antialiased filter.
    """
    prob = np.asarray(prob, dtype=np.float32)
    if height >= prob.shape[0] and width >= prob.shape[1]:
        out = cv2.resize(prob, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        img = Image.fromarray(prob, "F")
        out = np.array(img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    # In place: a second 48 MP float array would cost 192 MB and a pass over it.
    return np.clip(out, 0.0, 1.0, out=out)


def to_png_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 (H, W), (H, W, 3) or (H, W, 4) array, or a bool mask, as PNG."""
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()
