"""Training-time augmentation: random scale/crop, flips and colour jitter.

Crops are taken from the full-resolution photo and then passed through
:func:`seg_core.imaging.preprocess`, so augmented samples are resized exactly
like photos at inference time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from seg_core.imaging import preprocess, resize_mask


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms (recorded in the model card)."""

    min_area: float = 0.55
    max_aspect_change: float = 1.25
    hflip: bool = True
    vflip: bool = True
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.25
    hue_shift: float = 0.04

    def to_dict(self) -> dict:
        return asdict(self)


def random_crop_box(height: int, width: int, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, left, crop height, crop width) covering a random share of the photo."""
    area = rng.uniform(cfg.min_area, 1.0)
    aspect = np.exp(rng.uniform(-np.log(cfg.max_aspect_change), np.log(cfg.max_aspect_change)))
    ch = int(round(height * np.sqrt(area / aspect)))
    cw = int(round(width * np.sqrt(area * aspect)))
    ch, cw = min(max(ch, 8), height), min(max(cw, 8), width)
    top = int(rng.integers(0, height - ch + 1))
    left = int(rng.integers(0, width - cw + 1))
    return top, left, ch, cw


def jitter_colour(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and a small hue rotation of a [0, 1] image."""
    x = x * (1.0 + rng.uniform(-cfg.brightness, cfg.brightness))
    mean = x.mean()
    x = (x - mean) * (1.0 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * (1.0 + rng.uniform(-cfg.saturation, cfg.saturation)) + grey
    if cfg.hue_shift:
        # A rotation about the grey axis in RGB space approximates a hue shift.
        angle = rng.uniform(-cfg.hue_shift, cfg.hue_shift) * 2 * np.pi
        cos, sin = np.cos(angle), np.sin(angle)
        k = 1.0 / 3.0
        s = np.sqrt(k)
        rot = np.array(
            [
                [cos + (1 - cos) * k, k * (1 - cos) - s * sin, k * (1 - cos) + s * sin],
                [k * (1 - cos) + s * sin, cos + k * (1 - cos), k * (1 - cos) - s * sin],
                [k * (1 - cos) - s * sin, k * (1 - cos) + s * sin, cos + k * (1 - cos)],
            ],
            dtype=np.float32,
        )
        x = x @ rot.T
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def augment_pair(
    image: np.ndarray, mask: np.ndarray, size: int, cfg: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One random training view of (RGB uint8 photo, boolean mask) at (size, size)."""
    top, left, ch, cw = random_crop_box(*mask.shape, cfg, rng)
    x = preprocess(np.ascontiguousarray(image[top : top + ch, left : left + cw]), size)
    y = resize_mask(mask[top : top + ch, left : left + cw], size)
    if cfg.hflip and rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    if cfg.vflip and rng.random() < 0.5:
        x, y = x[::-1], y[::-1]
    return jitter_colour(x, cfg, rng), np.ascontiguousarray(y)
