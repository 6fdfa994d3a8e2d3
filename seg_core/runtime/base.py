"""What every predictor is: a photo in, a foreground probability map out.

Every model, trained network or classical baseline, is a :class:`Predictor`: it maps an
RGB ``uint8`` photo to a foreground probability map of the same height and
width. Thresholding is separate so a UI can move the threshold without
running the network again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

DEFAULT_MODEL = "wingmask-blend"
#: What the commands accept for the default model, in any case (``--models DEFAULT``, ``--base default``).
DEFAULT_ALIAS = "default"


def resolve_alias(name: str) -> str:
    """``name``, or :data:`DEFAULT_MODEL` where it is the default alias."""
    return DEFAULT_MODEL if name.lower() == DEFAULT_ALIAS else name


class ModelLoadError(RuntimeError):
    """A model folder is missing, incomplete, or its weights do not load."""


@dataclass(frozen=True)
class InferenceOptions:
    """How hard a network looks at a photo (classical baselines ignore these).

    Attributes:
        second_look: crop around butterflies that are small in the photo and run
            the network again on each crop, in four views (see :mod:`seg_core.runtime.second_look`);
            photos where the butterfly fills much of the frame are unaffected.
        tta: test-time augmentation: average the network over flips and a
            quarter turn (four passes; best quality, about four times slower).
    """

    second_look: bool = True
    tta: bool = False


class Predictor(ABC):
    """Anything that turns a photo into a foreground probability map."""

    name: str
    kind: str = "unet"
    #: True when probabilities are only ever 0 or 1 (thresholds change nothing).
    binary_only: bool = False

    @abstractmethod
    def predict_proba(self, image: np.ndarray, options: InferenceOptions | None = None) -> np.ndarray:
        """Foreground probabilities, float32 (H, W), for an RGB uint8 (H, W, 3) photo."""

    def info(self) -> dict:
        """Descriptive fields for tables (recipe, parameters, ...)."""
        return {"name": self.name, "kind": self.kind}


def threshold_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask: probability at or above ``threshold`` is butterfly."""
    return np.asarray(prob) >= threshold
