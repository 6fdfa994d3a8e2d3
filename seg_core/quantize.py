"""python -m seg_core.quantize: make each trained model's INT8 version (see :mod:`seg_core.runtime.quantize`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seg_core.core.config import is_blend
from seg_core.core.paths import MODELS_DIR
from seg_core.data.leeds import DATA_ENV, DatasetNotFoundError, load_split_photos
from seg_core.runtime.base import ModelLoadError
from seg_core.runtime.quantize import quantize
from seg_core.runtime.registry import trained_models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.quantize",
        description="Make the INT8 version of trained U-Nets (NNCF post-training quantisation on train photos).",
    )
    parser.add_argument("--models", nargs="+", help="trained model names (default: all)")
    parser.add_argument("--data", help=f"Leeds-layout dataset folder (default: ${DATA_ENV} or ../shared)")
    parser.add_argument("--photos", type=int, help="calibrate on the train split's first N photos (default: all)")
    parser.add_argument("--models-dir", default=str(MODELS_DIR), help="folder of trained U-Nets")
    args = parser.parse_args(argv)
    try:
        # Blends have no INT8 version of their own (quantise their members).
        every = trained_models(args.models_dir)
        names = args.models or [n for n in every if not is_blend(Path(args.models_dir) / n)]
        _, photos, _ = load_split_photos(args.data, "train", limit=args.photos)
        if not photos:
            raise DatasetNotFoundError("no readable train photos")
        for name in names:
            folder = quantize(name, photos, args.models_dir)
            print(
                f"{name}: INT8 model in {folder} ({len(photos)} calibration photos); "
                f"check it with `python -m seg_core.runtimes --models {name}`"
            )
    except (ModelLoadError, DatasetNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
