"""A trained network's predictor: its folder loaded, its forward pass on an engine, masks at the photo's size.

The network sees the photo resized to its input; its probabilities are resized
back, and a second, closer look is taken at small butterflies where the
network's config asks for it (:mod:`seg_core.runtime.second_look`).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from pathlib import Path

import numpy as np

from seg_core.core.config import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, BlendConfig, NetworkConfig, load_config
from seg_core.core.imaging import preprocess, resize_probability
from seg_core.runtime import blend, engines, export, second_look
from seg_core.runtime.base import InferenceOptions, ModelLoadError, Predictor
from seg_core.runtime.int8 import int8_model


class UNetPredictor(Predictor):
    """A trained U-Net-family network (U-Net or U²-Net) from ``models/<name>/``, run by Keras or OpenVINO.

    ``runtime`` and ``precision`` are taken as given here (see
    :mod:`seg_core.runtime.engines`); :func:`load_predictor` resolves ``auto`` and
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
        cls, model, config: NetworkConfig, name: str, runtime: str = "keras", precision: str = "fp32"
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

    def _bind(self, model, config: NetworkConfig, name: str, arch: str, directory: Path | None, card: dict) -> None:
        self._model, self.config, self.arch, self.name = model, config, arch, name
        self.directory, self.card = directory, card
        self._model_lock = threading.Lock()

    @property
    def model(self):
        """The Keras model, built and loaded from the folder on first use."""
        with self._model_lock:
            if self._model is None:
                from seg_core.models.registry import build_model

                try:
                    model = build_model(self.config, self.arch)
                    model.load_weights(self.directory / WEIGHTS_FILE)
                except Exception as exc:  # h5py and Keras raise many unrelated types
                    raise ModelLoadError(f"model {self.name!r} could not be loaded: {exc}") from exc
                self._model = model
            return self._model

    def _start(self, runtime: str, precision: str) -> None:
        if runtime not in engines.RUNTIME_PRECISIONS:
            raise engines.RuntimeUnavailableError(f"unknown runtime {runtime!r}; choose one of {engines.RUNTIMES}")
        if precision not in engines.RUNTIME_PRECISIONS[runtime]:
            supported = ", ".join(engines.RUNTIME_PRECISIONS[runtime])
            raise engines.PrecisionRefusedError(f"the {runtime} runtime runs {supported}, not {precision!r}")
        if runtime == "keras":
            self._forward = engines.KerasRuntime(self.model, self.config.input_size)
            self.parameters = int(self.model.count_params())
        else:
            if not engines.openvino_available():
                raise engines.RuntimeUnavailableError("runtime 'openvino' is not installed")
            size = self.config.input_size
            digest = export.folder_digest(self.directory) if self.directory else export.model_digest(self._model)
            try:
                if isinstance(self.config, BlendConfig):
                    folders, self._forward = self._openvino_blend(digest, precision)
                else:
                    folders = [export.openvino_export(self.name, digest, size, lambda: self.model)]
                    xml = folders[0] / export.OPENVINO_XML if precision != "int8" else self._int8_model(digest)
                    self._forward = engines.OpenVINORuntime(xml, precision)
            except ModelLoadError:
                raise
            except (export.ExportError, RuntimeError) as exc:  # OpenVINO reports compile failures as RuntimeError
                raise engines.RuntimeUnavailableError(f"model {self.name!r} does not run on openvino: {exc}") from exc
            self.parameters = sum(int(export.read_meta(folder)["parameters"]) for folder in folders)
        self.runtime, self.precision = runtime, self._forward.precision

    def _openvino_blend(self, digest: str, precision: str) -> tuple[list[Path], engines.BlendRuntime]:
        """One OpenVINO engine per member branch of a blend; returns (their exports, the blend's engine)."""
        if precision == "int8":
            raise engines.PrecisionRefusedError(f"model {self.name!r} is a blend: it has no INT8 version")

        def branch(key: str):
            from seg_core.models.blend import branches  # Keras, only when the export is missing

            return branches(self.model)[key]

        size = self.config.input_size
        folders = [
            export.openvino_export(f"{self.name}.{key}", digest, size, lambda key=key: branch(key))
            for key in BlendConfig.members
        ]
        unet, u2net = (engines.OpenVINORuntime(folder / export.OPENVINO_XML, precision) for folder in folders)
        return folders, engines.BlendRuntime(unet, u2net, functools.partial(blend.unsure, config=self.config))

    def _int8_model(self, digest: str) -> Path:
        """The committed INT8 model of these weights (``digest``; see :mod:`seg_core.runtime.quantize`)."""
        if self.directory is None:
            raise engines.PrecisionRefusedError(f"model {self.name!r} has no folder, so no INT8 version")
        return int8_model(self.directory, digest)

    def warm(self) -> None:
        """Run the network on blank batches of one and four (one look; test-time augmentation's views).

        The first call of each batch size pays one-off costs (graph tracing,
        kernel preparation); loading calls this so that no photo does.
        """
        size = self.config.input_size
        # A blend's engine runs its U²-Net only on unsure photos; a blank one may not be.
        forward = self._forward.warm if isinstance(self._forward, engines.BlendRuntime) else self._forward
        for n in (1, 4):
            forward(np.zeros((n, size, size, 3), np.float32))

    def _maps(self, batch: np.ndarray) -> np.ndarray:
        """The network's probability maps (N, S, S) for a batch at its input (a blend's two made one)."""
        out = self._forward(batch)
        return blend.combine(out, self.config) if isinstance(self.config, BlendConfig) else out[..., 0]

    def _forward_tta(self, batch: np.ndarray) -> np.ndarray:
        """Mean of the network over identity, left-right, up-down and a quarter turn, undone after."""
        views = np.concatenate([batch, batch[:, :, ::-1], batch[:, ::-1], np.rot90(batch, 1, axes=(1, 2))])
        out = self._maps(np.ascontiguousarray(views))
        n = len(batch)
        undone = [out[:n], out[n : 2 * n, :, ::-1], out[2 * n : 3 * n, ::-1], np.rot90(out[3 * n :], -1, axes=(1, 2))]
        return np.mean(undone, axis=0)

    def predict_batch(self, images: list[np.ndarray], tta: bool = False) -> list[np.ndarray]:
        """Probability maps for several photos in one forward pass (one look each, no second look)."""
        batch = np.stack([preprocess(img, self.config.input_size, self.config.resample) for img in images])
        out = self._forward_tta(batch) if tta else self._maps(batch)
        return [resize_probability(p, *img.shape[:2]) for p, img in zip(out, images, strict=False)]

    def predict_proba(self, image: np.ndarray, options: InferenceOptions | None = None) -> np.ndarray:
        options = options or InferenceOptions()
        prob = self.predict_batch([image], options.tta)[0]
        # A network without the second look in its config (the zero-shot U²-Netp, as rembg runs it) never takes one.
        if options.second_look and self.config.second_look:
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
