"""Loading trained models and predicting masks at the photo's own resolution.

Every model, U-Net or classical baseline, is a :class:`Predictor`: it maps an
RGB ``uint8`` photo to a foreground probability map of the same height and
width. Thresholding is separate so a UI can move the threshold without
running the network again.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seg_core.config import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, UNetConfig, load_config
from seg_core.data import REPO_ROOT
from seg_core.imaging import ImageSource, load_image, preprocess, resize_probability

MODELS_DIR = REPO_ROOT / "models"
DEFAULT_MODEL = "unet-best"


class ModelLoadError(RuntimeError):
    """A model folder is missing, incomplete, or its weights do not load."""


class Predictor(ABC):
    """Anything that turns a photo into a foreground probability map."""

    name: str
    kind: str = "unet"
    #: True when probabilities are only ever 0 or 1 (thresholds change nothing).
    binary_only: bool = False

    @abstractmethod
    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """Foreground probabilities, float32 (H, W), for an RGB uint8 (H, W, 3) photo."""

    def info(self) -> dict:
        """Descriptive fields for tables (recipe, parameters, ...)."""
        return {"name": self.name, "kind": self.kind}


_BASELINES: dict[str, Callable[[], Predictor]] = {}


def register_baseline(name: str):
    """Register a classical predictor factory under ``name`` (decorator)."""

    def decorator(factory: Callable[[], Predictor]) -> Callable[[], Predictor]:
        _BASELINES[name] = factory
        return factory

    return decorator


def _load_baselines() -> None:
    # Imported for its registrations; kept lazy so U-Net-only users skip OpenCV.
    import seg_core.baselines  # noqa: F401


class UNetPredictor(Predictor):
    """A trained Keras U-Net loaded from ``models/<name>/``."""

    def __init__(self, directory: str | Path):
        from seg_core.models import build_unet

        directory = Path(directory)
        name = directory.name
        for required in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / required).is_file():
                raise ModelLoadError(f"model {name!r}: {required} is missing in {directory}")
        started = time.perf_counter()
        try:
            arch, config = load_config(directory)
            model = build_unet(config, name=arch)
            model.load_weights(directory / WEIGHTS_FILE)
        except Exception as exc:  # h5py, JSON and Keras raise many unrelated types
            raise ModelLoadError(f"model {name!r} could not be loaded: {exc}") from exc
        card_path = directory / CARD_FILE
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        self._bind(model, config, name, directory, card)
        self.load_seconds = time.perf_counter() - started

    @classmethod
    def from_model(cls, model, config: UNetConfig, name: str) -> UNetPredictor:
        """Wrap an already built Keras U-Net (e.g. random weights, as a latency reference).

        The wrapper has no folder: ``card`` is empty, ``load_seconds`` is 0 and
        ``info()`` reports no file size.
        """
        predictor = cls.__new__(cls)
        predictor._bind(model, config, name, None, {})
        predictor.load_seconds = 0.0
        return predictor

    def _bind(self, model, config: UNetConfig, name: str, directory: Path | None, card: dict) -> None:
        import keras

        self.model, self.config, self.arch, self.name = model, config, model.name, name
        self.directory, self.card = directory, card
        self._lock = threading.Lock()
        self._forward = self._compile(keras.backend.backend())

    def _compile(self, backend: str) -> Callable[[np.ndarray], np.ndarray]:
        if backend == "tensorflow":
            import tensorflow as tf

            size = self.config.input_size
            spec = tf.TensorSpec([None, size, size, 3], tf.float32)
            fn = tf.function(lambda x: self.model(x, training=False), input_signature=[spec])
            return lambda batch: fn(tf.constant(batch)).numpy()
        return lambda batch: np.asarray(self.model.predict_on_batch(batch))

    def predict_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Probability maps for several photos in one forward pass."""
        batch = np.stack([preprocess(img, self.config.input_size) for img in images])
        with self._lock:
            out = self._forward(batch)[..., 0]
        return [resize_probability(p, *img.shape[:2]) for p, img in zip(out, images, strict=False)]

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        return self.predict_batch([image])[0]

    def info(self) -> dict:
        return {
            "name": self.name,
            "kind": "unet",
            "architecture": self.arch,
            "recipe": self.card.get("recipe", ""),
            "parameters": int(self.model.count_params()),
            "file_mb": round((self.directory / WEIGHTS_FILE).stat().st_size / 1e6, 2) if self.directory else None,
        }


def trained_models(models_dir: str | Path = MODELS_DIR) -> list[str]:
    """Names of the trained U-Net folders under ``models_dir``, best first."""
    names = sorted(p.parent.name for p in Path(models_dir).glob(f"*/{CONFIG_FILE}"))
    return sorted(names, key=lambda n: n != DEFAULT_MODEL)


def baseline_names() -> list[str]:
    """Names of the registered classical baselines."""
    _load_baselines()
    return sorted(_BASELINES)


def available_predictors(models_dir: str | Path = MODELS_DIR) -> list[str]:
    """Every model a user can pick: trained U-Nets first, then baselines."""
    return trained_models(models_dir) + baseline_names()


def load_predictor(name: str, models_dir: str | Path = MODELS_DIR) -> Predictor:
    """Load a trained U-Net (``models/<name>``) or a baseline by name.

    Raises:
        ModelLoadError: unknown name, or a model folder that does not load.
    """
    _load_baselines()
    if name in _BASELINES:
        return _BASELINES[name]()
    directory = Path(models_dir) / name
    if not directory.is_dir():
        raise ModelLoadError(f"unknown model {name!r}; available: {', '.join(available_predictors(models_dir))}")
    return UNetPredictor(directory)


def threshold_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask: probability at or above ``threshold`` is butterfly."""
    return np.asarray(prob) >= threshold


def segment(source: ImageSource, predictor: Predictor, threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``source`` and return (RGB photo, boolean mask at its own size).

    Raises:
        InvalidImageError: the input is not a usable photo.
    """
    image = load_image(source)
    return image, threshold_mask(predictor.predict_proba(image), threshold)
