"""A second, closer look at butterflies that are small in the photo.

The network sees every photo squeezed to 256x256, so a butterfly filling a
tenth of a phone photo's width gets about 25 pixels: enough to find it, too few
for its outline. After the first pass, each found region whose window (the
region's box plus context) is much smaller than the photo is cropped, run
through the network again at full input size, and its finer probabilities are
blended back with a feathered edge. Photos where the butterfly fills much of
the frame gain nothing from a crop and keep single-pass speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Regions are found on a reduced copy of the probability map: the windows only
# need to be roughly right, and a 48 MP map would cost ~100 ms to label.
_SEARCH_SIDE = 512


@dataclass(frozen=True)
class Window:
    """A square-ish crop of the photo, in photo pixels."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


@dataclass(frozen=True)
class SecondLookConfig:
    """When a region deserves a second look, and how its result is blended.

    Attributes:
        min_gain: the crop must show the butterfly, along at least one axis, this many times
            larger than the first pass did (smaller gains are not worth a pass).
        margin: context added on each side of a region's box, as a fraction of
            its longer side (the network needs surroundings to see edges).
        max_regions: at most this many regions (largest first) get a second look.
        min_region: regions below this fraction of the photo are specks, not butterflies.
        threshold: probability that counts as butterfly when finding regions.
        feather: width of the blend band, as a fraction of the window's shorter side.
        crop_tta: average each crop's result over flips and a quarter turn (test-time
            augmentation on the crops only; the first pass stays one view).
    """

    # Chosen on the validation photos (never the test split) under the robustness
    # conditions: a gain of 1.3 instead of 1.6 lifted two butterflies side by side
    # (per-photo IoU 0.922 -> 0.929) at no cost elsewhere; a tighter margin (0.2)
    # helped small butterflies by 0.004 but cost strongly defocused photos 0.02
    # (their worst tenth 0.73 -> 0.63: a closer crop magnifies the blur), so the
    # margin stays 0.3.
    min_gain: float = 1.3
    margin: float = 0.3
    max_regions: int = 4
    min_region: float = 0.0005
    threshold: float = 0.5
    feather: float = 0.12
    # A crop is an enlarged, softer view of few pixels, where the network is least
    # sure; averaging four views of it lifted the validation photos' per-photo IoU
    # for a butterfly small in a 4x frame 0.889 -> 0.896 (worst tenth 0.79 -> 0.81),
    # 2.5x 0.918 -> 0.926, side by side 0.929 -> 0.933, strong defocus's worst
    # tenth 0.72 -> 0.76, and cost nothing on photos as taken (0.954). Flips alone
    # gained half as much. Photos without a second look keep one pass.
    crop_tta: bool = True


def find_windows(prob: np.ndarray, config: SecondLookConfig = SecondLookConfig()) -> list[Window]:
    """Windows around the regions of ``prob`` that would be seen larger in a crop."""
    height, width = prob.shape
    scale = min(1.0, _SEARCH_SIDE / max(height, width))
    small = prob if scale == 1.0 else cv2.resize(prob, (max(1, round(width * scale)), max(1, round(height * scale))))
    count, _, stats, _ = cv2.connectedComponentsWithStats((small >= config.threshold).astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    order = np.argsort(areas)[::-1][: config.max_regions]
    windows = []
    for label in order:
        if areas[label] < config.min_region * small.size:
            break
        x, y, w, h = (stats[label + 1, k] / scale for k in range(4))
        side = max(w, h) * (1 + 2 * config.margin)
        win_h, win_w = min(height, round(side)), min(width, round(side))
        # The network squeezes each axis to 256 px separately, so a crop pays off when
        # either axis gets finer (e.g. two butterflies side by side in a wide photo).
        gain = max(height / win_h, width / win_w)
        if gain < config.min_gain:
            continue
        top = int(np.clip(round(y + h / 2 - win_h / 2), 0, height - win_h))
        left = int(np.clip(round(x + w / 2 - win_w / 2), 0, width - win_w))
        windows.append(Window(top, left, win_h, win_w))
    return windows


def blend_weights(window: Window, shape: tuple[int, int], feather: float) -> np.ndarray:
    """Per-pixel weight of the crop's result: 1 inside, falling to 0 at window edges inside the photo.

    Edges that lie on the photo's own border are not feathered: there is no
    first-pass result beyond them to blend with.
    """
    band = max(1.0, feather * min(window.height, window.width))
    ys = np.arange(window.height, dtype=np.float32)
    xs = np.arange(window.width, dtype=np.float32)
    inf = np.float32(np.inf)
    to_top = ys + 0.5 if window.top > 0 else np.full_like(ys, inf)
    to_bottom = window.height - ys - 0.5 if window.top + window.height < shape[0] else np.full_like(ys, inf)
    to_left = xs + 0.5 if window.left > 0 else np.full_like(xs, inf)
    to_right = window.width - xs - 0.5 if window.left + window.width < shape[1] else np.full_like(xs, inf)
    dy = np.minimum(to_top, to_bottom)[:, None]
    dx = np.minimum(to_left, to_right)[None, :]
    return np.clip(np.minimum(dy, dx) / band, 0.0, 1.0).astype(np.float32)


def blend(
    prob: np.ndarray, windows: list[Window], crop_probs: list[np.ndarray], feather: float = SecondLookConfig.feather
) -> np.ndarray:
    """``prob`` with each window's region replaced by its crop's probabilities (feathered)."""
    out = prob.copy()
    for window, crop_prob in zip(windows, crop_probs, strict=True):
        weight = blend_weights(window, prob.shape, feather)
        region = out[window.slices]
        out[window.slices] = region * (1 - weight) + crop_prob * weight
    return out
