"""Loading trained models and predicting masks at the photo's own resolution.

Every model, U-Net or classical baseline, is a :class:`Predictor`: it maps an
RGB ``uint8`` photo to a foreground probability map of the same height and
width. Thresholding is separate so a UI can move the threshold without
running the network again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seg_core import second_look
from seg_core.config import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, UNetConfig, load_config
from seg_core.data import REPO_ROOT
from seg_core.imaging import ImageSource, load_image, preprocess, resize_probability

MODELS_DIR = REPO_ROOT / "models"
_log = logging.getLogger(__name__)
DEFAULT_MODEL = "unet-best"


class ModelLoadError(RuntimeError):
    """A model folder is missing, incomplete, or its weights do not load."""


@dataclass(frozen=True)
class InferenceOptions:
    """How hard a network looks at a photo (classical baselines ignore these).

    Attributes:
        second_look: crop around butterflies that are small in the photo and run
            the network again on each crop, in four views (see :mod:`seg_core.second_look`);
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
    """A trained U-Net loaded from ``models/<name>/``, run by Keras or OpenVINO.

    ``runtime`` and ``precision`` are taken as given here (see
    :mod:`seg_core.runtimes`); :func:`load_predictor` resolves ``auto`` and
    refuses precisions the check file has not verified. With OpenVINO the
    Keras model is only built when the cached export is missing (or when
    :attr:`model` is read), so loading then needs no TensorFlow at all. The
    network runs once on blank batches while loading, so no photo pays for
    graph tracing or kernel preparation.
    """

    def __init__(self, directory: str | Path, runtime: str = "keras", precision: str = "fp32"):
        directory = Path(directory)
        name = directory.name
        for required in (CONFIG_FILE, WEIGHTS_FILE):
            if not (directory / required).is_file():
                raise ModelLoadError(f"model {name!r}: {required} is missing in {directory}")
        started = time.perf_counter()
        try:
            arch, config = load_config(directory)
        except Exception as exc:  # JSON, key and type errors of a damaged config
            raise ModelLoadError(f"model {name!r} could not be loaded: {exc}") from exc
        card_path = directory / CARD_FILE
        card = json.loads(card_path.read_text()) if card_path.is_file() else {}
        self._bind(None, config, name, arch, directory, card)
        self._start(runtime, precision)
        self.warm()
        self.load_seconds = time.perf_counter() - started

    @classmethod
    def from_model(
        cls, model, config: UNetConfig, name: str, runtime: str = "keras", precision: str = "fp32"
    ) -> UNetPredictor:
        """Wrap an already built Keras U-Net (e.g. random weights, as a latency reference).

        The wrapper has no folder: ``card`` is empty, ``load_seconds`` is 0,
        ``info()`` reports no file size and nothing is warmed up.
        """
        predictor = cls.__new__(cls)
        predictor._bind(model, config, name, model.name, None, {})
        predictor._start(runtime, precision)
        predictor.load_seconds = 0.0
        return predictor

    def _bind(self, model, config: UNetConfig, name: str, arch: str, directory: Path | None, card: dict) -> None:
        self._model, self.config, self.arch, self.name = model, config, arch, name
        self.directory, self.card = directory, card
        self._model_lock = threading.Lock()

    @property
    def model(self):
        """The Keras model, built and loaded from the folder on first use."""
        with self._model_lock:
            if self._model is None:
                from seg_core.models import build_unet

                try:
                    model = build_unet(self.config, name=self.arch)
                    model.load_weights(self.directory / WEIGHTS_FILE)
                except Exception as exc:  # h5py and Keras raise many unrelated types
                    raise ModelLoadError(f"model {self.name!r} could not be loaded: {exc}") from exc
                self._model = model
            return self._model

    def _start(self, runtime: str, precision: str) -> None:
        from seg_core import export, runtimes

        if runtime not in runtimes.RUNTIME_PRECISIONS:
            raise runtimes.RuntimeUnavailableError(f"unknown runtime {runtime!r}; choose one of {runtimes.RUNTIMES}")
        if precision not in runtimes.RUNTIME_PRECISIONS[runtime]:
            supported = ", ".join(runtimes.RUNTIME_PRECISIONS[runtime])
            raise runtimes.PrecisionRefusedError(f"the {runtime} runtime runs {supported}, not {precision!r}")
        if runtime == "keras":
            self._forward = runtimes.KerasRuntime(self.model, self.config.input_size)
            self.parameters = int(self.model.count_params())
        else:
            if not runtimes.openvino_available():
                raise runtimes.RuntimeUnavailableError("runtime 'openvino' is not installed")
            size = self.config.input_size
            digest = export.folder_digest(self.directory) if self.directory else export.model_digest(self._model)
            try:
                folder = export.openvino_export(self.name, digest, size, lambda: self.model)
                xml = folder / export.OPENVINO_XML if precision != "int8" else self._int8_model(digest)
                self._forward = runtimes.OpenVINORuntime(xml, precision)
            except ModelLoadError:
                raise
            except (export.ExportError, RuntimeError) as exc:  # OpenVINO reports compile failures as RuntimeError
                raise runtimes.RuntimeUnavailableError(f"model {self.name!r} does not run on openvino: {exc}") from exc
            self.parameters = int(export.read_meta(folder)["parameters"])
        self.runtime, self.precision = runtime, self._forward.precision

    def _int8_model(self, digest: str) -> Path:
        """The committed INT8 model of these weights (``digest``; see :mod:`seg_core.quantize`)."""
        from seg_core import quantize, runtimes

        if self.directory is None:
            raise runtimes.PrecisionRefusedError(f"model {self.name!r} has no folder, so no INT8 version")
        return quantize.int8_model(self.directory, digest)

    def warm(self) -> None:
        """Run the network on blank batches of one and four (one look; test-time augmentation's views).

        The first call of each batch size pays one-off costs (graph tracing,
        kernel preparation); loading calls this so that no photo does.
        """
        size = self.config.input_size
        for n in (1, 4):
            self._forward(np.zeros((n, size, size, 3), np.float32))

    def _forward_tta(self, batch: np.ndarray) -> np.ndarray:
        """Mean of the network over identity, left-right, up-down and a quarter turn, undone after."""
        views = np.concatenate([batch, batch[:, :, ::-1], batch[:, ::-1], np.rot90(batch, 1, axes=(1, 2))])
        out = self._forward(np.ascontiguousarray(views))[..., 0]
        n = len(batch)
        undone = [out[:n], out[n : 2 * n, :, ::-1], out[2 * n : 3 * n, ::-1], np.rot90(out[3 * n :], -1, axes=(1, 2))]
        return np.mean(undone, axis=0)

    def predict_batch(self, images: list[np.ndarray], tta: bool = False) -> list[np.ndarray]:
        """Probability maps for several photos in one forward pass (one look each, no second look)."""
        batch = np.stack([preprocess(img, self.config.input_size) for img in images])
        out = self._forward_tta(batch) if tta else self._forward(batch)[..., 0]
        return [resize_probability(p, *img.shape[:2]) for p, img in zip(out, images, strict=False)]

    def predict_proba(self, image: np.ndarray, options: InferenceOptions | None = None) -> np.ndarray:
        options = options or InferenceOptions()
        prob = self.predict_batch([image], options.tta)[0]
        if options.second_look:
            config = second_look.SecondLookConfig()
            windows = second_look.find_windows(prob, config)
            if windows:
                crops = [image[w.slices] for w in windows]
                prob = second_look.blend(prob, windows, self.predict_batch(crops, options.tta or config.crop_tta))
        return prob

    def info(self) -> dict:
        return {
            "name": self.name,
            "kind": "unet",
            "architecture": self.arch,
            "recipe": self.card.get("recipe", ""),
            "parameters": self.parameters,
            "file_mb": round((self.directory / WEIGHTS_FILE).stat().st_size / 1e6, 2) if self.directory else None,
            "runtime": self.runtime,
            "precision": self.precision,
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
            else FP32 (see :mod:`seg_core.runtimes`). Baselines ignore both.

    Raises:
        ModelLoadError: unknown name, or a model folder that does not load;
            ``RuntimeUnavailableError`` for a runtime that is not installed,
            ``PrecisionRefusedError`` for a precision that is not verified.
    """
    _load_baselines()
    if name in _BASELINES:
        return _BASELINES[name]()
    directory = Path(models_dir) / name
    if not directory.is_dir():
        raise ModelLoadError(f"unknown model {name!r}; available: {', '.join(available_predictors(models_dir))}")
    from seg_core import export, runtimes

    try:
        digest = export.folder_digest(directory)
    except OSError:  # a missing file: UNetPredictor says which
        digest = None
    pairs = runtimes.plan(name, digest, runtime, precision, models_dir)
    for index, (chosen_runtime, chosen_precision) in enumerate(pairs):
        try:
            return UNetPredictor(directory, chosen_runtime, chosen_precision)
        except runtimes.RuntimeUnavailableError as exc:
            if index == len(pairs) - 1:
                raise
            _log.warning("%s; falling back to %s", exc, pairs[index + 1][0])
    raise AssertionError("plan() returns at least one pair")


def threshold_mask(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean mask: probability at or above ``threshold`` is butterfly."""
    return np.asarray(prob) >= threshold


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
