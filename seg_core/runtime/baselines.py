"""Classical baselines: what a segmentation looks like without any learning.

Both are binary-only predictors (probabilities are exactly 0 or 1), registered
in :data:`BASELINES`, which :mod:`seg_core.runtime.registry` reads, so every tool that lists
models (evaluation, benchmark, dashboard) finds them next to the U-Nets.
"""

from __future__ import annotations

import cv2
import numpy as np

from seg_core.core.imaging import InvalidImageError, resize_probability
from seg_core.runtime.base import InferenceOptions, Predictor

#: GrabCut refits its colour models and solves a graph cut over every pixel at
#: each iteration, so its time grows with the pixel count while the extra boundary
#: detail of full resolution barely moves the scores: it runs on a copy whose
#: longest side is at most this, and the mask is resized back to the photo.
GRABCUT_MAX_SIDE = 256
GRABCUT_ITERATIONS = 5
#: The rectangle must leave a ring of background pixels and keep an interior,
#: so an image needs at least this many pixels on its shorter side.
GRABCUT_MIN_SIDE = 3


def _check_rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise InvalidImageError(f"expected an RGB uint8 array, got {image.dtype} {image.shape}")
    return image


def working_size(height: int, width: int, max_side: int = GRABCUT_MAX_SIDE) -> tuple[int, int]:
    """(height, width) of the downscaled copy GrabCut runs on.

    The longest side becomes at most ``max_side``; no side is shrunk below
    ``GRABCUT_MIN_SIDE`` (or its original length, if that is smaller), so a
    thin strip keeps a usable rectangle.
    """
    scale = min(1.0, max_side / max(height, width))
    small_h, small_w = (max(min(side, GRABCUT_MIN_SIDE), round(side * scale)) for side in (height, width))
    return small_h, small_w


def grabcut_rectangle(height: int, width: int) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the initial rectangle: a margin of about 2 % inside the border, at least 1 pixel."""
    margin = max(1, min(height, width) // 50)
    return margin, margin, width - 2 * margin, height - 2 * margin


class GrabCutBaseline(Predictor):
    """OpenCV GrabCut initialised with a rectangle just inside the photo's border.

    Butterflies in the Leeds photos are centred and mostly inside the frame,
    so "everything outside the rectangle is background" is the only prior.
    """

    name = "grabcut"
    kind = "baseline"
    binary_only = True

    def predict_proba(self, image: np.ndarray, options: InferenceOptions | None = None) -> np.ndarray:
        image = _check_rgb(image)
        height, width = image.shape[:2]
        small_h, small_w = working_size(height, width)
        if min(small_h, small_w) < GRABCUT_MIN_SIDE:
            # Too small for a rectangle with an interior: GrabCut asserts, and the
            # rectangle prior itself marks nothing as butterfly.
            return np.zeros((height, width), dtype=np.float32)
        small = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_AREA)
        labels = np.zeros((small_h, small_w), dtype=np.uint8)
        background_model = np.zeros((1, 65), dtype=np.float64)
        foreground_model = np.zeros((1, 65), dtype=np.float64)
        # GrabCut seeds its k-means from OpenCV's global generator: reseed for repeatable masks.
        cv2.setRNGSeed(0)
        cv2.grabCut(
            cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
            labels,
            grabcut_rectangle(small_h, small_w),
            background_model,
            foreground_model,
            GRABCUT_ITERATIONS,
            cv2.GC_INIT_WITH_RECT,
        )
        foreground = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.float32)
        return (resize_probability(foreground, height, width) >= 0.5).astype(np.float32)

    def info(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "recipe": (
                f"OpenCV GrabCut, {GRABCUT_ITERATIONS} iterations, initial rectangle about 2 % inside the border, "
                f"run on a copy with the longest side at most {GRABCUT_MAX_SIDE} px and resized back"
            ),
        }


class OtsuBaseline(Predictor):
    """Global Otsu threshold on the grey levels; the side that owns the border is background."""

    name = "otsu"
    kind = "baseline"
    binary_only = True

    def predict_proba(self, image: np.ndarray, options: InferenceOptions | None = None) -> np.ndarray:
        grey = cv2.cvtColor(_check_rgb(image), cv2.COLOR_RGB2GRAY)
        threshold, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        bright = grey > threshold
        border = np.concatenate([bright[0], bright[-1], bright[:, 0], bright[:, -1]])
        # Otsu only splits two grey-level classes; the butterfly is the one that
        # does not fill the border, whether it is brighter or darker.
        foreground = ~bright if border.mean() > 0.5 else bright
        return foreground.astype(np.float32)

    def info(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "recipe": "Otsu threshold on grey levels; the class covering most of the image border is background",
        }


#: The classical baselines by name; :mod:`seg_core.runtime.registry` lists and loads them.
BASELINES: dict[str, type[Predictor]] = {"grabcut": GrabCutBaseline, "otsu": OtsuBaseline}
