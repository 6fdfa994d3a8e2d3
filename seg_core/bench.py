"""Benchmark every model on this machine: latency, throughput, load time, size, memory.

Each model is measured in a fresh process so its peak memory and load time are
its own (no weights, graphs or caches left over from another model). The
reference row is the registry's ``unet_classic`` (the original U-Net width)
with random weights, served through the same :class:`UNetPredictor` code path
as the trained models, in the same run.

    python -m seg_core.bench --repeats 30
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from seg_core.config import WEIGHTS_FILE
from seg_core.data import REPO_ROOT
from seg_core.evaluate import format_table
from seg_core.imaging import InvalidImageError, load_image
from seg_core.inference import (
    MODELS_DIR,
    ModelLoadError,
    Predictor,
    UNetPredictor,
    available_predictors,
    baseline_names,
    load_predictor,
    threshold_mask,
)
from seg_core.results import BENCH_COLUMNS, BENCH_FILE

REFERENCE_ARCH = "unet_classic"
REFERENCE_NAME = "unet_classic (random weights, reference)"
#: A typical Leeds photo (500 x 332) from the test split.
SAMPLE_PHOTO = REPO_ROOT / "samples" / "images" / "0020008.jpg"
BATCH = 8
LABELS = {
    "model": "model",
    "kind": "kind",
    "parameters": "parameters",
    "file_mb": "weights MB",
    "load_s": "load s",
    "latency_median_ms": "median ms",
    "latency_p95_ms": "p95 ms",
    "throughput_batch8_ips": "batch-8 img/s",
    "peak_rss_mb": "peak RSS MB",
}
DECIMALS = {"file_mb": 2, "load_s": 2, "latency_median_ms": 1, "latency_p95_ms": 1, "throughput_batch8_ips": 1}
DECIMALS |= {"peak_rss_mb": 0}


def reference_predictor(arch: str = REFERENCE_ARCH, **overrides) -> UNetPredictor:
    """A registry U-Net with random weights behind the trained models' predictor code.

    Args:
        arch: registry name (default ``unet_classic``).
        **overrides: ``UNetConfig`` fields to change (tests use a small input size).
    """
    from seg_core.models import build_unet, model_config

    config = model_config(arch, **overrides)
    return UNetPredictor.from_model(build_unet(config, name=arch), config, REFERENCE_NAME)


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
    image_path: str | os.PathLike = SAMPLE_PHOTO,
    repeats: int = 30,
    batch_repeats: int = 5,
    warmup: int = 3,
    models_dir: str | os.PathLike = MODELS_DIR,
) -> dict:
    """Benchmark one predictor in this process (see :func:`run_benchmarks` for a fresh one).

    Latency is end to end from the decoded RGB array to the thresholded mask,
    after ``warmup`` untimed calls and one untimed batch (graph tracing, caches). Peak RSS is this
    process's high-water mark, so it is the model's own only in a fresh process.

    Args:
        name: a name from ``available_predictors()`` or ``REFERENCE_NAME``.
        image_path: the photo to segment.
        repeats: timed single-photo calls.
        batch_repeats: timed batches of ``BATCH`` copies of the photo.
        warmup: untimed single-photo calls first (0 also skips the untimed batch).
        models_dir: folder of trained U-Nets.

    Returns:
        A row with the columns of ``BENCH_COLUMNS`` except ``machine`` and ``measured_at``.

    Raises:
        ModelLoadError: unknown or broken model.
    """
    image = load_image(image_path)
    if name == REFERENCE_NAME or name not in baseline_names():
        import keras  # noqa: F401  (the library import is not part of a model's load time)
    started = time.perf_counter()
    predictor = reference_predictor() if name == REFERENCE_NAME else load_predictor(name, models_dir)
    load_s = time.perf_counter() - started

    def single() -> None:
        threshold_mask(predictor.predict_proba(image))

    def batch() -> None:
        for prob in predict_many(predictor, [image] * BATCH):
            threshold_mask(prob)

    run_times(single, warmup)
    run_times(batch, min(warmup, 1))
    latency_ms = run_times(single, repeats) * 1000.0
    batch_s = run_times(batch, batch_repeats)
    peak = peak_rss_mb()
    parameters, file_mb = model_size(predictor)
    return {
        "model": name,
        "kind": predictor.kind,
        "reference": name == REFERENCE_NAME,
        "parameters": parameters,
        "file_mb": file_mb,
        "load_s": round(load_s, 3),
        "latency_median_ms": round(float(np.median(latency_ms)), 2),
        "latency_p95_ms": round(float(np.percentile(latency_ms, 95)), 2),
        "throughput_batch8_ips": round(BATCH / float(np.median(batch_s)), 2),
        "peak_rss_mb": round(peak, 1),
    }


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


def run_benchmarks(
    models: list[str] | None = None,
    repeats: int = 30,
    batch_repeats: int = 5,
    warmup: int = 3,
    image_path: str | os.PathLike = SAMPLE_PHOTO,
    out: str | os.PathLike = BENCH_FILE,
    reference: bool = True,
    models_dir: str | os.PathLike = MODELS_DIR,
    progress: bool = True,
) -> pd.DataFrame:
    """Benchmark each model in its own fresh process and write the table to ``out``.

    Args:
        models: predictor names (default: every one of ``available_predictors()``).
        repeats, batch_repeats, warmup: see :func:`measure`.
        image_path: the photo to segment.
        out: CSV to write (``models/bench.csv`` by default).
        reference: add the random-weight ``unet_classic`` reference row.
        models_dir: folder of trained U-Nets.
        progress: show a progress bar on stderr.

    Returns:
        The rows written, columns ``BENCH_COLUMNS`` of :mod:`seg_core.results`.

    Raises:
        ModelLoadError: unknown or broken model.
    """
    names = list(models or available_predictors(models_dir)) + ([REFERENCE_NAME] if reference else [])
    # "spawn" starts a clean interpreter: nothing of the parent's imports or memory is inherited.
    context = multiprocessing.get_context("spawn")
    rows = []
    with tqdm(names, desc="benchmark", file=sys.stderr, disable=not progress) as bar:
        for name in bar:
            bar.set_postfix_str(name)
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                args = (name, image_path, repeats, batch_repeats, warmup, models_dir)
                rows.append(pool.submit(measure, *args).result())
    table = pd.DataFrame(rows).assign(machine=machine_description(), measured_at=datetime.date.today().isoformat())
    table = table[BENCH_COLUMNS]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.bench",
        description="Benchmark every model on this machine (each in a fresh process): single-photo latency "
        f"(median, p95), batch-{BATCH} throughput, load time, parameters, weights size and peak RSS; "
        f"includes the random-weight {REFERENCE_ARCH} reference. Writes models/bench.csv.",
    )
    parser.add_argument("--models", nargs="+", help="predictor names (default: all of them)")
    parser.add_argument("--repeats", type=int, default=30, help="timed single-photo runs per model (default 30)")
    parser.add_argument("--batch-repeats", type=int, default=5, help=f"timed batches of {BATCH} per model (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--image", type=Path, default=SAMPLE_PHOTO, help="photo to segment (default: a sample)")
    parser.add_argument("--out", type=Path, default=BENCH_FILE, help="CSV to write (default: models/bench.csv)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="folder of trained U-Nets")
    parser.add_argument("--no-reference", action="store_true", help=f"skip the {REFERENCE_ARCH} reference row")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    # TensorFlow's C++ start-up notices would bury the progress bars; an explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if min(args.repeats, args.batch_repeats) < 1 or args.warmup < 0:
        parser.error("--repeats and --batch-repeats must be at least 1, --warmup at least 0")
    try:
        load_image(args.image)
    except InvalidImageError as exc:
        parser.error(f"--image {args.image}: {exc}")
    try:
        table = run_benchmarks(
            args.models,
            args.repeats,
            args.batch_repeats,
            args.warmup,
            args.image,
            args.out,
            not args.no_reference,
            args.models_dir,
            not args.no_progress,
        )
    except ModelLoadError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {args.out}", file=sys.stderr)
    print(f"{table['machine'].iloc[0]}, {table['measured_at'].iloc[0]}; photo {args.image.name}")
    print(format_table(table, LABELS, args.markdown, DECIMALS))


if __name__ == "__main__":
    main()
