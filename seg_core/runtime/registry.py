"""One registry of every predictor a user can pick: trained networks by folder, classical baselines by name.

:func:`load_predictor` is the one way from a name to a warmed-up :class:`~seg_core.runtime.base.Predictor`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seg_core.core.config import CONFIG_FILE
from seg_core.core.imaging import ImageSource, load_image
from seg_core.core.paths import MODELS_DIR
from seg_core.runtime import checks, export
from seg_core.runtime.base import DEFAULT_MODEL, InferenceOptions, ModelLoadError, Predictor, threshold_mask
from seg_core.runtime.engines import RuntimeUnavailableError
from seg_core.runtime.predictor import UNetPredictor

_log = logging.getLogger(__name__)


def _baselines() -> dict[str, Callable[[], Predictor]]:
    # Imported on first use so that U-Net-only users skip OpenCV.
    from seg_core.runtime.baselines import BASELINES

    return BASELINES


def trained_models(models_dir: str | Path = MODELS_DIR) -> list[str]:
    """Names of the trained U-Net folders under ``models_dir``, best first (hidden folders are unfinished work)."""
    folders = (p.parent for p in Path(models_dir).glob(f"*/{CONFIG_FILE}"))
    names = sorted(folder.name for folder in folders if not folder.name.startswith("."))
    return sorted(names, key=lambda n: n != DEFAULT_MODEL)


def baseline_names() -> list[str]:
    """Names of the registered classical baselines."""
    return sorted(_baselines())


def available_predictors(models_dir: str | Path = MODELS_DIR) -> list[str]:
    """Every model a user can pick: trained U-Nets first, then baselines."""
    return trained_models(models_dir) + baseline_names()


def load_predictor(
    name: str, models_dir: str | Path = MODELS_DIR, runtime: str = "auto", precision: str = "auto"
) -> Predictor:
    """Load a trained U-Net (``models/<name>``) or a baseline by name, warmed up.

    Args:
        name: a name from :func:`available_predictors`.
        models_dir: folder of trained U-Nets (and of their ``precision_check.csv``).
        runtime: ``keras``, ``openvino`` or ``auto``: OpenVINO when installed,
            falling back to Keras when it is not or cannot run the model.
        precision: ``fp32``, ``bf16``, ``int8`` or ``auto``: the lowest precision that
            ``precision_check.csv`` verified for these weights on the runtime,
            else FP32 (see :mod:`seg_core.runtime.checks`). Baselines ignore both.

    Raises:
        ModelLoadError: unknown name, or a model folder that does not load;
            ``RuntimeUnavailableError`` for a runtime that is not installed,
            ``PrecisionRefusedError`` for a precision that is not verified.
    """
    baselines = _baselines()
    if name in baselines:
        return baselines[name]()
    directory = Path(models_dir) / name
    if not directory.is_dir():
        raise ModelLoadError(f"unknown model {name!r}; available: {', '.join(available_predictors(models_dir))}")
    try:
        digest = export.folder_digest(directory)
    except OSError:  # a missing file: UNetPredictor says which
        digest = None
    pairs = checks.plan(name, digest, runtime, precision, models_dir)
    for index, (chosen_runtime, chosen_precision) in enumerate(pairs):
        try:
            return UNetPredictor(directory, chosen_runtime, chosen_precision)
        except RuntimeUnavailableError as exc:
            if index == len(pairs) - 1:
                raise
            _log.warning("%s; falling back to %s", exc, pairs[index + 1][0])
    raise AssertionError("plan() returns at least one pair")


def segment(
    source: ImageSource, predictor: Predictor, threshold: float = 0.5, options: InferenceOptions | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Decode ``source`` and return (RGB photo, boolean mask at its own size).

    ``options`` defaults to :class:`InferenceOptions`' defaults (what the app uses).

    Raises:
        InvalidImageError: the input is not a usable photo.
    """
    image = load_image(source)
    prob = predictor.predict_proba(image) if options is None else predictor.predict_proba(image, options)
    return image, threshold_mask(prob, threshold)


_CACHE: dict[str, Predictor] = {}

_CACHE_LOCK = threading.Lock()


def cached_predictor(name: str) -> Predictor:
    """The one loaded instance of model ``name`` in this process, loaded on first use.

    Front ends without a cache of their own (the HTTP API) share models through
    this, so concurrent requests never load a model twice. A model that fails
    to load is not remembered: the next call tries again.

    Raises:
        ModelLoadError: unknown name, or a model folder that does not load.
    """
    with _CACHE_LOCK:
        if name not in _CACHE:
            _CACHE[name] = load_predictor(name)
        return _CACHE[name]
