"""Benchmark every model on this machine: latency, throughput, load time, size, memory.

Each trained U-Net is measured on every installed runtime and precision (see
:mod:`seg_core.runtime.engines`); the ``default`` column marks what
``load_predictor`` picks. Each row is measured in a fresh process so its peak
memory and load time are its own (no weights, graphs or caches left over from
another row); load time includes the warm-up, and OpenVINO exports are built
beforehand, as the app finds them after its first start. The CPU's name and
its BF16/AMX flags are recorded with the rows. The
reference row is the registry's ``unet_classic`` (the original U-Net width)
with random weights, served through the same :class:`UNetPredictor` code path
as the trained models, in the same run.

    python -m seg_core.bench --repeats 30
"""

from __future__ import annotations

import datetime
import itertools
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from seg_core.core.config import WEIGHTS_FILE
from seg_core.core.imaging import load_image
from seg_core.core.paths import MODELS_DIR, SAMPLES_DIR
from seg_core.data.leeds import DatasetNotFoundError, load_split_samples, resolve_data_dir
from seg_core.evaluation.results import BENCH_COLUMNS, BENCH_FILE, load_bench
from seg_core.runtime.base import DEFAULT_MODEL, Predictor, threshold_mask
from seg_core.runtime.checks import AUTO, plan
from seg_core.runtime.engines import RUNTIME_PRECISIONS, RUNTIMES, available_runtimes, cpu_flags
from seg_core.runtime.export import folder_digest
from seg_core.runtime.int8 import has_int8
from seg_core.runtime.predictor import UNetPredictor
from seg_core.runtime.registry import available_predictors, baseline_names, load_predictor

REFERENCE_ARCH = "unet_classic"
REFERENCE_NAME = "unet_classic (random weights, reference)"
#: A typical Leeds photo (500 x 332) from the test split.
SAMPLE_PHOTO = SAMPLES_DIR / "images" / "0020008.jpg"
BATCH = 8
#: What the runtime and precision columns say for classical baselines.
BASELINE_RUNTIME, BASELINE_PRECISION = "opencv", "-"
#: The columns of the printed table (headers and formats: seg_core.core.labels): the
#: file's columns less those that say where and when the run was, which the
#: table's caption gives once.
COLUMNS = [c for c in BENCH_COLUMNS if c not in ("reference", "photos", "machine", "cpu_flags", "measured_at")]


def reference_predictor(arch: str = REFERENCE_ARCH, **overrides) -> UNetPredictor:
    """A registry U-Net with random weights behind the trained models' predictor code.

    Args:
        arch: registry name (default ``unet_classic``).
        **overrides: ``UNetConfig`` fields to change (tests use a small input size).
    """
    from seg_core.models.registry import build_model, model_config

    config = model_config(arch, **overrides)
    return UNetPredictor.from_model(build_model(config, arch), config, REFERENCE_NAME)


def model_size(predictor: Predictor) -> tuple[int, float]:
    """(parameter count, weights file MB); baselines have neither.

    A reference model without a folder is saved to a temporary file to measure
    the size its weights file would have.
    """
    if not isinstance(predictor, UNetPredictor):
        return 0, 0.0
    info = predictor.info()
    if info["file_mb"] is not None:
        return info["parameters"], info["file_mb"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS_FILE
        predictor.model.save_weights(path)
        return info["parameters"], round(path.stat().st_size / 1e6, 2)


def predict_many(predictor: Predictor, images: list[np.ndarray]) -> list[np.ndarray]:
    """One forward pass for a U-Net batch; a plain loop for predictors without batching."""
    if isinstance(predictor, UNetPredictor):
        return predictor.predict_batch(images)
    return [predictor.predict_proba(image) for image in images]


def run_times(fn: Callable[[], object], repeats: int) -> np.ndarray:
    """Wall-clock seconds of ``repeats`` calls of ``fn``."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
    return np.asarray(seconds)


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (the kernel's high-water mark), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1e6 if sys.platform == "darwin" else peak * 1024 / 1e6  # bytes on macOS, KiB elsewhere


def measure(
    name: str,
    photos: Sequence[str | os.PathLike] = (SAMPLE_PHOTO,),
    repeats: int = 30,
    batch_repeats: int = 5,
    warmup: int = 3,
    models_dir: str | os.PathLike = MODELS_DIR,
    runtime: str = "auto",
    precision: str = "auto",
) -> dict:
    """Benchmark one predictor in this process (see :func:`run_benchmarks` for a fresh one).

    Latency is end to end from the decoded RGB array to the thresholded mask,
    after ``warmup`` untimed calls and one untimed batch (graph tracing, caches).
    Timed calls go through ``photos`` in turn, each photo at least once, so with
    many photos the median is the typical photo's (some photos take a second
    look, most do not). Peak RSS is this process's high-water mark, so it is
    the model's own only in a fresh process.

    Args:
        name: a name from ``available_predictors()`` or ``REFERENCE_NAME``.
        photos: the photos to segment.
        repeats: timed single-photo calls (at least one per photo).
        batch_repeats: timed batches of ``BATCH`` photos (the first ones, repeated if fewer).
        warmup: untimed single-photo calls first (0 also skips the untimed batch).
        models_dir: folder of trained U-Nets.
        runtime, precision: for a U-Net, as :func:`load_predictor` takes them,
            except that a concrete precision is measured whether or not it is verified.

    Returns:
        A row with the columns of ``BENCH_COLUMNS`` except ``default``, ``machine``,
        ``cpu_flags`` and ``measured_at``.

    Raises:
        ModelLoadError: unknown or broken model.
    """
    images = [load_image(path) for path in photos]
    baseline = name in baseline_names()
    if name == REFERENCE_NAME or (not baseline and runtime == "keras"):
        import keras  # noqa: F401  (the library import is not part of a model's load time)
    started = time.perf_counter()
    if name == REFERENCE_NAME:
        predictor = reference_predictor()
    elif baseline or AUTO in (runtime, precision):
        predictor = load_predictor(name, models_dir, runtime, precision)
    else:
        predictor = UNetPredictor(Path(models_dir) / name, runtime, precision)
    load_s = time.perf_counter() - started
    turn = itertools.cycle(images)

    def single() -> None:
        threshold_mask(predictor.predict_proba(next(turn)))

    def batch() -> None:
        for prob in predict_many(predictor, [images[k % len(images)] for k in range(BATCH)]):
            threshold_mask(prob)

    run_times(single, warmup)
    run_times(batch, min(warmup, 1))
    turn = itertools.cycle(images)  # every photo gets its share of the timed calls
    latency_ms = run_times(single, max(repeats, len(images))) * 1000.0
    batch_s = run_times(batch, batch_repeats)
    peak = peak_rss_mb()
    parameters, file_mb = model_size(predictor)
    info = predictor.info()
    return {
        "model": name,
        "kind": predictor.kind,
        "runtime": info.get("runtime", BASELINE_RUNTIME),
        "precision": info.get("precision", BASELINE_PRECISION),
        "reference": name == REFERENCE_NAME,
        "parameters": parameters,
        "file_mb": file_mb,
        "load_s": round(load_s, 3),
        "latency_median_ms": round(float(np.median(latency_ms)), 2),
        "latency_p95_ms": round(float(np.percentile(latency_ms, 95)), 2),
        "throughput_batch8_ips": round(BATCH / float(np.median(batch_s)), 2),
        "peak_rss_mb": round(peak, 1),
    }


def split_photos(data_dir: str | os.PathLike | None, split: str) -> list[Path]:
    """Paths of a dataset split's photos (``models/split.json``), in its order.

    Raises:
        DatasetNotFoundError: no dataset, or the split selects no photo in it.
    """
    samples = load_split_samples(data_dir, split)
    if not samples:
        raise DatasetNotFoundError(f"the {split} split selects no photo in {resolve_data_dir(data_dir)}")
    return [sample.image_path for sample in samples]


def photos_label(photos: Sequence[str | os.PathLike]) -> str:
    """What the ``photos`` column says: the photo's name, or how many photos and the folder they came from."""
    paths = [Path(p) for p in photos]
    if len(paths) == 1:
        return paths[0].name
    return f"{len(paths)} photos from {paths[0].parent.name}/"


def machine_description() -> str:
    """Short text naming the CPU and the cores this process may use."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores"


def jobs(names: list[str], runtimes: list[str], models_dir: str | os.PathLike) -> list[tuple[str, str, str]]:
    """(model, runtime, precision) of every row: each U-Net on each runtime and precision it runs here.

    BF16 rows are measured only on a CPU with BF16 instructions (elsewhere
    OpenVINO would run FP32 and the row would repeat the FP32 one), INT8 rows
    only for models with a current INT8 version (see :mod:`seg_core.runtime.quantize`).
    """
    has_bf16 = bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags()))
    unet_runs = [
        (runtime, precision)
        for runtime in reversed(RUNTIMES)  # the Keras reference first
        if runtime in runtimes
        for precision in reversed(RUNTIME_PRECISIONS[runtime])
        if precision != "bf16" or has_bf16
    ]
    rows = []
    for name in names:
        if name in baseline_names():
            rows.append((name, BASELINE_RUNTIME, BASELINE_PRECISION))
        elif name == REFERENCE_NAME:
            rows.append((name, "keras", "fp32"))
        else:
            int8 = has_int8(Path(models_dir) / name)
            rows += [(name, r, p) for r, p in unet_runs if p != "int8" or int8]
    return rows


def default_run(name: str, models_dir: str | os.PathLike) -> tuple[str, str]:
    """(runtime, precision) that ``load_predictor(name)`` picks here."""
    if name in baseline_names():
        return BASELINE_RUNTIME, BASELINE_PRECISION
    if name == REFERENCE_NAME:
        return "", ""
    try:
        digest = folder_digest(Path(models_dir) / name)
    except OSError:  # unknown or incomplete model: measuring it reports the error
        digest = None
    return plan(name, digest, AUTO, AUTO, models_dir)[0]


def _prepare_export(name: str, models_dir: str | os.PathLike) -> None:
    """Build the cached OpenVINO export, so measured loads find it (and never import TensorFlow for it)."""
    UNetPredictor(Path(models_dir) / name, "openvino", "fp32")


def run_benchmarks(
    models: list[str] | None = None,
    repeats: int = 30,
    batch_repeats: int = 5,
    warmup: int = 3,
    photos: Sequence[str | os.PathLike] = (SAMPLE_PHOTO,),
    out: str | os.PathLike = BENCH_FILE,
    reference: bool = True,
    models_dir: str | os.PathLike = MODELS_DIR,
    progress: bool = True,
    runtimes: list[str] | None = None,
    label: str | None = None,
    update: bool = False,
) -> pd.DataFrame:
    """Benchmark each model on each runtime and precision in its own fresh process; write ``out``.

    Args:
        models: predictor names (default: every one of ``available_predictors()``).
        repeats, batch_repeats, warmup: see :func:`measure`.
        photos: the photos to segment.
        out: CSV to write (``models/bench.csv`` by default).
        reference: add the random-weight ``unet_classic`` reference row.
        models_dir: folder of trained U-Nets.
        progress: show a progress bar on stderr.
        runtimes: U-Net runtimes to measure (default: every installed one, see :func:`jobs`).
        label: what the ``photos`` column says (default: :func:`photos_label`).
        update: keep the rows of the other models already in ``out`` (each row says where and
            when it was measured), replacing only those of the models run now.

    Returns:
        The rows written, columns ``BENCH_COLUMNS`` of :mod:`seg_core.evaluation.results`;
        ``default`` marks the runtime and precision ``load_predictor`` picks.

    Raises:
        ModelLoadError: unknown or broken model.
    """
    names = list(models or available_predictors(models_dir)) + ([REFERENCE_NAME] if reference else [])
    todo = jobs(names, list(runtimes or available_runtimes()), models_dir)
    defaults = {name: default_run(name, models_dir) for name in names}
    # "spawn" starts a clean interpreter: nothing of the parent's imports or memory is inherited.
    context = multiprocessing.get_context("spawn")
    rows = []
    with tqdm(todo, desc="benchmark", file=sys.stderr, disable=not progress) as bar:
        for name, runtime, precision in bar:
            bar.set_postfix_str(f"{name} {runtime} {precision}")
            if runtime == "openvino":
                with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                    pool.submit(_prepare_export, name, models_dir).result()
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                args = (name, photos, repeats, batch_repeats, warmup, models_dir, runtime, precision)
                row = pool.submit(measure, *args).result()
            rows.append(row | {"default": defaults[name] == (row["runtime"], row["precision"])})
    # Each model's default row first: readers that take a model's first row get what the app runs.
    rows.sort(key=lambda row: (names.index(row["model"]), not row["default"]))
    table = pd.DataFrame(rows).assign(
        photos=label or photos_label(photos),
        machine=machine_description(),
        cpu_flags=" ".join(cpu_flags()) or "none",
        measured_at=datetime.date.today().isoformat(),
    )
    table = table[BENCH_COLUMNS]
    if update and Path(out).is_file():
        kept = load_bench(out)
        table = pd.concat([kept[~kept["model"].isin(names)], table], ignore_index=True)[BENCH_COLUMNS]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def default_speedup(table: pd.DataFrame, name: str = DEFAULT_MODEL) -> str | None:
    """A line comparing the default predictor's median latency with the reference's (None without both)."""
    default = table[(table["model"] == name) & table["default"]]
    reference = table[table["reference"]]
    if default.empty or reference.empty:
        return None
    mine, theirs = default.iloc[0], reference.iloc[0]
    ratio = theirs["latency_median_ms"] / mine["latency_median_ms"]
    return (
        f"default predictor {name} ({mine['runtime']} {mine['precision']}): {mine['latency_median_ms']:.1f} ms, "
        f"{ratio:.1f}x faster than the {REFERENCE_ARCH} reference ({theirs['latency_median_ms']:.1f} ms)"
    )
