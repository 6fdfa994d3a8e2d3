"""Hostile and awkward uploads, built in memory, shared by library and page tests.

Every case is a file as a user would upload it (name and bytes) plus what the
app must do with it: produce a mask of a known shape (optionally close to a
known ground truth) or refuse it with ``InvalidImageError`` / an error message.
Nothing here is written to disk; expensive cases are cached per process.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image

from seg_core.core.imaging import MAX_PIXELS, load_mask
from seg_core.core.paths import REPO_ROOT

SAMPLES = REPO_ROOT / "samples"
SAMPLE_ID = "0010010"
LARGE_SIZE = (8000, 6000)  # width, height: a 48-megapixel camera photo
NOT_A_PHOTO = b"these are my notes, not a photo\n" * 20
TOO_LARGE = "too large"


@dataclass(frozen=True)
class Case:
    """One upload and the outcome it must have.

    Attributes:
        name: short identifier (test ids, README table).
        filename: the name the file is uploaded under; its extension may lie.
        data: the file's bytes.
        shape: expected mask (height, width), or None when the input must be refused.
        description: what the input is, for the README table.
        truth: ground-truth mask for the displayed photo, when the mask can be checked.
        min_iou: the foreground IoU the mask must reach against ``truth``.
        error: words the refusal message must contain (refused inputs only).
    """

    name: str
    filename: str
    data: bytes
    shape: tuple[int, int] | None
    description: str
    truth: np.ndarray | None = None
    min_iou: float = 0.8
    error: str = ""

    @property
    def valid(self) -> bool:
        return self.shape is not None


@functools.cache
def sample_photo(sample_id: str = SAMPLE_ID) -> Image.Image:
    """A committed sample photo (RGB)."""
    with Image.open(SAMPLES / "images" / f"{sample_id}.jpg") as img:
        return img.convert("RGB")


@functools.cache
def sample_truth(sample_id: str = SAMPLE_ID) -> np.ndarray:
    """The sample photo's ground-truth mask (bool, H x W)."""
    return load_mask(SAMPLES / "masks" / f"{sample_id}_seg0.png")


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    """``img`` saved in ``fmt`` as bytes."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.cache
def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit black PNG of ``width`` x ``height``: a few hundred KB that decode to width*height bytes.

    Zero rows compress about 1000:1, so a 30000 x 30000 image (900 MB once
    decoded) is about 110 KB on disk.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims ``width`` x ``height``."""
    data = bytearray(encode(sample_photo(), "JPEG", quality=80))
    sof = data.index(b"\xff\xc0")
    # SOF0 layout: marker(2) length(2) precision(1) height(2) width(2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def dds_with_unknown_format() -> bytes:
    """A DDS texture whose pixel-format flags no decoder knows (Pillow raises NotImplementedError)."""
    data = bytearray(encode(Image.new("RGB", (8, 8), (200, 30, 30)), "DDS"))
    # "DDS " + header: the pixel-format block starts 72 bytes in; its flags follow its size field.
    data[80:84] = struct.pack("<I", 0x99)
    return bytes(data)


def exif_rotated_jpeg(orientation: int) -> bytes:
    """The sample photo stored as-is with an EXIF orientation tag (6 or 8)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(sample_photo(), "JPEG", quality=92, exif=exif.tobytes())


def displayed_truth(orientation: int) -> np.ndarray:
    """The sample's ground truth as a viewer shows the photo with that EXIF orientation."""
    # 6: rotate 90 degrees clockwise to display; 8: 90 degrees counter-clockwise.
    return np.rot90(sample_truth(), k={6: -1, 8: 1}[orientation])


def animated_gif() -> bytes:
    """Two frames: the sample photo, then a flat grey frame that must be ignored."""
    first = sample_photo()
    second = Image.new("RGB", first.size, (128, 128, 128))
    return encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    """The sample photo as a 16-bit greyscale PNG (mode I;16)."""
    grey = np.asarray(sample_photo().convert("L"), dtype=np.uint16) * 257
    return encode(Image.fromarray(grey), "PNG")


def rgba_png() -> bytes:
    """The sample photo with an alpha channel whose border is fully transparent."""
    rgba = sample_photo().convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, dtype=np.uint8)
    alpha[:4, :] = 0
    rgba.putalpha(Image.fromarray(alpha))
    return encode(rgba, "PNG")


@functools.cache
def large_photo() -> bytes:
    """The sample photo enlarged to 8000 x 6000 (48 MP) as a JPEG, several MB."""
    big = sample_photo().resize(LARGE_SIZE, Image.Resampling.BILINEAR)
    return encode(big, "JPEG", quality=85)


def large_truth() -> np.ndarray:
    """The sample's ground truth enlarged like :func:`large_photo`."""
    mask = Image.fromarray(sample_truth().astype(np.uint8) * 255)
    return np.asarray(mask.resize(LARGE_SIZE, Image.Resampling.BILINEAR)) >= 128


def mismatched_mask() -> bytes:
    """A ground-truth mask PNG whose size differs from the sample photo's."""
    truth = Image.fromarray(sample_truth().astype(np.uint8) * 255)
    return encode(truth.resize((truth.width // 2, truth.height // 2)), "PNG")


def _tiny(size: int) -> bytes:
    rng = np.random.default_rng(size)
    return encode(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)), "PNG")


@functools.cache
def cases() -> tuple[Case, ...]:
    """The bad-input matrix, except the 48 MP photo (see :func:`large_case`)."""
    photo = sample_photo()
    jpeg = encode(photo, "JPEG", quality=92)
    png = encode(photo, "PNG")
    hw = (photo.height, photo.width)
    wh = (photo.width, photo.height)
    truth = sample_truth()
    wide, tall = 10_000, MAX_PIXELS // 10_000 + 100
    big, unread = TOO_LARGE, "not a readable image"
    return (
        Case("empty", "empty.jpg", b"", None, "zero-byte file", error="empty"),
        Case("text_as_jpg", "notes.jpg", NOT_A_PHOTO, None, "text file renamed .jpg", error=unread),
        Case("dds_as_jpg", "texture.jpg", dds_with_unknown_format(), None, "DDS texture renamed .jpg", error=unread),
        Case("truncated_jpeg", "cut.jpg", jpeg[: len(jpeg) // 2], None, "JPEG cut off halfway", error="truncated"),
        Case("truncated_png", "cut.png", png[: len(png) // 2], None, "PNG cut off halfway", error="truncated"),
        Case("png_bomb", "bomb.png", png_bomb(30_000, 30_000), None, "PNG bomb: 110 KB, 30000x30000", error=big),
        Case("jpeg_bomb", "bomb.jpg", jpeg_declaring(30_000, 30_000), None, "JPEG header: 30000x30000", error=big),
        Case("over_50mp", "huge.png", png_bomb(wide, tall), None, f"PNG {wide}x{tall} (51 MP)", error=big),
        Case("over_max_side", "strip.png", png_bomb(12_001, 2), None, "PNG 12001x2 (side over 12000)", error=big),
        Case("one_pixel", "dot.png", _tiny(1), (1, 1), "1x1 PNG"),
        Case("three_pixels", "tiny.png", _tiny(3), (3, 3), "3x3 PNG"),
        Case("grey_l", "grey.jpg", encode(photo.convert("L"), "JPEG"), hw, "greyscale JPEG (L)", truth, 0.7),
        Case("grey_alpha_la", "la.png", encode(photo.convert("LA"), "PNG"), hw, "grey + alpha PNG (LA)", truth, 0.7),
        Case("rgba", "alpha.png", rgba_png(), hw, "RGBA PNG, transparent border", truth),
        Case("palette_p", "palette.png", encode(photo.quantize(256), "PNG"), hw, "palette PNG (P)", truth),
        Case("cmyk_jpeg", "cmyk.jpg", encode(photo.convert("CMYK"), "JPEG"), hw, "CMYK JPEG", truth),
        Case("sixteen_bit", "deep.png", sixteen_bit_png(), hw, "16-bit greyscale PNG (I;16)", truth, 0.7),
        Case("animated_gif", "anim.gif", animated_gif(), hw, "animated GIF, 2 frames (first is used)", truth),
        Case("exif_6", "rot6.jpg", exif_rotated_jpeg(6), wh, "JPEG with EXIF orientation 6", displayed_truth(6)),
        Case("exif_8", "rot8.jpg", exif_rotated_jpeg(8), wh, "JPEG with EXIF orientation 8", displayed_truth(8)),
    )


def large_case() -> Case:
    """The 48 MP photo: slow to build and segment, so tests opt in to it."""
    width, height = LARGE_SIZE
    return Case("large_48mp", "big.jpg", large_photo(), (height, width), "8000x6000 JPEG (48 MP)", large_truth())


def case(name: str) -> Case:
    """The case called ``name`` from :func:`cases`."""
    return next(c for c in cases() if c.name == name)
