"""python -m seg_core.robustness: every model under every condition (see :mod:`seg_core.evaluation.robustness`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from seg_core.data.leeds import DATA_ENV, SPLIT_FILE, SPLITS, DatasetNotFoundError, load_split_photos
from seg_core.evaluation.robustness import (
    COLUMNS,
    CONDITIONS,
    ROBUSTNESS_FILE,
    SETTINGS,
    load_robustness,
    run_condition,
    summarize,
)
from seg_core.runtime.base import ModelLoadError
from seg_core.runtime.registry import available_predictors, load_predictor


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
    conditions = args.conditions or list(CONDITIONS)
    rows: list[dict] = []
    for model_index, model in enumerate(names):
        try:
            predictor = load_predictor(model)
        except ModelLoadError as exc:
            sys.exit(f"error: {exc}")
        settings = list(SETTINGS) if args.ablation and model_index == 0 and predictor.kind == "unet" else ["default"]
        jobs = [(c, s) for s in settings for c in conditions]
        for condition, setting in tqdm(jobs, desc=model, file=sys.stderr):
            rows += run_condition(predictor, condition, ids, pairs, setting)
    df = pd.DataFrame(rows, columns=COLUMNS)
    if args.update and args.out.is_file():
        kept = load_robustness(args.out)
        replaced = kept["model"].isin(names) & kept["condition"].isin(conditions)
        df = pd.concat([kept[~replaced], df], ignore_index=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out, index=False)
    summary = summarize(df)
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"wrote {len(df)} rows to {args.out}")


if __name__ == "__main__":
    main()
