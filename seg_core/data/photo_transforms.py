"""Ways real photos differ from Leeds photos, as pure transforms of (photo, mask).

Each function takes an RGB ``uint8`` photo and its boolean mask (or only the
photo, for changes that move no pixel) and returns new arrays of matching
size, so the mask stays aligned. The robustness benchmark applies them at fixed
strengths; training augmentation draws their strengths at random.

Strengths are given relative to a 500-pixel-wide photo (the Leeds width), so a
blur "of 3 px" looks the same on a 4000-pixel photo.
"""

from __future__ import annotations

import cv2
import numpy as np

REFERENCE_WIDTH = 500


def _scale(image: np.ndarray) -> float:
    return max(image.shape[:2]) / REFERENCE_WIDTH


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


# --- geometry: photo and mask move together ---------------------------------


def rotate90(image: np.ndarray, mask: np.ndarray, quarter_turns: int) -> tuple[np.ndarray, np.ndarray]:
    """Turn photo and mask anticlockwise by ``quarter_turns`` x 90 degrees."""
    return np.ascontiguousarray(np.rot90(image, quarter_turns)), np.ascontiguousarray(np.rot90(mask, quarter_turns))


def crop(image: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The (top, left, height, width) window of photo and mask."""
    top, left, height, width = box
    return (
        np.ascontiguousarray(image[top : top + height, left : left + width]),
        np.ascontiguousarray(mask[top : top + height, left : left + width]),
    )


def close_up_box(mask: np.ndarray, keep: float) -> tuple[int, int, int, int]:
    """A window of ``keep`` x the photo's sides centred on the butterfly (clipped to the photo)."""
    height, width = mask.shape
    ch, cw = max(8, round(height * keep)), max(8, round(width * keep))
    ys, xs = np.nonzero(mask)
    cy, cx = (ys.mean(), xs.mean()) if ys.size else (height / 2, width / 2)
    top = int(np.clip(round(cy - ch / 2), 0, height - ch))
    left = int(np.clip(round(cx - cw / 2), 0, width - cw))
    return top, left, ch, cw


def resize_pair(image: np.ndarray, mask: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Photo and mask resized by ``factor`` (bicubic photo, nearest-neighbour mask)."""
    height, width = mask.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    photo = cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)
    return photo, cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)


def background_plate(image: np.ndarray, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The photo's surroundings with the butterfly painted out, stretched to (height, width).

    Inpainting runs at a small size (fast, and the result is plain enough that
    no trace of the butterfly's pattern is left), then a blur hides the seams.
    """
    small_side = 96
    factor = small_side / max(mask.shape)
    small = cv2.resize(image, (max(1, round(mask.shape[1] * factor)), max(1, round(mask.shape[0] * factor))))
    hole = cv2.resize(mask.astype(np.uint8), small.shape[1::-1], interpolation=cv2.INTER_NEAREST)
    hole = cv2.dilate(hole, np.ones((5, 5), np.uint8))
    painted = cv2.inpaint(small, hole, 5, cv2.INPAINT_TELEA)
    plate = cv2.resize(painted, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    sigma = max(size) / 150
    return cv2.GaussianBlur(plate, (0, 0), sigma)


def feathered_alpha(mask: np.ndarray, width: float) -> np.ndarray:
    """Float alpha in [0, 1]: the mask with its edge softened over about ``width`` pixels."""
    alpha = mask.astype(np.float32)
    if width <= 0:
        return alpha
    return cv2.GaussianBlur(alpha, (0, 0), width / 2)


def paste(
    canvas: np.ndarray,
    canvas_mask: np.ndarray,
    patch: np.ndarray,
    patch_alpha: np.ndarray,
    patch_mask: np.ndarray,
    top: int,
    left: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``patch`` into ``canvas`` at (top, left); the pasted mask covers what lies below it.

    ``patch_alpha`` is the blend weight (soft at the edges); ``patch_mask`` the
    patch's own butterfly pixels. Parts of the patch outside the canvas are cut.
    """
    out, out_mask = canvas.astype(np.float32).copy(), canvas_mask.copy()
    height, width = canvas_mask.shape
    ph, pw = patch_mask.shape
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + ph, height), min(left + pw, width)
    if y1 <= y0 or x1 <= x0:
        return canvas.copy(), canvas_mask.copy()
    sy, sx = slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)
    a = patch_alpha[sy, sx, None]
    out[y0:y1, x0:x1] = out[y0:y1, x0:x1] * (1 - a) + patch[sy, sx].astype(np.float32) * a
    covered = patch_alpha[sy, sx] >= 0.5
    region = out_mask[y0:y1, x0:x1]
    out_mask[y0:y1, x0:x1] = np.where(covered, patch_mask[sy, sx], region)
    return _u8(out), out_mask


def butterfly_cutout(image: np.ndarray, mask: np.ndarray, margin: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    """The butterfly's bounding box (plus a margin) as (photo window, mask window).

    Raises:
        ValueError: the mask is empty.
    """
    ys, xs = np.nonzero(mask)
    if not ys.size:
        raise ValueError("the mask has no butterfly to cut out")
    pad = round(margin * max(mask.shape))
    top, left = max(0, ys.min() - pad), max(0, xs.min() - pad)
    bottom, right = min(mask.shape[0], ys.max() + 1 + pad), min(mask.shape[1], xs.max() + 1 + pad)
    return crop(image, mask, (top, left, bottom - top, right - left))


def small_in_frame(
    image: np.ndarray,
    mask: np.ndarray,
    frame: float,
    position: tuple[float, float] = (0.5, 0.5),
    plate: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole photo shrunk to 1/``frame`` of a same-size frame of painted-out surroundings.

    ``position`` is the photo's centre as fractions of the frame; ``plate`` the
    surroundings (default: the photo's own, see :func:`background_plate`). The
    photo's edge is feathered so no hard rectangle gives the butterfly away.
    """
    height, width = mask.shape
    small, small_mask = resize_pair(image, mask, 1.0 / frame)
    if plate is None:
        plate = background_plate(image, mask, (height, width))
    sh, sw = small_mask.shape
    edge = np.zeros((sh, sw), bool)
    border = max(2, round(min(sh, sw) * 0.08))
    edge[border:-border, border:-border] = True
    alpha = feathered_alpha(edge, border * 2)
    top = round(position[0] * height - sh / 2)
    left = round(position[1] * width - sw / 2)
    return paste(plate, np.zeros_like(mask), small, alpha, small_mask, top, left)


def on_plain_sheet(
    image: np.ndarray, mask: np.ndarray, grey: int, noise: float, seed: int | np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The butterfly alone on a plain sheet of the given grey level (a pinned specimen)."""
    rng = np.random.default_rng(seed)
    sheet = np.full(image.shape, grey, np.float32) + rng.normal(0, noise, image.shape[:2])[..., None]
    shading = np.linspace(1.0, 0.92, mask.shape[0], dtype=np.float32)[:, None, None]
    return paste(_u8(sheet * shading), np.zeros_like(mask), image, feathered_alpha(mask, 1.5), mask, 0, 0)


def side_by_side(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Two photos joined left to right (the second resized to the first's height)."""
    (a, ma), (b, mb) = first, second
    b, mb = resize_pair(b, mb, a.shape[0] / b.shape[0])
    b, mb = b[: a.shape[0]], mb[: a.shape[0]]
    return np.concatenate([a, b], axis=1), np.concatenate([ma, mb], axis=1)


def several_on_one(
    image: np.ndarray,
    mask: np.ndarray,
    others: list[tuple[np.ndarray, np.ndarray]],
    seed: int | np.random.Generator,
    size: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """``image``'s surroundings with its own butterfly and ``others`` pasted at ``size`` of the frame each.

    Butterflies are placed on a grid so they rarely overlap; a later one covers
    an earlier one where they do, and the mask follows what is visible.
    """
    rng = np.random.default_rng(seed)
    height, width = mask.shape
    canvas, canvas_mask = background_plate(image, mask, (height, width)), np.zeros_like(mask)
    pairs = [(image, mask), *others]
    cols = int(np.ceil(np.sqrt(len(pairs))))
    rows = int(np.ceil(len(pairs) / cols))
    for i, (photo, photo_mask) in enumerate(pairs):
        patch, patch_mask = butterfly_cutout(photo, photo_mask)
        factor = size * min(height / rows, width / cols) / max(patch_mask.shape) * rng.uniform(0.85, 1.15)
        patch, patch_mask = resize_pair(patch, patch_mask, factor)
        cy = (i // cols + 0.5) * height / rows + rng.uniform(-0.1, 0.1) * height / rows
        cx = (i % cols + 0.5) * width / cols + rng.uniform(-0.1, 0.1) * width / cols
        top, left = round(cy - patch_mask.shape[0] / 2), round(cx - patch_mask.shape[1] / 2)
        canvas, canvas_mask = paste(
            canvas, canvas_mask, patch, feathered_alpha(patch_mask, 1.5), patch_mask, top, left
        )
    return canvas, canvas_mask


# --- photometric: pixels change, the mask does not --------------------------


def defocus(image: np.ndarray, radius: float) -> np.ndarray:
    """Out-of-focus blur: a disc kernel of ``radius`` px (at the 500 px reference width)."""
    r = radius * _scale(image)
    if r < 0.5:
        return image.copy()
    size = int(np.ceil(r)) * 2 + 1
    yy, xx = np.mgrid[:size, :size] - size // 2
    disc = ((yy**2 + xx**2) <= r * r).astype(np.float32)
    disc = cv2.GaussianBlur(disc, (0, 0), 0.5) if size > 3 else disc
    return cv2.filter2D(image, -1, disc / disc.sum(), borderType=cv2.BORDER_REFLECT)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Soft focus: a Gaussian of ``sigma`` px (at the reference width)."""
    s = sigma * _scale(image)
    return image.copy() if s < 0.3 else cv2.GaussianBlur(image, (0, 0), s)


def motion_blur(image: np.ndarray, length: float, angle_degrees: float) -> np.ndarray:
    """Camera shake: a line kernel ``length`` px long (at the reference width) at an angle."""
    n = max(1, round(length * _scale(image)))
    if n < 2:
        return image.copy()
    kernel = np.zeros((n, n), np.float32)
    kernel[n // 2, :] = 1.0
    rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), angle_degrees, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (n, n))
    return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip at ``quality`` (1-100)."""
    ok, buf = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])


def exposure(image: np.ndarray, stops: float) -> np.ndarray:
    """Under- (negative) or over-exposure (positive) by ``stops`` in linear light, clipped like a sensor."""
    linear = (image.astype(np.float32) / 255.0) ** 2.2
    return _u8(np.clip(linear * 2.0**stops, 0, 1) ** (1 / 2.2) * 255)


def colour_cast(image: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """Wrong white balance: each channel multiplied by its gain."""
    return _u8(image.astype(np.float32) * np.asarray(gains, np.float32))


def greyscale(image: np.ndarray) -> np.ndarray:
    """Black-and-white (Rec. 601 luma), still three channels."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.repeat(grey[..., None], 3, axis=2)


def hue_rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Every hue turned by ``degrees`` round the colour circle; lightness and saturation kept.

    A cheap stand-in for species whose colours Leeds lacks (blue, green, yellow):
    the shapes and textures stay, only the colours move.
    """
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    # OpenCV keeps 8-bit hue in half-degrees (0..179).
    hsv[..., 0] = ((hsv[..., 0].astype(np.int32) + int(round(degrees / 2))) % 180).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


#: The five reorderings of (R, G, B) other than the identity.
CHANNEL_ORDERS = ((0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def swap_channels(image: np.ndarray, order: tuple[int, int, int]) -> np.ndarray:
    """The colour channels in another order (``(2, 1, 0)``: red and blue swapped)."""
    return np.ascontiguousarray(image[..., list(order)])


def sensor_noise(image: np.ndarray, sigma: float, seed: int | np.random.Generator) -> np.ndarray:
    """Gaussian noise of ``sigma`` grey levels per channel plus a little shared luminance noise."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, sigma, image.shape) + rng.normal(0, sigma / 2, image.shape[:2])[..., None]
    return _u8(image.astype(np.float32) + noise)
