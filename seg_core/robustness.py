"""python -m seg_core.robustness: every model under every condition (see :mod:`seg_core.evaluation.robustness`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seg_core.data.leeds import DATA_ENV, SPLIT_FILE, SPLITS, DatasetNotFoundError, load_split_photos
from seg_core.evaluation.robustness import (
    CONDITIONS,
    ROBUSTNESS_FILE,
    SETTINGS,
    run_models,
    summarize,
    write_robustness,
)
from seg_core.runtime.base import ModelLoadError
from seg_core.runtime.registry import available_predictors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seg_core.robustness", description=__doc__.splitlines()[0])
    p.add_argument("--data", help=f"dataset folder (default: ${DATA_ENV} or ../shared/leedsbutterfly)")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--split-file", type=Path, default=SPLIT_FILE)
    p.add_argument("--models", nargs="+", help="models to run (default: every U-Net and baseline)")
    p.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), help="conditions (default: all)")
    p.add_argument("--limit", type=int, help="only the first N photos of the split")
    p.add_argument(
        "--ablation",
        action="store_true",
        help=f"also run {', '.join(list(SETTINGS)[1:])} for the first model (second look and TTA measured)",
    )
    p.add_argument("--out", type=Path, default=ROBUSTNESS_FILE, help="CSV to write")
    p.add_argument(
        "--update",
        action="store_true",
        help="keep the rows already in --out and replace only those of the models and conditions run now",
    )
    p.add_argument("--list", action="store_true", help="print the conditions with their strengths and exit")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.list:
        for c in CONDITIONS.values():
            print(f"{c.name:14} {c.label:26} {c.description}")
        return
    try:
        samples, images, masks = load_split_photos(args.data, args.split, args.split_file, args.limit)
    except DatasetNotFoundError as exc:
        sys.exit(f"error: {exc}")
    ids, pairs = [s.id for s in samples], list(zip(images, masks, strict=True))
    names = args.models or available_predictors()
    try:
        df = run_models(names, args.conditions or list(CONDITIONS), ids, pairs, args.ablation)
    except ModelLoadError as exc:
        sys.exit(f"error: {exc}")
    df = write_robustness(df, args.out, args.update)
    summary = summarize(df)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {len(df)} rows to {args.out}")


if __name__ == "__main__":
    main()
