"""Runtimes that run a U-Net's forward pass, and which one (at which precision) to use.

A runtime is a callable from a float32 batch (N, S, S, 3) to probabilities
(N, S, S, 1), safe to call from many threads at once:

- ``keras``: the Keras model on TensorFlow, the reference (FP32 only);
- ``openvino``: the model exported to OpenVINO (see :mod:`seg_core.export`),
  FP32 or BF16 (BF16 needs a CPU with AVX512_BF16 or AMX; elsewhere OpenVINO
  runs FP32 and the predictor says so), or INT8: the quantised model
  committed beside the weights (see :mod:`seg_core.quantize`; fast with
  AVX512-VNNI or AMX).

``auto`` picks OpenVINO when it is installed (it is the faster one in
``models/bench.csv``), else Keras; and the lowest precision that the committed
check file ``models/precision_check.csv`` verified for the model's current
weights on that runtime, else FP32. The check runs every runtime and precision
on a split and compares with Keras FP32::

    python -m seg_core.runtimes --split test

A precision passes when its masks agree with Keras FP32 masks on at least 99.9%
of the split's pixels and its foreground IoU is within 0.002 of Keras'. Asking
for a precision explicitly that failed, or that was never checked for these
weights, raises :class:`PrecisionRefusedError`; FP32 needs no check.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from seg_core.data import (
    DATA_ENV,
    DEFAULT_DATA,
    SPLITS,
    DatasetNotFoundError,
    load_split_photos,
)
from seg_core.evaluate import format_table
from seg_core.export import folder_digest
from seg_core.inference import MODELS_DIR, ModelLoadError, UNetPredictor, threshold_mask, trained_models
from seg_core.metrics import Confusion, confusion, iou
from seg_core.quantize import has_int8

AUTO = "auto"
#: Fastest first, as measured in models/bench.csv.
RUNTIMES = ("openvino", "keras")
#: Lowest (fastest) first.
PRECISIONS = ("int8", "bf16", "fp32")
RUNTIME_PRECISIONS = {"keras": ("fp32",), "openvino": ("int8", "bf16", "fp32")}
CHECK_FILE = "precision_check.csv"
CHECK_COLUMNS = [
    "model",
    "digest",
    "runtime",
    "precision",
    "split",
    "photos",
    "agreement",
    "worst_photo_agreement",
    "fg_iou",
    "keras_fg_iou",
    "passed",
    "cpu",
    "checked_at",
]
MIN_AGREEMENT = 0.999
MAX_IOU_GAP = 0.002
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


def check_path(models_dir: str | os.PathLike = MODELS_DIR) -> Path:
    """The precision check file of a models folder."""
    return Path(models_dir) / CHECK_FILE


def read_checks(models_dir: str | os.PathLike = MODELS_DIR) -> pd.DataFrame:
    """The precision check rows (an empty table when the file is missing or unreadable)."""
    path = check_path(models_dir)
    try:
        table = pd.read_csv(path, dtype={"model": str, "digest": str, "runtime": str, "precision": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return pd.DataFrame(columns=CHECK_COLUMNS)
    if any(c not in table.columns for c in CHECK_COLUMNS):
        return pd.DataFrame(columns=CHECK_COLUMNS)
    table["passed"] = table["passed"].astype(str).str.lower().isin(["true", "1"])
    return table


def verified_precisions(name: str, digest: str | None, runtime: str, models_dir: str | os.PathLike) -> set[str]:
    """Precisions that passed the check for these weights (``digest``) on ``runtime``; FP32 always.

    INT8 also needs its quantised model beside the weights, made from them.
    """
    checks = read_checks(models_dir)
    mine = checks[(checks["model"] == name) & (checks["digest"] == digest) & (checks["runtime"] == runtime)]
    verified = {"fp32"} | set(mine.loc[mine["passed"], "precision"])
    if "int8" in verified and not has_int8(Path(models_dir) / name, digest):
        verified.discard("int8")
    return verified


def plan(
    name: str, digest: str | None, runtime: str, precision: str, models_dir: str | os.PathLike = MODELS_DIR
) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs to try for a model, in order (later ones are fallbacks).

    Args:
        name: trained model name.
        digest: :func:`seg_core.export.folder_digest` of its folder (None: no check applies).
        runtime: ``auto`` or one of ``RUNTIMES``.
        precision: ``auto`` or one of ``PRECISIONS``.
        models_dir: folder holding the trained models and ``precision_check.csv``.

    Raises:
        RuntimeUnavailableError: unknown runtime, or one that is not installed.
        PrecisionRefusedError: unknown precision, or one no usable runtime supports and verified.
    """
    if runtime != AUTO and runtime not in RUNTIMES:
        raise RuntimeUnavailableError(f"unknown runtime {runtime!r}; choose auto or one of {', '.join(RUNTIMES)}")
    if precision != AUTO and precision not in PRECISIONS:
        raise PrecisionRefusedError(f"unknown precision {precision!r}; choose auto or one of {', '.join(PRECISIONS)}")
    installed = available_runtimes()
    if runtime != AUTO and runtime not in installed:
        raise RuntimeUnavailableError(f"runtime {runtime!r} is not installed (pip install -r requirements.txt)")
    if runtime != AUTO and precision != AUTO and precision not in RUNTIME_PRECISIONS[runtime]:
        raise PrecisionRefusedError(f"the {runtime} runtime runs {', '.join(RUNTIME_PRECISIONS[runtime])} only")
    pairs = []
    for candidate in installed if runtime == AUTO else [runtime]:
        verified = verified_precisions(name, digest, candidate, models_dir) & set(RUNTIME_PRECISIONS[candidate])
        if precision == AUTO:
            pairs.append((candidate, next(p for p in PRECISIONS if p in verified)))
        elif precision in verified:
            pairs.append((candidate, precision))
    if not pairs:
        reason = _refusal(name, digest, precision, models_dir)
        raise PrecisionRefusedError(f"model {name!r}: {precision} is refused: {reason}")
    return pairs


def checks_of(name: str, digest: str | None, precision: str, models_dir: str | os.PathLike) -> pd.DataFrame:
    """The check rows of a model's weights (``digest``) at ``precision``, on any runtime."""
    checks = read_checks(models_dir)
    return checks[(checks["model"] == name) & (checks["digest"] == digest) & (checks["precision"] == precision)]


def _refusal(name: str, digest: str | None, precision: str, models_dir: str | os.PathLike) -> str:
    """Why ``precision`` is not verified: the failed check's figures, or that there was none."""
    failed = checks_of(name, digest, precision, models_dir)
    fix = f"run `python -m seg_core.runtimes --models {name}` to check it, or ask for fp32"
    if failed.empty:
        return f"it was never checked for these weights; {fix}"
    row = failed.iloc[0]
    return (
        f"it failed the check on {row['runtime']} (pixels agreeing with Keras FP32: {row['agreement']:.4%}, "
        f"foreground IoU {row['fg_iou']:.4f} vs {row['keras_fg_iou']:.4f}); ask for fp32"
    )


def _agreement_rows(
    name: str,
    models_dir: Path,
    images: list[np.ndarray],
    truths: list[np.ndarray],
    progress: bool,
) -> list[dict]:

    def run(predictor: UNetPredictor) -> list[np.ndarray]:
        label = f"{name} {predictor.runtime} {predictor.precision}"
        return [
            threshold_mask(predictor.predict_proba(img))
            for img in tqdm(images, desc=label, file=sys.stderr, disable=not progress)
        ]

    def fg_iou(masks: list[np.ndarray]) -> float:
        return iou(sum((confusion(m, t) for m, t in zip(masks, truths, strict=True)), Confusion(0, 0, 0, 0)))

    directory = models_dir / name
    reference = run(UNetPredictor(directory, "keras", "fp32"))
    keras_iou = fg_iou(reference)
    base = {"model": name, "digest": folder_digest(directory), "photos": len(images), "keras_fg_iou": keras_iou}
    rows = [base | {"runtime": "keras", "precision": "fp32", "agreement": 1.0, "worst_photo_agreement": 1.0}]
    rows[0] |= {"fg_iou": keras_iou, "passed": True}
    for runtime in available_runtimes():
        for precision in RUNTIME_PRECISIONS[runtime] if runtime != "keras" else ():
            if precision == "int8" and not has_int8(directory, base["digest"]):
                print(f"{name}: no INT8 version of these weights; skipped", file=sys.stderr)
                continue
            predictor = UNetPredictor(directory, runtime, precision)
            if predictor.precision != precision:
                print(f"{name}: {runtime} runs {predictor.precision} here, not {precision}; skipped", file=sys.stderr)
                continue
            masks = run(predictor)
            same = [int(np.count_nonzero(m == r)) for m, r in zip(masks, reference, strict=True)]
            agreement = sum(same) / sum(r.size for r in reference)
            value = fg_iou(masks)
            passed = agreement >= MIN_AGREEMENT and abs(value - keras_iou) <= MAX_IOU_GAP
            rows.append(
                base
                | {"runtime": runtime, "precision": precision, "agreement": agreement, "fg_iou": value}
                | {"worst_photo_agreement": min(s / r.size for s, r in zip(same, reference, strict=True))}
                | {"passed": passed}
            )
    return rows


def check_runtimes(
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    models: list[str] | None = None,
    models_dir: str | os.PathLike = MODELS_DIR,
    progress: bool = True,
) -> pd.DataFrame:
    """Compare every installed runtime and precision with Keras FP32 on a split; update the check file.

    Masks are the default predictor path's (second look on) at threshold 0.5, at
    each photo's own size. Rows of models not checked this time are kept.

    Args:
        data_dir: Leeds-layout folder (default: ``$WINGMASK_DATA`` or ``../shared``).
        split: the split of ``models/split.json`` to run on.
        models: trained model names (default: all of them).
        models_dir: folder of trained U-Nets; ``precision_check.csv`` is written there.
        progress: show progress bars on stderr.

    Returns:
        The rows of this run, columns ``CHECK_COLUMNS``.

    Raises:
        DatasetNotFoundError: no dataset, or no readable photo in the split.
        ModelLoadError: a model name is unknown or does not load.
    """
    from seg_core.bench import machine_description  # bench imports this module

    models_dir = Path(models_dir)
    names = models or trained_models(models_dir)
    unknown = sorted(set(names) - set(trained_models(models_dir)))
    if unknown:
        raise ModelLoadError(f"unknown model(s) {', '.join(unknown)}; trained: {', '.join(trained_models(models_dir))}")
    samples, images, truths = load_split_photos(data_dir, split)
    if not samples:
        raise DatasetNotFoundError(f"no readable {split} photos of the dataset")
    rows = [row for name in names for row in _agreement_rows(name, models_dir, images, truths, progress)]
    cpu = f"{machine_description()}; {' '.join(cpu_flags()) or 'no BF16/AMX flags'}"
    table = pd.DataFrame(rows).assign(split=split, cpu=cpu, checked_at=datetime.date.today().isoformat())
    table = table[CHECK_COLUMNS]
    kept = read_checks(models_dir)
    kept = kept[~kept["model"].isin(names)]
    pd.concat([kept, table] if len(kept) else [table], ignore_index=True).to_csv(check_path(models_dir), index=False)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.runtimes",
        description="Run every trained U-Net on every installed runtime and precision over a split, compare "
        f"the masks with Keras FP32 (pass: pixel agreement >= {MIN_AGREEMENT:.1%} and foreground IoU within "
        f"{MAX_IOU_GAP} of Keras) and update models/{CHECK_FILE}, which load_predictor's auto precision reads.",
    )
    parser.add_argument("--data", help=f"dataset folder (default: ${DATA_ENV} or {DEFAULT_DATA})")
    parser.add_argument("--split", choices=SPLITS, default="test", help="split to run on (default: test)")
    parser.add_argument("--models", nargs="+", help="trained model names (default: all of them)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="folder of trained U-Nets")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        table = check_runtimes(args.data, args.split, args.models, args.models_dir, not args.no_progress)
    except (FileNotFoundError, ModelLoadError) as exc:  # no dataset or split file, unknown or broken model
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {check_path(args.models_dir)}", file=sys.stderr)
    print(f"{args.split} split, {table['photos'].iloc[0]} photos; {table['cpu'].iloc[0]}")
    shown = table.round({"agreement": 5, "worst_photo_agreement": 4, "fg_iou": 4, "keras_fg_iou": 4})
    columns = ["model", "runtime", "precision", "agreement", "worst_photo_agreement", "fg_iou", "keras_fg_iou"]
    print(format_table(shown, [*columns, "passed"], args.markdown))


if __name__ == "__main__":
    main()
