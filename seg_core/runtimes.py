"""python -m seg_core.runtimes: the precision check of every model (see :mod:`seg_core.evaluation.precision`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from seg_core.core.paths import MODELS_DIR
from seg_core.data.leeds import (
    DATA_ENV,
    DEFAULT_DATA,
    SPLITS,
)
from seg_core.evaluation.evaluate import format_table
from seg_core.evaluation.precision import check_runtimes
from seg_core.runtime.base import ModelLoadError
from seg_core.runtime.checks import CHECK_FILE, MAX_IOU_GAP, MIN_AGREEMENT, check_path


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
