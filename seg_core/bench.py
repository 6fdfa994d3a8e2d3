"""python -m seg_core.bench: latency, throughput, load time, size and memory of every model.

The library side is :mod:`seg_core.evaluation.bench`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from seg_core.core.imaging import InvalidImageError, load_image
from seg_core.core.paths import MODELS_DIR
from seg_core.data.leeds import DATA_ENV, SPLITS, DatasetNotFoundError
from seg_core.evaluation.bench import (
    BATCH,
    COLUMNS,
    REFERENCE_ARCH,
    SAMPLE_PHOTO,
    default_speedup,
    run_benchmarks,
    split_photos,
)
from seg_core.evaluation.evaluate import format_table
from seg_core.evaluation.results import BENCH_FILE
from seg_core.runtime.base import ModelLoadError
from seg_core.runtime.engines import RUNTIMES


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
    parser.add_argument(
        "--image", nargs="+", type=Path, default=[SAMPLE_PHOTO], help="photo(s) to segment (default: a sample)"
    )
    parser.add_argument(
        "--split",
        choices=SPLITS,
        help="segment this split's photos of the dataset instead (e.g. test: the typical photo)",
    )
    parser.add_argument("--data", help=f"Leeds-layout dataset folder for --split (default: ${DATA_ENV} or ../shared)")
    parser.add_argument("--out", type=Path, default=BENCH_FILE, help="CSV to write (default: models/bench.csv)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="folder of trained U-Nets")
    parser.add_argument("--no-reference", action="store_true", help=f"skip the {REFERENCE_ARCH} reference row")
    parser.add_argument(
        "--runtimes", nargs="+", choices=list(RUNTIMES), help="U-Net runtimes to measure (default: all installed)"
    )
    parser.add_argument(
        "--update", action="store_true", help="keep the other models' rows in --out; replace only the models run now"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    # TensorFlow's C++ start-up notices would bury the progress bars; an explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if min(args.repeats, args.batch_repeats) < 1 or args.warmup < 0:
        parser.error("--repeats and --batch-repeats must be at least 1, --warmup at least 0")
    photos, label = args.image, None
    try:
        if args.split:
            photos, label = split_photos(args.data, args.split), f"{args.split} split"
        for path in photos:
            load_image(path)
    except InvalidImageError as exc:
        parser.error(f"--image {path}: {exc}")
    except DatasetNotFoundError as exc:
        parser.error(f"--split {args.split}: {exc}")
    try:
        table = run_benchmarks(
            args.models,
            args.repeats,
            args.batch_repeats,
            args.warmup,
            photos,
            args.out,
            not args.no_reference,
            args.models_dir,
            not args.no_progress,
            args.runtimes,
            label,
            args.update,
        )
    except ModelLoadError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {args.out}", file=sys.stderr)
    print(f"{table['machine'].iloc[0]}, {table['measured_at'].iloc[0]}; photos: {table['photos'].iloc[0]}")
    print(format_table(table, COLUMNS, args.markdown))
    speedup = default_speedup(table)
    if speedup:
        print(speedup)


if __name__ == "__main__":
    main()
