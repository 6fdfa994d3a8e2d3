"""Mask clean-up and the pictures the dashboard shows: overlay, cut-out, vote map.

All functions are pure: they take NumPy arrays and return new arrays, never
modifying their inputs, so cached probability maps can be shared safely.
"""

from __future__ import annotations

import cv2
import numpy as np

from seg_core.outputs.cutout import encode

OVERLAY_COLOUR = (255, 0, 170)
OVERLAY_ALPHA = 0.45
OUTLINE_COLOUR = (255, 255, 0)
#: Tint of pixels a clean-up removed, so a user sees what was dropped (a scale bar, a speck).
REMOVED_COLOUR = (0, 190, 255)
#: Default clean-up: regions under this fraction of the largest region's area are dropped ...
MIN_REGION_FRACTION = 0.1
#: ... and enclosed holes under this fraction of it are filled.
MAX_HOLE_FRACTION = 0.02
# Pictures on screen are at most this many pixels on a side: Streamlit sends
# images at most 1460 px wide (twice its 730 px content column, for sharp
# screens) and re-encodes any wider one, so a larger copy would cost decoding,
# analysis and encoding time, and memory, for pixels nobody sees.
DISPLAY_MAX_SIDE = 1460
#: JPEG quality of the pictures sent to the browser (photo-like, no transparency).
SCREEN_JPEG_QUALITY = 90


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    return mask.astype(bool, copy=False)


def _check_pair(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    mask = _as_bool_mask(mask)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != mask.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {mask.shape} sizes differ")
    return mask


def display_copy(
    image: np.ndarray, mask: np.ndarray, max_side: int = DISPLAY_MAX_SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """A photo and its mask shrunk so the longer side is at most ``max_side`` (unchanged if smaller).

    Args:
        image: RGB uint8 (H, W, 3) photo.
        mask: boolean (H, W) mask of the same size.
        max_side: longest side of the copies.

    Returns:
        (image, mask) for display only; downloads keep the full resolution.
    """
    mask = _check_pair(image, mask)
    height, width = mask.shape
    scale = max_side / max(height, width)
    if scale >= 1:
        return image, mask
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return small, small_mask


def keep_largest_region(mask: np.ndarray) -> np.ndarray:
    """Keep only the largest 8-connected foreground region.

    Args:
        mask: boolean (H, W) mask.

    Returns:
        A new boolean mask; all False when the input has no foreground.
    """
    mask = _as_bool_mask(mask)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return np.zeros_like(mask)
    # Label 0 is the background; pick the biggest of the others.
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border.

    Args:
        mask: boolean (H, W) mask.

    Returns:
        A new boolean mask with every enclosed hole set to foreground.
    """
    mask = _as_bool_mask(mask)
    # Pad with one background ring so all outside background is one connected region.
    padded = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    _, labels = cv2.connectedComponents(padded, connectivity=4)
    outside = labels == labels[0, 0]
    return ~outside[1:-1, 1:-1]


def _window(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The bounding box of the foreground, or None when there is none.

    Region and hole searches run inside it: everything outside is background
    joined to the photo's border, so the answers are the same as over the
    whole photo, at a fraction of the cost on a large photo.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _labels(mask: np.ndarray, connectivity: int) -> tuple[int, np.ndarray]:
    """Connected-component labels of a mask's True pixels; 16-bit unless there are too many regions."""
    image = mask.astype(np.uint8)
    try:
        return cv2.connectedComponents(image, connectivity=connectivity, ltype=cv2.CV_16U)
    except cv2.error:  # OpenCV refuses more than 65535 labels in 16 bits
        return cv2.connectedComponents(image, connectivity=connectivity)


def _areas(count: int, labels: np.ndarray) -> np.ndarray:
    """Pixels per label (label 0 included)."""
    if labels.dtype != np.uint16:
        return np.bincount(labels.ravel(), minlength=count)
    # A 16-bit histogram is several times faster than np.bincount, which widens every label to 64 bits.
    areas = cv2.calcHist([labels], [0], None, [count], [0, count]).ravel().astype(np.int64)
    # Float32 bins count exactly up to 2**24 pixels; the few larger regions are counted again.
    for label in np.flatnonzero(areas >= 2**24):
        areas[label] = np.count_nonzero(labels == label)
    return areas


def _select(labels: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Pixels whose label is marked True in ``chosen`` (one entry per label)."""
    picked = np.flatnonzero(chosen)
    if len(picked) > 4:
        return chosen[labels]
    # A few comparisons cost less than a lookup per pixel on a big photo.
    out = np.zeros(labels.shape, dtype=bool)
    for label in picked:
        out |= labels == label
    return out


def _regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected labels of a non-empty mask and each label's area (0 for the background label)."""
    count, labels = _labels(mask, 8)
    areas = _areas(count, labels)
    areas[0] = 0
    return labels, areas


def _drop(labels: np.ndarray, areas: np.ndarray, min_fraction: float) -> np.ndarray:
    keep = areas >= min_fraction * areas.max()
    keep[0] = False
    return _select(labels, keep) if not keep[1:].all() else labels > 0


def _fill(mask: np.ndarray, limit: float) -> np.ndarray:
    """``mask`` (a window, see :func:`_window`) with enclosed background regions under ``limit`` pixels filled."""
    # Flooding the background from a ring around the window (4-connected, the dual of 8-connected
    # foreground) leaves only the enclosed holes; usually there are few, so little is left to label.
    background = cv2.copyMakeBorder((~mask).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    cv2.floodFill(background, None, (0, 0), 0, flags=4)
    holes = background[1:-1, 1:-1].view(bool)
    if not holes.any():
        return mask.copy()
    count, labels = _labels(holes, 4)
    small = _areas(count, labels) < limit
    small[0] = False
    return mask | _select(labels, small) if small.any() else mask.copy()


def _check_min_fraction(min_fraction: float) -> None:
    if not 0.0 <= min_fraction <= 1.0:
        raise ValueError(f"min_fraction must be in [0, 1], got {min_fraction}")


def drop_small_regions(mask: np.ndarray, min_fraction: float = MIN_REGION_FRACTION) -> np.ndarray:
    """Drop 8-connected regions smaller than ``min_fraction`` of the largest one.

    Unlike :func:`keep_largest_region` this keeps every butterfly of a similar
    size, while scale bars, labels and specks, a small fraction of a butterfly,
    go.

    Args:
        mask: boolean (H, W) mask.
        min_fraction: in [0, 1]; 0 keeps every region, 1 only the largest (and ties).

    Returns:
        A new boolean mask.
    """
    mask = _as_bool_mask(mask)
    _check_min_fraction(min_fraction)
    out = np.zeros_like(mask)
    box = _window(mask)
    if box is not None:
        out[box] = _drop(*_regions(mask[box]), min_fraction)
    return out


def fill_small_holes(mask: np.ndarray, max_fraction: float = MAX_HOLE_FRACTION) -> np.ndarray:
    """Fill enclosed holes smaller than ``max_fraction`` of the largest region's area.

    Pinholes from a misread wing spot go; a large enclosed gap, such as the
    space between a wing and the body, stays open.

    Args:
        mask: boolean (H, W) mask.
        max_fraction: hole size limit relative to the largest region; 0 fills nothing.

    Returns:
        A new boolean mask.
    """
    mask = _as_bool_mask(mask)
    out = mask.copy()
    box = _window(mask)
    if box is not None:
        _, areas = _regions(mask[box])
        out[box] = _fill(mask[box], max_fraction * areas.max())
    return out


def tidy_mask(
    mask: np.ndarray, min_fraction: float = MIN_REGION_FRACTION, max_hole_fraction: float = MAX_HOLE_FRACTION
) -> np.ndarray:
    """The default clean-up: :func:`drop_small_regions`, then :func:`fill_small_holes`.

    Keeps several butterflies; use :func:`keep_largest_region` for only one.
    The two steps share one search for regions (the largest survives the first).
    """
    mask = _as_bool_mask(mask)
    _check_min_fraction(min_fraction)
    out = np.zeros_like(mask)
    box = _window(mask)
    if box is not None:
        labels, areas = _regions(mask[box])
        out[box] = _fill(_drop(labels, areas, min_fraction), max_hole_fraction * areas.max())
    return out


def clean_mask(mask: np.ndarray, largest_region: bool = False, holes: bool = False, tidy: bool = False) -> np.ndarray:
    """Apply the optional clean-up steps in a fixed order (tidy, largest region, then holes).

    Args:
        mask: boolean (H, W) mask.
        largest_region: keep only the largest connected region.
        holes: fill every enclosed hole.
        tidy: the default clean-up, :func:`tidy_mask` (small regions and small holes).

    Returns:
        A new boolean mask.
    """
    out = _as_bool_mask(mask).copy()
    if tidy:
        out = tidy_mask(out)
    if largest_region:
        out = keep_largest_region(out)
    if holes:
        out = fill_holes(out)
    return out


def removed_pixels(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Pixels a clean-up took away: foreground in ``before`` and not in ``after``."""
    before, after = _as_bool_mask(before), _as_bool_mask(after)
    if before.shape != after.shape:
        raise ValueError(f"mask sizes differ: {before.shape} vs {after.shape}")
    return before & ~after


def foreground_fraction(mask: np.ndarray) -> float:
    """Share of pixels that are foreground, in [0, 1] (0 for an empty array)."""
    mask = _as_bool_mask(mask)
    return float(np.count_nonzero(mask)) / mask.size if mask.size else 0.0


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    colour: tuple[int, int, int] = OVERLAY_COLOUR,
    alpha: float = OVERLAY_ALPHA,
    outline: tuple[int, int, int] | None = OUTLINE_COLOUR,
    removed: np.ndarray | None = None,
    removed_colour: tuple[int, int, int] = REMOVED_COLOUR,
) -> np.ndarray:
    """The photo with the mask tinted over it and, optionally, its outline drawn.

    Args:
        image: RGB uint8 (H, W, 3) photo.
        mask: boolean (H, W) mask of the same size.
        colour: RGB tint for foreground pixels.
        alpha: tint opacity in [0, 1].
        outline: RGB colour of the mask's contour, or None for no contour.
        removed: boolean (H, W) pixels a clean-up removed (:func:`removed_pixels`),
            tinted in ``removed_colour`` with the same opacity; None to show none.
        removed_colour: RGB tint for removed pixels.

    Returns:
        A new RGB uint8 (H, W, 3) image.
    """
    mask = _check_pair(image, mask)
    out = image.copy()
    tint = np.asarray(colour, dtype=np.float32)
    blended = image[mask].astype(np.float32) * (1.0 - alpha) + tint * alpha
    out[mask] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    if removed is not None:
        gone = _check_pair(image, removed) & ~mask
        dropped = image[gone].astype(np.float32) * (1.0 - alpha) + np.asarray(removed_colour, np.float32) * alpha
        out[gone] = np.clip(dropped + 0.5, 0, 255).astype(np.uint8)
    if outline is not None and mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        # Scale the line with the photo so it stays visible on large images.
        thickness = max(1, round(max(mask.shape) / 300))
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in outline), thickness)
    return out


def cutout(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The butterfly on a transparent background.

    Args:
        image: RGB uint8 (H, W, 3) photo.
        mask: boolean (H, W) mask of the same size.

    Returns:
        A new RGBA uint8 (H, W, 4) image, alpha 255 on the mask and 0 elsewhere.
    """
    mask = _check_pair(image, mask)
    alpha = mask.astype(np.uint8) * 255
    return np.dstack([image, alpha])


def mask_image(mask: np.ndarray) -> np.ndarray:
    """A boolean mask as a grey uint8 picture (0 background, 255 butterfly)."""
    return _as_bool_mask(mask).astype(np.uint8) * 255


def screen_bytes(picture: np.ndarray) -> bytes:
    """A picture encoded for the browser: JPEG for photo-like RGB, PNG for masks and transparency.

    The PNG is written as the downloads are (:func:`seg_core.outputs.cutout.encode`, fast zlib level).

    Streamlit passes encoded bytes through when they are no wider than it
    shows; given an array it would encode at full JPEG quality and, above its
    width, decode, shrink and encode once more (for an RGBA picture, slow PNG
    twice). Grey (H, W), RGB (H, W, 3) or RGBA (H, W, 4) uint8.
    """
    picture = np.asarray(picture)
    channels = 1 if picture.ndim == 2 else picture.shape[-1]
    if picture.dtype != np.uint8 or picture.ndim not in (2, 3) or channels not in (1, 3, 4):
        raise ValueError(f"expected a grey, RGB or RGBA uint8 picture, got {picture.dtype} {picture.shape}")
    if channels != 3:
        return encode(picture, "png")
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, SCREEN_JPEG_QUALITY]
    )
    if not ok:
        raise ValueError(f"could not encode a {picture.shape} picture")
    return data.tobytes()


def vote_count(masks: list[np.ndarray]) -> np.ndarray:
    """How many of the masks mark each pixel as foreground.

    Args:
        masks: one or more boolean (H, W) masks of the same size.

    Returns:
        uint8 (H, W) counts from 0 to ``len(masks)``.
    """
    if not masks:
        raise ValueError("vote_count needs at least one mask")
    shapes = {np.shape(m) for m in masks}
    if len(shapes) != 1:
        raise ValueError(f"mask sizes differ: {sorted(shapes)}")
    return np.sum([_as_bool_mask(m) for m in masks], axis=0, dtype=np.uint8)


def vote_palette(n_models: int) -> np.ndarray:
    """Colours for vote counts 0..n: black (no model), warm shades (some), white (all).

    Args:
        n_models: how many models voted.

    Returns:
        uint8 (n_models + 1, 3) RGB colours; row k colours pixels with k votes.
    """
    if n_models < 1:
        raise ValueError("n_models must be at least 1")
    palette = np.zeros((n_models + 1, 3), dtype=np.uint8)
    palette[n_models] = (255, 255, 255)
    # Disagreement runs from dark red (one vote) to yellow (all but one vote).
    low, high = np.array([150, 20, 40], np.float32), np.array([255, 220, 0], np.float32)
    for k in range(1, n_models):
        t = (k - 1) / max(1, n_models - 2)
        palette[k] = np.round(low + (high - low) * t).astype(np.uint8)
    return palette


def vote_map(masks: list[np.ndarray]) -> np.ndarray:
    """An RGB picture of where models agree (black or white) and disagree (colours).

    Args:
        masks: one or more boolean (H, W) masks of the same size.

    Returns:
        RGB uint8 (H, W, 3), coloured by :func:`vote_palette`.
    """
    return vote_palette(len(masks))[vote_count(masks)]


def on_checkerboard(rgba: np.ndarray, square: int = 12) -> np.ndarray:
    """An RGBA image composited over a grey checkerboard, the usual sign of transparency.

    Args:
        rgba: RGBA uint8 (H, W, 4) image.
        square: side of the checkerboard squares in pixels.

    Returns:
        RGB uint8 (H, W, 3) image for display.
    """
    if rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
        raise ValueError(f"expected an RGBA uint8 image, got {rgba.dtype} {rgba.shape}")
    height, width = rgba.shape[:2]
    # Built from one row and one column of parities: a full-size index grid would
    # cost gigabytes on a 50-megapixel photo.
    odd_rows = ((np.arange(height) // square) % 2).astype(bool)[:, None]
    odd_cols = ((np.arange(width) // square) % 2).astype(bool)[None, :]
    board = np.where(odd_rows ^ odd_cols, np.uint8(200), np.uint8(235))
    out = np.repeat(board[..., None], 3, axis=2)
    alpha = rgba[..., 3]
    opaque = alpha == 255
    out[opaque] = rgba[..., :3][opaque]
    partial = (alpha > 0) & ~opaque
    if partial.any():
        weight = alpha[partial, None].astype(np.float32) / 255.0
        blended = rgba[..., :3][partial] * weight + out[partial] * (1.0 - weight)
        out[partial] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


ERROR_COLOURS = {"hit": (0, 200, 120), "false_positive": (230, 40, 40), "missed": (40, 90, 255)}


def error_overlay(image: np.ndarray, mask: np.ndarray, truth: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The photo with correct butterfly pixels, false positives and missed pixels tinted apart.

    Args:
        image: RGB uint8 (H, W, 3) photo.
        mask: predicted boolean (H, W) mask.
        truth: ground-truth boolean (H, W) mask.
        alpha: tint opacity in [0, 1].

    Returns:
        A new RGB uint8 image: green where both say butterfly, red where only the
        prediction does, blue where only the ground truth does.
    """
    mask = _check_pair(image, mask)
    truth = _check_pair(image, truth)
    out = image.astype(np.float32)
    regions = {"hit": mask & truth, "false_positive": mask & ~truth, "missed": ~mask & truth}
    for name, region in regions.items():
        out[region] = out[region] * (1.0 - alpha) + np.asarray(ERROR_COLOURS[name], np.float32) * alpha
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
