"""Soft edges: an alpha matte at the photo's own resolution, and the butterfly's colours freed of background.

The network sees photos at 256 px, so its mask edge, scaled up to the photo,
is blocky and a hard cut-out keeps a fringe of the background. Here a trimap is
made from the mask (sure butterfly inside, sure background outside, a band of
unknown pixels along the edge whose width follows the photo's size), and
closed-form matting (Levin et al. 2008, via pymatting) solves for the alpha of
the band from the photo's colours. Multi-level foreground estimation (Germer et
al. 2020) then recovers the butterfly's own colour in the band ("colour
decontamination"), so a cut-out on a new background shows no halo.

Matting works on a window around the butterflies, shrunk to at most
:data:`MAX_MATTING_PIXELS` for speed; on larger photos the band's alpha is
scaled back up and the foreground colour is recovered at full resolution from
the photo and the estimated background.
"""

from __future__ import annotations

import contextlib
import io
import threading
from dataclasses import dataclass

import cv2
import numpy as np

#: Half-width of the unknown band, as a fraction of the window's longer side. On 20 Leeds
#: test photos, Boundary IoU rose with 0.005 and fell with 0.02: a wide band gives the
#: solver room to go wrong on wing patterns that look like the background.
BAND_FRACTION = 0.005
#: Probabilities the network is unsure about, and how many band radii from the edge they may widen it.
UNSURE = (0.1, 0.9)
UNSURE_REACH = 4
#: Largest window (pixels) the matting solver sees; bigger windows are shrunk first.
MAX_MATTING_PIXELS = 1_000_000
#: Below this alpha a pixel's recovered colour barely shows, and dividing by alpha would amplify noise.
_MIN_ALPHA_FOR_COLOUR = 0.1
_SOLVER_LOCK = threading.Lock()


@dataclass(frozen=True)
class Matte:
    """A soft cut-out of a photo.

    Attributes:
        alpha: float32 (H, W) opacity in [0, 1]: 0 background, 1 butterfly.
        foreground: RGB uint8 (H, W, 3) butterfly colours, background removed
            where alpha is fractional; equal to the photo wherever alpha is 0 or 1.
    """

    alpha: np.ndarray
    foreground: np.ndarray

    @property
    def alpha_uint8(self) -> np.ndarray:
        """Alpha as uint8 0..255, rounded, for an RGBA image."""
        return np.clip(self.alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)


def band_radius(shape: tuple[int, ...], band_fraction: float = BAND_FRACTION) -> int:
    """Half-width of the unknown band for an image of this shape (at least 1 pixel)."""
    return max(1, round(band_fraction * max(shape[:2])))


def trimap(mask: np.ndarray, radius: int, prob: np.ndarray | None = None) -> np.ndarray:
    """A matting trimap: 1 sure butterfly, 0 sure background, 0.5 unknown.

    Args:
        mask: boolean (H, W) mask.
        radius: pixels each side of the mask's edge that are left unknown.
        prob: the network's probabilities (H, W); where given, pixels it is
            unsure about (:data:`UNSURE`) within :data:`UNSURE_REACH` radii of
            the edge are left unknown too, widening the band where the edge is
            blurred and keeping it narrow where the network is confident.

    Returns:
        float32 (H, W) trimap.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    # Distances to the edge (not erosions by a disk) cost the same for any radius, which
    # matters on a 12-megapixel photo with a band tens of pixels wide.
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    to_edge = np.maximum(inside, outside)
    unknown = to_edge <= radius
    if prob is not None:
        lo, hi = UNSURE
        unknown |= (to_edge <= UNSURE_REACH * radius) & (prob > lo) & (prob < hi)
    out = mask.astype(np.float32)
    out[unknown] = 0.5
    return out


def window(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """Rows and columns of the mask's bounding box grown by ``margin`` pixels (clipped), or None if empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if not rows.size:
        return None
    height, width = mask.shape
    return (
        slice(max(0, rows[0] - margin), min(height, rows[-1] + margin + 1)),
        slice(max(0, cols[0] - margin), min(width, cols[-1] + margin + 1)),
    )


def _solve(image: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Alpha, foreground and background (floats in [0, 1]) of one window by closed-form matting."""
    # pymatting compiles with numba; imported here so the rest of Wingmask does not pay for it.
    from pymatting import estimate_alpha_cf, estimate_foreground_ml

    photo = image.astype(np.float64) / 255.0
    tri = tri.astype(np.float64)
    unknown = tri == 0.5
    if unknown.all() or not unknown.any():
        alpha = np.where(unknown, 1.0, tri)
    else:
        # pymatting's incomplete-Cholesky preconditioner (five times faster than Jacobi on a
        # megapixel window) prints a warning to stdout whenever it retries with a diagonal
        # shift, which is routine. The lock keeps two threads from swapping stdout at once.
        with _SOLVER_LOCK, contextlib.redirect_stdout(io.StringIO()):
            alpha = np.clip(estimate_alpha_cf(photo, tri), 0.0, 1.0)
    foreground, background = estimate_foreground_ml(photo, alpha, return_background=True)
    return alpha, foreground, background


def soft_matte(
    image: np.ndarray,
    mask: np.ndarray,
    prob: np.ndarray | None = None,
    band_fraction: float = BAND_FRACTION,
    max_pixels: int = MAX_MATTING_PIXELS,
) -> Matte:
    """An alpha matte with soft, photo-following edges and decontaminated colours.

    Pixels outside the trimap's band keep alpha 0 or 1, so regions the clean-up
    removed stay removed and the interior stays opaque.

    Args:
        image: RGB uint8 (H, W, 3) photo.
        mask: boolean (H, W) mask of the same size (after any clean-up).
        prob: the network's probability map, (H, W), to widen the band where
            the network is unsure; None for a band of even width.
        band_fraction: half-width of the unknown band, as a fraction of the
            window's longer side.
        max_pixels: the solver's largest window; larger windows are shrunk to it.

    Returns:
        The :class:`Matte`; alpha is the mask itself (0/1) when the mask is empty.
    """
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != mask.shape or (prob is not None and np.shape(prob) != mask.shape):
        raise ValueError(f"image {image.shape[:2]}, mask {mask.shape} and probability sizes differ")
    alpha = mask.astype(np.float32)
    foreground = image.copy()
    # The window must hold the whole band plus background for the solver's 3x3 neighbourhoods.
    box = window(mask, (UNSURE_REACH + 1) * band_radius(mask.shape, band_fraction) + 2)
    if box is None:
        return Matte(alpha, foreground)
    crop, crop_mask = image[box], mask[box]
    crop_prob = None if prob is None else np.asarray(prob, dtype=np.float32)[box]
    height, width = crop_mask.shape
    full_tri = trimap(crop_mask, band_radius(crop_mask.shape, band_fraction), crop_prob)
    scale = min(1.0, float(np.sqrt(max_pixels / (height * width))))
    if scale == 1.0:
        crop_alpha, crop_fg, _ = _solve(crop, full_tri)
        partial = (crop_alpha > 0.0) & (crop_alpha < 1.0)
        colours = crop_fg[partial] * 255.0
    else:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small_mask = cv2.resize(crop_mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
        small_prob = None if crop_prob is None else cv2.resize(crop_prob, size, interpolation=cv2.INTER_AREA)
        small_tri = trimap(small_mask, band_radius(small_mask.shape, band_fraction), small_prob)
        small_alpha, _, small_bg = _solve(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), small_tri)
        upscaled = cv2.resize(small_alpha.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        # The full-size trimap decides the sure pixels, so the interior stays exactly opaque.
        crop_alpha = np.where(full_tri == 0.5, np.clip(upscaled, 0.0, 1.0), full_tri)
        partial = (crop_alpha > 0.0) & (crop_alpha < 1.0)
        background = cv2.resize(small_bg.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        # The compositing equation I = a F + (1 - a) B solved for F keeps the photo's own detail.
        weight = np.maximum(crop_alpha[partial], _MIN_ALPHA_FOR_COLOUR)[:, None]
        colours = (crop[partial] - (1.0 - weight) * background[partial] * 255.0) / weight
    foreground[box][partial] = np.clip(colours + 0.5, 0, 255).astype(np.uint8)
    alpha[box] = crop_alpha
    return Matte(alpha, foreground)
