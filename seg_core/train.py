"""python -m seg_core.train: train a registered network from a recipe file and flags.

The library side is :mod:`seg_core.models.training`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from seg_core.core.paths import MODELS_DIR, RECIPES_DIR
from seg_core.data import leeds as data
from seg_core.models.losses import LOSSES
from seg_core.models.registry import list_models
from seg_core.models.training import RecipeError, load_recipe, recipe_argv, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seg_core.train", description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        type=Path,
        help=f"recipe file (TOML, e.g. {RECIPES_DIR.name}/unet-best.toml) whose keys are these options' "
        "names with _ for -; options given here override it",
    )
    p.add_argument("--model", choices=list_models(), help="registered architecture (required without --config)")
    p.add_argument("--name", help="output folder name under --out-dir (default: the model name)")
    p.add_argument("--out-dir", type=Path, default=MODELS_DIR)
    p.add_argument("--recipe", default="", help="one-line description stored in the model card")
    p.add_argument("--data", help=f"dataset folder (default: ${data.DATA_ENV} or ../shared/leedsbutterfly)")
    p.add_argument("--split", type=Path, default=data.SPLIT_FILE)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--schedule", choices=["constant", "cosine"], default="cosine")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--loss", choices=sorted(LOSSES), default="bce_dice")
    p.add_argument("--no-augment", action="store_true", help="train on plainly resized photos")
    p.add_argument(
        "--augment",
        choices=["basic", "robust"],
        default="basic",
        help="basic: crops, flips, colour jitter; robust: also turns, small/several butterflies, sheets, "
        "blur, exposure, colour cast, greyscale, noise, JPEG",
    )
    p.add_argument(
        "--augment-strength",
        type=float,
        default=1.0,
        help="scale every robust transform's chance (below 1: more ordinary-looking samples)",
    )
    p.add_argument(
        "--grey-chance",
        type=float,
        help="chance of a black-and-white sample, instead of the preset's (after --augment-strength)",
    )
    p.add_argument(
        "--recolour",
        type=float,
        help="chance of a recoloured sample: a hue turned anywhere on the circle or the colour channels "
        "reordered (colours Leeds lacks); default: none",
    )
    p.add_argument(
        "--robust-val",
        action="store_true",
        help="also validate on robust-augmented val photos (fixed seed) and keep the best mean IoU",
    )
    p.add_argument(
        "--recolour-val",
        action="store_true",
        help="also validate on recoloured val photos (a hue turn or a channel order each, fixed seed) "
        "and keep the best mean IoU",
    )
    p.add_argument("--init", type=Path, help="start from the weights in this model folder (fine-tuning)")
    p.add_argument("--patience", type=int, default=30, help="early-stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--size", type=int, help="override the input size (tiny test runs)")
    p.add_argument("--limit", type=int, help="use only the first N train and val photos")
    p.add_argument("--workers", type=int, default=2, help="threads (or processes) preparing batches")
    p.add_argument(
        "--multiprocessing",
        action="store_true",
        help="prepare batches in worker processes instead of threads: the robust augmentation is "
        "Python-heavy, so threads leave a many-core machine's cores idle",
    )
    p.add_argument(
        "--time-limit", type=float, help="stop (keeping the best checkpoint) before this many seconds; 0: no limit"
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line, reading ``--config``'s recipe first so the options given override it."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    config = parser.parse_known_args(argv)[0].config
    if config is not None:
        try:
            argv = recipe_argv(load_recipe(config)) + argv
        except RecipeError as exc:
            parser.error(str(exc))
    args = parser.parse_args(argv)
    if args.model is None:
        parser.error("--model is required (or a --config recipe that sets model)")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        train(parse_args(argv))
    except data.DatasetNotFoundError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
