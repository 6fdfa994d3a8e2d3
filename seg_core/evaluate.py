"""python -m seg_core.evaluate: every model on a split, written to ``models/eval_<split>.csv``.

The library side is :mod:`seg_core.evaluation.evaluate`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from seg_core.core.paths import MODELS_DIR
from seg_core.data.leeds import (
    DATA_ENV,
    DEFAULT_DATA,
    SPLIT_FILE,
    SPLITS,
)
from seg_core.evaluation.evaluate import SUMMARY_LABELS, SUMMARY_THRESHOLD, eval_path, evaluate, format_table, summarize
from seg_core.evaluation.results import (
    ResultsFormatError,
    load_eval,
)
from seg_core.runtime.base import ModelLoadError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.evaluate",
        description="Evaluate every model (trained U-Nets and classical baselines) on a split of the Leeds "
        "dataset at each photo's own resolution; write eval_<split>.csv and print a summary at threshold 0.5.",
    )
    parser.add_argument("--data", help=f"dataset folder (default: ${DATA_ENV} or {DEFAULT_DATA})")
    parser.add_argument("--split", nargs="+", choices=SPLITS, default=["test"], help="split(s) to evaluate")
    parser.add_argument("--split-file", type=Path, default=SPLIT_FILE, help="split JSON (default: models/split.json)")
    parser.add_argument("--models", nargs="+", help="predictor names (default: all of them)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="folder of trained U-Nets")
    parser.add_argument("--out-dir", type=Path, default=MODELS_DIR, help="folder for eval_<split>.csv")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a Markdown table")
    parser.add_argument(
        "--summary-only", action="store_true", help="summarise the existing eval_<split>.csv without evaluating"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = parser.parse_args(argv)
    # TensorFlow's C++ start-up notices would bury the progress bars; an explicit setting wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for split in args.split:
        path = eval_path(args.out_dir, split)
        if not args.summary_only:
            try:
                path = evaluate(
                    args.data,
                    split,
                    args.split_file,
                    args.models,
                    args.out_dir,
                    args.models_dir,
                    progress=not args.no_progress,
                )
            except (FileNotFoundError, ModelLoadError) as exc:  # no dataset or split file, unknown model
                parser.exit(2, f"error: {exc}\n")
            print(f"wrote {path}", file=sys.stderr)
        elif not path.is_file():
            parser.exit(2, f"error: {path} does not exist; run without --summary-only first\n")
        try:
            results = load_eval(path)
        except ResultsFormatError as exc:  # e.g. a file from before the boundary columns
            parser.exit(2, f"error: {exc}\n")
        print(f"{split} split, threshold {SUMMARY_THRESHOLD} (whole-set metrics: counts summed over photos)")
        print(format_table(summarize(results), SUMMARY_LABELS, args.markdown))


if __name__ == "__main__":
    main()
