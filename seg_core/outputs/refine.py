"""Refine edges: GrabCut at the photo's own resolution, seeded by where the network is confident.

The network's mask is scaled up from 256 px, so its edge can be off by a few
photo pixels. GrabCut (Rother et al. 2004, OpenCV's implementation) re-decides
only a band along that edge: pixels well inside the mask are fixed as
butterfly, pixels well outside as background, and colour models learnt from
both settle the band by a graph cut. Regions away from the mask, such as a
scale bar the clean-up removed, cannot come back.
"""

from __future__ import annotations

import cv2
import numpy as np

from seg_core.outputs.matting import band_radius, trimap, window

#: Half-width of the band GrabCut may change, as a fraction of the window's longer side.
REFINE_BAND_FRACTION = 0.01
#: GrabCut rounds; the result changes little after a few.
ITERATIONS = 3
#: Largest window GrabCut runs on at full size; larger ones are shrunk first, then the
#: band is decided at full resolution from the shrunk result (see :func:`refine_edges`).
MAX_REFINE_PIXELS = 2_000_000


def _grabcut(image: np.ndarray, mask: np.ndarray, prob: np.ndarray | None, band_fraction: float) -> np.ndarray:
    tri = trimap(mask, band_radius(mask.shape, band_fraction), prob)
    unknown = tri == 0.5
    if not unknown.any() or not (tri == 1.0).any() or not (tri == 0.0).any():
        # GrabCut needs both sure butterfly and sure background to learn colours from.
        return mask
    seeds = np.where(tri == 1.0, cv2.GC_FGD, cv2.GC_BGD).astype(np.uint8)
    seeds[unknown & mask] = cv2.GC_PR_FGD
    seeds[unknown & ~mask] = cv2.GC_PR_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(image, seeds, None, bgd, fgd, ITERATIONS, cv2.GC_INIT_WITH_MASK)
    return (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)


def refine_edges(
    image: np.ndarray,
    mask: np.ndarray,
    prob: np.ndarray | None = None,
    band_fraction: float = REFINE_BAND_FRACTION,
    max_pixels: int = MAX_REFINE_PIXELS,
) -> np.ndarray:
    """The mask with its edge re-decided by GrabCut in a band around it.

    Args:
        image: RGB uint8 (H, W, 3) photo.
        mask: boolean (H, W) mask of the same size.
        prob: the network's probability map (H, W), to widen the band where the
            network is unsure (:data:`seg_core.outputs.matting.UNSURE`); None for an even band.
        band_fraction: half-width of the band, as a fraction of the window's longer side.
        max_pixels: windows larger than this are refined on a shrunk copy.

    Returns:
        A new boolean (H, W) mask; equal to ``mask`` outside the band.
    """
    mask = np.asarray(mask, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got {image.dtype} {image.shape}")
    if image.shape[:2] != mask.shape or (prob is not None and np.shape(prob) != mask.shape):
        raise ValueError(f"image {image.shape[:2]}, mask {mask.shape} and probability sizes differ")
    # Background around the band gives GrabCut's background model something to learn from.
    box = window(mask, 4 * band_radius(mask.shape, band_fraction) + 8)
    out = mask.copy()
    if box is None:
        return out
    crop, crop_mask = image[box], mask[box]
    crop_prob = None if prob is None else np.asarray(prob, dtype=np.float32)[box]
    height, width = crop_mask.shape
    scale = min(1.0, float(np.sqrt(max_pixels / (height * width))))
    if scale == 1.0:
        out[box] = _grabcut(np.ascontiguousarray(crop), crop_mask, crop_prob, band_fraction)
        return out
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = _grabcut(
        cv2.resize(crop, size, interpolation=cv2.INTER_AREA),
        cv2.resize(crop_mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5,
        None if crop_prob is None else cv2.resize(crop_prob, size, interpolation=cv2.INTER_AREA),
        band_fraction,
    )
    # Smooth upscaling of the shrunk decision, then only the band may change.
    vote = cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5
    band = trimap(crop_mask, band_radius(crop_mask.shape, band_fraction), crop_prob) == 0.5
    out[box] = np.where(band, vote, crop_mask)
    return out
