"""python -m seg_core.adapt: teach a trained model your species by fine-tuning a copy on a collection.

The collection is a folder holding images/ (photos) and masks/ (masks with the same file names). The
new model folder appears beside the others, so every model picker, the API and the batch CLI offer it.

Example (ten minutes on a 2-core CPU, the default)::

    python -m seg_core.adapt --base unet-best --folder ~/moths --name moths --minutes 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from seg_core.core.paths import MODELS_DIR
from seg_core.data.collections import CollectionError
from seg_core.data.leeds import DATA_ENV, SPLIT_FILE
from seg_core.models.adapt import GUARDS, AdaptError, Progress, read_recipe
from seg_core.runtime.base import DEFAULT_ALIAS, DEFAULT_MODEL
from seg_core.service.teach import adapt_collection

#: Settings the command line may change, with the recipe keys they set.
SETTINGS = ("lr", "guard", "leeds_share", "distill_weight", "seed", "size", "max_epochs")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m seg_core.adapt",
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m seg_core.adapt --base unet-best --folder ~/moths --name moths --minutes 10",
    )
    p.add_argument(
        "--base",
        help=f"model to start from: a name or a model folder (default: the recipe's, else {DEFAULT_MODEL}; "
        f"{DEFAULT_ALIAS.upper()} names the default model)",
    )
    p.add_argument("--folder", type=Path, required=True, help="the collection: a folder with images/ and masks/")
    p.add_argument("--name", required=True, help="the new model's name (a folder name no model uses yet)")
    p.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="the whole run's time, training and checks together (default 10, enough on a 2-core CPU)",
    )
    p.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where the new model goes (default models/)")
    p.add_argument("--data", help=f"Leeds dataset folder (default: ${DATA_ENV} or ../shared/leedsbutterfly)")
    p.add_argument("--split", type=Path, default=SPLIT_FILE, help="the Leeds split file")
    p.add_argument("--recipe", type=Path, help="settings from an earlier fine-tune's recipe.toml (options override)")
    p.add_argument(
        "--guard",
        choices=GUARDS,
        help="against forgetting: replay Leeds photos, distil the base's answers, none; auto (default): "
        "replay when the dataset is found",
    )
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-4)")
    p.add_argument("--leeds-share", type=float, help="share of each batch from Leeds photos with replay (default 0.5)")
    p.add_argument("--distill-weight", type=float, help="weight of the base's answers with distillation (0.5)")
    p.add_argument("--seed", type=int, help="random seed (default 42)")
    p.add_argument("--size", type=int, help="override the input size (tiny test runs)")
    p.add_argument("--max-epochs", type=int, help="stop after this many epochs even with time left")
    p.add_argument(
        "--int8",
        action="store_true",
        help="also make an INT8 version with NNCF and check it (about a minute more on a 2-core CPU, taken from "
        "training; it may not pass); without it the BF16 check runs where the CPU has BF16",
    )
    p.add_argument("--json", action="store_true", help="print progress as JSON lines (for programs)")
    p.add_argument("--nice", type=int, default=0, help="lower this process's CPU priority by N (0: as started)")
    return p


def settings_of(args: argparse.Namespace) -> tuple[str, dict]:
    """The base model and the settings to change: the recipe's, then the options given."""
    base, settings = read_recipe(args.recipe) if args.recipe else (None, {})
    # The budget comes from --minutes, never from an earlier run's recipe.
    settings.pop("seconds", None)
    given = {key: getattr(args, key) for key in SETTINGS if getattr(args, key) is not None}
    return args.base or base or DEFAULT_MODEL, settings | given


def printer(as_json: bool):
    """How progress is shown: one JSON object a line, or ``[m:ss] message``."""

    def show(progress: Progress) -> None:
        if as_json:
            print(json.dumps(dataclasses.asdict(progress)), flush=True)
        else:
            minutes, seconds = divmod(int(progress.elapsed), 60)
            print(f"[{minutes}:{seconds:02d}] {progress.message}", flush=True)

    return show


def fail(message: str, as_json: bool) -> None:
    """Say why the run cannot go on and exit with status 2."""
    if as_json:
        print(json.dumps({"stage": "error", "elapsed": 0, "budget": 0, "message": message}), flush=True)
    else:
        print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv: Sequence[str] | None = None) -> None:
    # The time budget counts from the process's start, so starting Python and TensorFlow is inside it.
    started_at = psutil.Process().create_time() if argv is None else time.time()
    args = build_parser().parse_args(argv)
    if args.nice:
        os.nice(args.nice)
    show = printer(args.json)
    try:
        base, settings = settings_of(args)
        outcome = adapt_collection(
            base,
            args.folder,
            args.name,
            args.minutes,
            args.models_dir,
            args.data,
            args.split,
            settings,
            args.int8,
            started_at,
            show,
            command=["python", "-m", "seg_core.adapt", *(sys.argv[1:] if argv is None else argv)],
        )
    except (AdaptError, CollectionError) as exc:
        fail(str(exc), args.json)
    except KeyboardInterrupt:
        print("interrupted: nothing was kept", file=sys.stderr)
        sys.exit(130)
    card = outcome.card
    before, after = card["validation"]["before"], card["validation"]["after"]
    lines = [f"wrote {outcome.folder} in {card['total_seconds'] / 60:.1f} min"]
    lines += [
        f"{key.removesuffix('_iou')} IoU per photo at {card['input_size']} px: {before[key]:.4f} -> {after[key]:.4f}"
        for key in before
        if key.endswith("_iou")
    ]
    if "comparison" in card:
        scores = ", ".join(f"{model} {value:.4f}" for model, value in card["comparison"]["iou_per_photo"].items())
        lines.append(f"held-out photos at full size (default settings): {scores}")
    if not args.json:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
