"""Train a registered U-Net on the Leeds split and write weights plus a model card.

A committed model is retrained from its recipe file (flags given on the command
line override the file)::

    python -m seg_core.train --config recipes/unet-best.toml --data DIR

or from flags alone::

    python -m seg_core.train --model unet16 --name my-unet --loss bce_dice --epochs 150
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import logging
import math
import platform
import shlex
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from seg_core.core.config import CARD_FILE, HISTORY_FILE, NOTICE_FILE, WEIGHTS_FILE, save_config
from seg_core.core.imaging import preprocess, resize_mask
from seg_core.core.metrics import Confusion, all_metrics, confusion
from seg_core.core.paths import REPO_ROOT
from seg_core.data import leeds as data
from seg_core.data.augment import AugmentConfig, PhotoPool, augment_pair, recolour
from seg_core.models.losses import LOSSES
from seg_core.models.registry import create_model, model_config

log = logging.getLogger("seg_core.models.training")

#: Settings a recipe file may hold: what defines a model's training. Where this
#: machine keeps the photos and the outputs, and how many threads it uses, stay flags.
RECIPE_KEYS = (
    "model",
    "name",
    "recipe",
    "init",
    "augment",
    "no_augment",
    "augment_strength",
    "grey_chance",
    "recolour",
    "robust_val",
    "recolour_val",
    "loss",
    "epochs",
    "lr",
    "schedule",
    "weight_decay",
    "batch_size",
    "patience",
    "seed",
    "time_limit",
    "size",
)
#: Recipe keys that are on/off flags (``true`` or ``false`` in the file).
RECIPE_FLAGS = ("no_augment", "robust_val", "recolour_val")
#: Recipe keys holding paths, read relative to the repository root so a recipe works from any folder.
RECIPE_PATHS = ("init",)


class RecipeError(ValueError):
    """A recipe file cannot be read or holds settings that training does not know."""


class TrainSequence(keras.utils.PyDataset):
    """Batches of augmented (or plainly resized) training pairs.

    Each item's randomness is seeded from (seed, epoch, index), so a run is
    reproducible regardless of how worker threads interleave.
    """

    def __init__(self, images, masks, batch_size, size, augment, seed, **kwargs):
        super().__init__(**kwargs)
        self.images, self.masks = images, masks
        self.batch_size, self.size, self.augment, self.seed = batch_size, size, augment, seed
        self.epoch = 0
        self.order = np.random.default_rng((seed, 0)).permutation(len(images))
        self.pool = PhotoPool(images, masks)
        if augment is None:
            self.plain = [(preprocess(i, size), resize_mask(m, size)) for i, m in zip(images, masks, strict=False)]

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        ids = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        xs, ys = [], []
        for i in ids:
            if self.augment is None:
                x, y = self.plain[i]
            else:
                rng = np.random.default_rng((self.seed, self.epoch, int(i)))
                x, y = augment_pair(self.images[i], self.masks[i], self.size, self.augment, rng, self.pool)
            xs.append(x)
            ys.append(y[..., None])
        return np.stack(xs), np.stack(ys)

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = np.random.default_rng((self.seed, self.epoch)).permutation(len(self.images))


def monitored(logs: dict, monitor: Sequence[str]) -> float:
    """Mean of the ``monitor`` entries of an epoch's logs: the score checkpoints and early stopping follow."""
    return sum(float(logs[key]) for key in monitor) / len(monitor)


class ValidationMetrics(keras.callbacks.Callback):
    """Scores the model on validation photos after each epoch and adds the scores to the epoch's logs.

    Writes ``val_<metric>`` for every metric of :mod:`seg_core.core.metrics` (counts
    summed over the photos, threshold 0.5), ``val_changed_<metric>`` for the
    optional set of changed photos and ``val_recoloured_<metric>`` for the optional
    recoloured ones, so the callbacks after it read them like Keras' own.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        changed: tuple[np.ndarray, np.ndarray] | None = None,
        recoloured: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        super().__init__()
        extra = [("val_changed", changed), ("val_recoloured", recoloured)]
        self.sets = [("val", x, y)] + [(prefix, *views) for prefix, views in extra if views is not None]
        #: The scores of every epoch so far, in order.
        self.epochs: list[dict[str, float]] = []

    def _scores(self, x: np.ndarray, y: np.ndarray, prefix: str) -> dict[str, float]:
        prob = self.model.predict(x, batch_size=16, verbose=0)
        total = Confusion()
        for p, t in zip(prob[..., 0] >= 0.5, y >= 0.5, strict=False):
            total = total + confusion(p, t)
        return {f"{prefix}_{k}": v for k, v in all_metrics(total).items()}

    def on_epoch_end(self, epoch, logs=None):
        scores: dict[str, float] = {}
        for prefix, x, y in self.sets:
            scores |= self._scores(x, y, prefix)
        self.epochs.append(scores)
        if logs is not None:
            logs.update(scores)


class HistoryCSV(keras.callbacks.Callback):
    """Rewrites the history file after each epoch: epoch, loss, every logged score, learning rate, seconds.

    Rewritten rather than appended so the file is complete whenever a run stops.
    """

    def __init__(self, path: Path, clock: Callable[[], float] = time.time):
        super().__init__()
        self.path, self.clock = Path(path), clock
        self.rows: list[dict] = []
        self.started = clock()

    def on_train_begin(self, logs=None):
        self.rows, self.started = [], self.clock()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", math.nan)),
            **{key: float(value) for key, value in logs.items() if key != "loss"},
            "lr": float(np.asarray(self.model.optimizer.learning_rate)),
            "seconds": round(self.clock() - self.started, 1),
        }
        self.rows.append(row)
        with open(self.path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.rows)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the weights whenever the monitored score beats every earlier epoch's."""

    def __init__(self, path: Path, export: keras.Model, monitor: Sequence[str] = ("val_iou",)):
        super().__init__()
        # Weights are copied into an optimizer-free twin before saving: Keras
        # would otherwise store the Adam moments too, tripling the file.
        self.export = export
        self.path, self.monitor = Path(path), tuple(monitor)
        self.best_score, self.best_epoch = -math.inf, 0

    def on_epoch_end(self, epoch, logs=None):
        score = monitored(logs or {}, self.monitor)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch + 1
            self.export.set_weights(self.model.get_weights())
            self.export.save_weights(self.path)


class EarlyStop(keras.callbacks.Callback):
    """Stops training once the monitored score has not improved for ``patience`` epochs."""

    def __init__(self, patience: int, monitor: Sequence[str] = ("val_iou",)):
        super().__init__()
        self.patience, self.monitor = patience, tuple(monitor)
        self.best_score, self.best_epoch = -math.inf, 0

    def on_train_begin(self, logs=None):
        self.best_score, self.best_epoch = -math.inf, 0

    def on_epoch_end(self, epoch, logs=None):
        score = monitored(logs or {}, self.monitor)
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch + 1
        if epoch + 1 - self.best_epoch >= self.patience:
            print(f"early stop: no val IoU gain for {self.patience} epochs", flush=True)
            self.model.stop_training = True


class TimeLimit(keras.callbacks.Callback):
    """Stops training when one more epoch, at the mean epoch time so far, would pass ``seconds``."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.time):
        super().__init__()
        self.seconds, self.clock = seconds, clock
        self.started = clock()

    def on_train_begin(self, logs=None):
        self.started = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        elapsed = self.clock() - self.started
        if elapsed * (epoch + 2) / (epoch + 1) > self.seconds:
            print(f"time limit: another epoch would pass {self.seconds:.0f}s", flush=True)
            self.model.stop_training = True


class EpochLine(keras.callbacks.Callback):
    """Prints one line per epoch: loss, validation scores, and ``*best*`` when the checkpoint was saved."""

    def __init__(self, checkpoint: BestCheckpoint):
        super().__init__()
        self.checkpoint = checkpoint

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        extra = "".join(f" {key} {logs[key]:.4f}" for key in ("val_changed_iou", "val_recoloured_iou") if key in logs)
        print(
            f"epoch {epoch + 1}: loss {float(logs.get('loss', math.nan)):.4f} val_iou {logs['val_iou']:.4f} "
            f"val_dice {logs['val_dice']:.4f}" + extra + (" *best*" if self.checkpoint.best_epoch == epoch + 1 else ""),
            flush=True,
        )


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    backend = keras.backend.backend()
    try:
        module = __import__(backend)
        versions[backend] = module.__version__
    except ImportError:
        pass
    import PIL

    versions["pillow"] = PIL.__version__
    return versions


def load_recipe(path: str | Path) -> dict:
    """Read a recipe file and check its keys and flag values.

    Raises:
        RecipeError: the file is missing, is not TOML, or holds unknown keys or non-boolean flags.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            recipe = tomllib.load(fh)
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"recipe {path} is not valid TOML: {exc}") from exc
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise RecipeError(f"recipe {path} has unknown settings {unknown}; a recipe may set {', '.join(RECIPE_KEYS)}")
    not_flags = [key for key in RECIPE_FLAGS if key in recipe and not isinstance(recipe[key], bool)]
    if not_flags:
        raise RecipeError(f"recipe {path}: {', '.join(not_flags)} must be true or false")
    return recipe


def recipe_argv(recipe: dict) -> list[str]:
    """A recipe as command-line options, so argparse checks its values and later options override them."""
    argv: list[str] = []
    for key, value in recipe.items():
        option = "--" + key.replace("_", "-")
        if key in RECIPE_FLAGS:
            argv += [option] if value else []
        elif key in RECIPE_PATHS:
            argv += [option, str(REPO_ROOT / value)]
        else:
            argv += [option, str(value)]
    return argv


def shown_path(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it, so cards read the same on every machine."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def learning_rate(args: argparse.Namespace, steps_per_epoch: int):
    """The peak rate, held constant or with a short warm-up and cosine decay over the whole run."""
    if args.schedule != "cosine":
        return args.lr
    steps = steps_per_epoch * args.epochs
    return keras.optimizers.schedules.CosineDecay(
        0.0, steps, alpha=0.01, warmup_target=args.lr, warmup_steps=min(steps_per_epoch * 3, steps // 10)
    )


def validation_view(images, masks, size: int, resample: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """Photos and masks at the network's input, the photos resized as inference resizes them."""
    x = np.stack([preprocess(image, size, resample) for image in images])
    y = np.stack([resize_mask(mask, size) for mask in masks])
    return x, y


def changed_views(images, masks, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Robust-augmented copies of the validation photos, fixed by ``seed`` so every epoch sees the same ones."""
    pool = PhotoPool(images, masks)
    recipe = AugmentConfig.robust()
    views = [
        augment_pair(i, m, size, recipe, np.random.default_rng((seed, 10**6, k)), pool)
        for k, (i, m) in enumerate(zip(images, masks, strict=True))
    ]
    return np.stack([v[0] for v in views]), np.stack([v[1] for v in views])


def recoloured_views(images, masks, size: int, seed: int, resample: str = "bilinear") -> tuple[np.ndarray, np.ndarray]:
    """The validation photos in other colours (a hue turn or a channel order each, fixed by ``seed``)."""
    recoloured = [recolour(image, np.random.default_rng((seed, 2 * 10**6, k))) for k, image in enumerate(images)]
    return validation_view(recoloured, masks, size, resample)


def augmentation(args: argparse.Namespace) -> AugmentConfig | None:
    """The augmentation the options ask for: None, or the basic or robust preset with its chance overrides.

    ``--grey-chance`` and ``--recolour`` replace the preset's chances of a
    black-and-white or a recoloured sample (the robust preset's after ``--augment-strength``).
    """
    if args.no_augment:
        return None
    config = AugmentConfig.robust(args.augment_strength) if args.augment == "robust" else AugmentConfig()
    if args.grey_chance is not None:
        config = dataclasses.replace(config, p_grey=args.grey_chance)
    if args.recolour is not None:
        config = dataclasses.replace(config, p_recolour=args.recolour)
    return config


def carry_notice(source: Path, out_dir: Path, change: str) -> None:
    """Copy ``source``'s licence ``NOTICE`` (pretrained weights' terms) into ``out_dir``, saying what changed.

    Weights derived from licensed ones carry the notice wherever they go; a source
    without one (weights trained here) leaves nothing to carry.
    """
    notice = Path(source) / NOTICE_FILE
    if notice.is_file() and notice.resolve() != (Path(out_dir) / NOTICE_FILE).resolve():
        (Path(out_dir) / NOTICE_FILE).write_text(notice.read_text().rstrip("\n") + f"\nThen {change}.\n")


def train(args: argparse.Namespace) -> Path:
    """Run one training job described by parsed CLI arguments; returns the output folder."""
    keras.utils.set_random_seed(args.seed)
    name = args.name or args.model
    out_dir = Path(args.out_dir) / name
    out_dir.mkdir(parents=True, exist_ok=True)
    overrides = {"input_size": args.size} if args.size else {}
    config = model_config(args.model, **overrides)

    root = data.resolve_data_dir(args.data)
    scan = data.scan_dataset(root)
    split = data.load_split(args.split)
    train_samples = data.split_samples(scan, split, "train")[: args.limit]
    val_samples = data.split_samples(scan, split, "val")[: args.limit]
    if not train_samples or not val_samples:
        raise data.DatasetNotFoundError(f"{args.split} selects no train or no val photos in {root}")
    t0 = time.time()
    train_samples, train_images, train_masks = data.load_pairs(train_samples)
    val_samples, val_images, val_masks = data.load_pairs(val_samples)
    print(f"loaded {len(train_samples)} train / {len(val_samples)} val photos in {time.time() - t0:.1f}s")
    x_val, y_val = validation_view(val_images, val_masks, config.input_size, config.resample)

    augment = augmentation(args)
    seq = TrainSequence(
        train_images,
        train_masks,
        args.batch_size,
        config.input_size,
        augment,
        args.seed,
        workers=args.workers,
        use_multiprocessing=args.multiprocessing,
    )
    model = create_model(args.model, **overrides)
    init = None
    if args.init:
        # Loaded before the first checkpoint is written, so --init may name the output folder.
        init = {"folder": shown_path(args.init), "weights_sha256": data.file_sha256(args.init / WEIGHTS_FILE)}
        model.load_weights(args.init / WEIGHTS_FILE)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate(args, len(seq)), weight_decay=args.weight_decay),
        loss=LOSSES[args.loss],
    )
    save_config(config, args.model, out_dir)

    # With more validation sets (changed photos, recoloured photos), the best
    # checkpoint is the one with the best mean IoU over all of them, so a gain on
    # hard photos is not bought with a loss on ordinary ones.
    changed = changed_views(val_images, val_masks, config.input_size, args.seed) if args.robust_val else None
    recoloured = (
        recoloured_views(val_images, val_masks, config.input_size, args.seed, config.resample)
        if args.recolour_val
        else None
    )
    validation = ValidationMetrics(x_val, y_val, changed, recoloured)
    monitor = tuple(f"{prefix}_iou" for prefix, *_ in validation.sets)
    checkpoint = BestCheckpoint(out_dir / WEIGHTS_FILE, create_model(args.model, **overrides), monitor)
    history = HistoryCSV(out_dir / HISTORY_FILE)
    callbacks = [validation, history, checkpoint, EpochLine(checkpoint), EarlyStop(args.patience, monitor)]
    if args.time_limit:
        callbacks.append(TimeLimit(args.time_limit))
    started = time.time()
    model.fit(seq, epochs=args.epochs, callbacks=callbacks, verbose=2)
    seconds = time.time() - started

    card = {
        "name": name,
        "architecture": args.model,
        "recipe": args.recipe,
        **({"recipe_file": shown_path(args.config)} if args.config else {}),
        "config": config.to_dict(),
        "parameters": int(model.count_params()),
        "input_size": config.input_size,
        "loss": args.loss,
        "optimizer": {
            "name": "AdamW",
            "peak_lr": args.lr,
            "schedule": args.schedule,
            "weight_decay": args.weight_decay,
        },
        "batch_size": args.batch_size,
        "augmentation": augment.to_dict() if augment else None,
        "augment_preset": None if args.no_augment else args.augment,
        "robust_validation": bool(args.robust_val),
        "recoloured_validation": bool(args.recolour_val),
        "initial_weights": init,
        "epochs_run": len(validation.epochs),
        "epochs_max": args.epochs,
        "time_limit_seconds": args.time_limit,
        "best_epoch": checkpoint.best_epoch,
        "patience": args.patience,
        "seed": args.seed,
        "train_photos": len(train_samples),
        "val_photos": len(val_samples),
        "training_seconds": round(seconds, 1),
        "split_file": str(args.split.name),
        "split_sha256": data.file_sha256(args.split),
        "validation_at_input_size": validation.epochs[checkpoint.best_epoch - 1] if checkpoint.best_epoch else {},
        "backend": keras.backend.backend(),
        "device": platform.machine() + " " + (platform.processor() or ""),
        "library_versions": library_versions(),
        "command": shlex.join(["python", "-m", "seg_core.train", *sys.argv[1:]]),
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    if args.init:
        carry_notice(args.init, out_dir, "fine-tuned by Wingmask on Leeds photos (seg_core/models/training.py)")
    print(f"best val IoU {checkpoint.best_score:.4f} at epoch {checkpoint.best_epoch}; wrote {out_dir}")
    return out_dir
