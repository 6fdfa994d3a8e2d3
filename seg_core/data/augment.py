"""Training-time augmentation: scenes, crops, turns, flips, colour and photo defects.

Scenes (a small butterfly in a large frame, several butterflies, a plain
specimen sheet) and crops are built from the full-resolution photo and then
passed through :func:`seg_core.core.imaging.preprocess`, so augmented samples are
resized exactly like photos at inference time. Photo defects (blur, exposure,
colour cast, greyscale, noise, JPEG) are applied at the network's size with
strengths given at the 500 px reference width (see
:mod:`seg_core.data.photo_transforms`). Other photos used for copy-paste and
backgrounds come from the same (training) list the sample comes from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from seg_core.core.imaging import preprocess, resize_mask
from seg_core.data import photo_transforms as pt


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
    # Robustness transforms: each p_* is the chance a sample gets it. All off by
    # default so the original recipe (unet-bce) keeps its exact meaning.
    rotate90: bool = False
    p_small: float = 0.0
    small_frame: tuple[float, float] = (1.4, 4.0)
    p_several: float = 0.0
    several_size: tuple[float, float] = (0.3, 0.6)
    p_sheet: float = 0.0
    p_blur: float = 0.0
    blur_radius: tuple[float, float] = (0.5, 7.0)
    p_motion: float = 0.0
    motion_length: tuple[float, float] = (3.0, 16.0)
    p_exposure: float = 0.0
    exposure_stops: tuple[float, float] = (-3.5, 1.5)
    p_cast: float = 0.0
    cast_gain: float = 0.25
    p_grey: float = 0.0
    # Colours Leeds lacks: a hue turned anywhere on the circle, or (a third of
    # those samples) the colour channels reordered.
    p_recolour: float = 0.0
    p_noise: float = 0.0
    noise_sigma: tuple[float, float] = (2.0, 22.0)
    p_jpeg: float = 0.0
    jpeg_quality: tuple[int, int] = (10, 70)

    @classmethod
    def robust(cls, strength: float = 1.0) -> AugmentConfig:
        """The recipe for photos as people take them (unet-best, unet-light).

        ``strength`` scales every transform's chance: below 1, more samples stay
        close to ordinary photos (a second stage uses it to win back accuracy on
        them without forgetting the rest).
        """
        chances = {
            "p_small": 0.25,
            "p_several": 0.12,
            "p_sheet": 0.06,
            "p_blur": 0.35,
            "p_motion": 0.08,
            "p_exposure": 0.4,
            "p_cast": 0.25,
            "p_grey": 0.12,
            "p_noise": 0.25,
            "p_jpeg": 0.25,
        }
        return cls(min_area=0.35, rotate90=True, **{k: v * strength for k, v in chances.items()})

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PhotoPool:
    """Other training photos to borrow backgrounds and butterflies from."""

    images: list[np.ndarray]
    masks: list[np.ndarray]

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = int(rng.integers(len(self.images)))
        return self.images[i], self.masks[i]


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


def random_scene(
    image: np.ndarray, mask: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, pool: PhotoPool | None
) -> tuple[np.ndarray, np.ndarray]:
    """A new full-size scene from the photo: small in a frame, among others, on a sheet, or a crop."""
    has_butterfly = bool(mask.any())
    roll = rng.random()
    if has_butterfly and roll < cfg.p_small:
        frame = float(np.exp(rng.uniform(*np.log(cfg.small_frame))))
        half = 0.5 / frame
        position = (rng.uniform(half, 1 - half), rng.uniform(half, 1 - half))
        plate = None
        if pool is not None and rng.random() < 0.5:
            other, other_mask = pool.draw(rng)
            plate = pt.background_plate(other, other_mask, mask.shape)
        return pt.small_in_frame(image, mask, frame, position, plate)
    roll -= cfg.p_small
    if has_butterfly and pool is not None and roll < cfg.p_several:
        others = [pool.draw(rng) for _ in range(int(rng.integers(1, 4)))]
        others = [pair for pair in others if pair[1].any()]
        return pt.several_on_one(image, mask, others, rng, float(rng.uniform(*cfg.several_size)))
    roll -= cfg.p_several
    if has_butterfly and roll < cfg.p_sheet:
        return pt.on_plain_sheet(image, mask, int(rng.integers(150, 250)), float(rng.uniform(1, 6)), rng)
    return pt.crop(image, mask, random_crop_box(*mask.shape, cfg, rng))


def recolour(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A uint8 photo in other colours: a random hue rotation, or a random channel order."""
    if rng.random() < 1 / 3:
        return pt.swap_channels(x, pt.CHANNEL_ORDERS[int(rng.integers(len(pt.CHANNEL_ORDERS)))])
    return pt.hue_rotate(x, float(rng.uniform(0, 360)))


def photo_defects(x: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Blur, exposure, colour cast, recolouring, greyscale, noise and JPEG, each with its chance, on a uint8 view."""
    if rng.random() < cfg.p_blur:
        radius = float(rng.uniform(*cfg.blur_radius))
        x = pt.defocus(x, radius) if rng.random() < 0.5 else pt.gaussian_blur(x, radius / 2)
    if rng.random() < cfg.p_motion:
        x = pt.motion_blur(x, float(rng.uniform(*cfg.motion_length)), float(rng.uniform(0, 180)))
    if rng.random() < cfg.p_exposure:
        x = pt.exposure(x, float(rng.uniform(*cfg.exposure_stops)))
    if rng.random() < cfg.p_cast:
        x = pt.colour_cast(x, tuple(rng.uniform(1 - cfg.cast_gain, 1 + cfg.cast_gain, 3)))
    if rng.random() < cfg.p_recolour:
        x = recolour(x, rng)
    if rng.random() < cfg.p_grey:
        x = pt.greyscale(x)
    if rng.random() < cfg.p_noise:
        x = pt.sensor_noise(x, float(rng.uniform(*cfg.noise_sigma)), rng)
    if rng.random() < cfg.p_jpeg:
        x = pt.jpeg(x, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
    return x


#: The chances :func:`photo_defects` reads; a config with all of them 0 skips the uint8 round trip.
DEFECT_CHANCES = ("p_blur", "p_motion", "p_exposure", "p_cast", "p_recolour", "p_grey", "p_noise", "p_jpeg")


def augment_pair(
    image: np.ndarray,
    mask: np.ndarray,
    size: int,
    cfg: AugmentConfig,
    rng: np.random.Generator,
    pool: PhotoPool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One random training view of (RGB uint8 photo, boolean mask) at (size, size).

    ``pool`` supplies other photos for backgrounds and copy-paste; without it
    only the photo's own surroundings are used and "several" is skipped.
    """
    image, mask = random_scene(image, mask, cfg, rng, pool)
    if cfg.rotate90:
        image, mask = pt.rotate90(image, mask, int(rng.integers(4)))
    x = preprocess(image, size)
    y = resize_mask(mask, size)
    if cfg.hflip and rng.random() < 0.5:
        x, y = x[:, ::-1], y[:, ::-1]
    if cfg.vflip and rng.random() < 0.5:
        x, y = x[::-1], y[::-1]
    x = jitter_colour(x, cfg, rng)
    if any(getattr(cfg, f) > 0 for f in DEFECT_CHANCES):
        x = photo_defects(np.ascontiguousarray(np.rint(x * 255)).astype(np.uint8), cfg, rng).astype(np.float32) / 255
    return x.astype(np.float32), np.ascontiguousarray(y)
