"""The engines that run a network's forward pass: Keras and OpenVINO.

An engine is a callable from a float32 batch (N, S, S, 3) to probabilities
(N, S, S, 1), safe to call from many threads at once:

- ``keras``: the Keras model on TensorFlow, the reference (FP32 only);
- ``openvino``: the model exported to OpenVINO (see :mod:`seg_core.runtime.export`),
  FP32 or BF16 (BF16 needs a CPU with AVX512_BF16 or AMX; elsewhere OpenVINO
  runs FP32 and the predictor says so), or INT8: the quantised model
  committed beside the weights (see :mod:`seg_core.runtime.int8`; fast with
  AVX512-VNNI or AMX).

Which engine and precision a model runs at is decided in :mod:`seg_core.runtime.checks`.
"""

from __future__ import annotations

import importlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seg_core.runtime.base import ModelLoadError

#: Fastest first, as measured in models/bench.csv.
RUNTIMES = ("openvino", "keras")
#: Lowest (fastest) first.
PRECISIONS = ("int8", "bf16", "fp32")
RUNTIME_PRECISIONS = {"keras": ("fp32",), "openvino": ("int8", "bf16", "fp32")}
#: OpenVINO's inference precision for each precision; an INT8 model runs its
#: float parts (the first and last convolutions, the sigmoid) in FP32.
_OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
#: CPU flags (from /proc/cpuinfo) that make low-precision inference fast.
CPU_FLAGS = ("avx512_bf16", "amx_bf16", "amx_int8", "amx_fp16", "avx512_vnni", "avx512_fp16")


class RuntimeUnavailableError(ModelLoadError):
    """The runtime asked for is unknown, not installed, or could not start on this model."""


class PrecisionRefusedError(ModelLoadError):
    """The precision asked for is unknown, unsupported by the runtime, or not verified for these weights."""


def openvino_available() -> bool:
    """True when the ``openvino`` package imports."""
    try:
        importlib.import_module("openvino")
    except ImportError:
        return False
    return True


def available_runtimes() -> list[str]:
    """The runtimes installed here, fastest first."""
    return [r for r in RUNTIMES if r != "openvino" or openvino_available()]


def cpu_flags() -> list[str]:
    """Which of ``CPU_FLAGS`` this CPU has (empty where /proc/cpuinfo is missing)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return []
    flags: set[str] = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return [f for f in CPU_FLAGS if f in flags]


class KerasRuntime:
    """The Keras model itself: a traced ``tf.function`` on TensorFlow, ``predict_on_batch`` elsewhere."""

    name = "keras"
    precision = "fp32"

    def __init__(self, model, input_size: int):
        import keras

        self._lock = threading.Lock()
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec([None, input_size, input_size, 3], tf.float32)
            fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
            self._run: Callable[[np.ndarray], np.ndarray] = lambda batch: fn(tf.constant(batch)).numpy()
        else:
            self._run = lambda batch: np.asarray(model.predict_on_batch(batch))

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        # TensorFlow already spreads one call over every core; the lock keeps
        # concurrent sessions from oversubscribing them (and guards other backends).
        with self._lock:
            return self._run(batch)


class OpenVINORuntime:
    """An OpenVINO model compiled for the CPU, with a pool of infer requests.

    Each call borrows an idle infer request (creating one when every request is
    busy) and returns it afterwards, so concurrent callers never share one and
    no lock is held during inference. The batch dimension is dynamic.
    """

    name = "openvino"

    def __init__(self, xml_path: str | os.PathLike, precision: str):
        import openvino as ov

        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": _OV_PRECISION[precision], "PERFORMANCE_HINT": "LATENCY"}
        self._compiled = core.compile_model(core.read_model(str(xml_path)), "CPU", config)
        # What the CPU actually runs: without BF16 hardware OpenVINO keeps FP32.
        effective = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = precision if precision == "int8" else "bf16" if effective == ov.Type.bf16 else "fp32"
        self._idle: queue.SimpleQueue = queue.SimpleQueue()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            request.infer({0: batch})
            return request.get_output_tensor(0).data.copy()
        finally:
            self._idle.put(request)


class BlendRuntime:
    """A blend's two member engines: the U²-Net's only runs on the photos the U-Net is unsure of.

    Returns both maps as channels (N, S, S, 2), as the blend's Keras graph does; where
    the U²-Net was skipped its channel repeats the U-Net's map, which the blend's rule
    ignores there (see :mod:`seg_core.runtime.blend`). OpenVINO runs a blend this way,
    one engine per member branch: its converter gives wrong maps for the whole
    two-network graph, while each branch converts exactly.
    """

    def __init__(self, unet, u2net, unsure: Callable[[np.ndarray], np.ndarray]):
        self._unet, self._u2net, self._unsure = unet, u2net, unsure
        self.name, self.precision = unet.name, unet.precision

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        first = self._unet(batch)
        second = first.copy()
        asked = np.flatnonzero(self._unsure(first[..., 0]))
        if asked.size:
            second[asked] = self._u2net(np.ascontiguousarray(batch[asked]))
        return np.concatenate([first, second], axis=-1)

    def warm(self, batch: np.ndarray) -> None:
        """Run both engines on ``batch``, so the first photo the U-Net is unsure of pays no one-off cost."""
        self._unet(batch)
        self._u2net(batch)
