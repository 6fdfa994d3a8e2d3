"""Train a registered U-Net on the Leeds split and write weights plus a model card.

Example::

    python -m seg_core.train --model unet16 --name unet-best --loss bce_dice --epochs 150
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import platform
import shlex
import sys
import time
from pathlib import Path

import keras
import numpy as np

from seg_core import data
from seg_core.augment import AugmentConfig, PhotoPool, augment_pair
from seg_core.config import CARD_FILE, HISTORY_FILE, WEIGHTS_FILE, save_config
from seg_core.imaging import preprocess, resize_mask
from seg_core.losses import LOSSES
from seg_core.metrics import Confusion, all_metrics, confusion
from seg_core.models import create_model, list_models, model_config

log = logging.getLogger("seg_core.train")
MODELS_DIR = data.REPO_ROOT / "models"


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


class Validator(keras.callbacks.Callback):
    """Validation IoU/Dice each epoch, best checkpoint, early stopping, history CSV."""

    def __init__(
        self,
        x_val,
        y_val,
        out_dir: Path,
        patience: int,
        export,
        time_limit: float | None = None,
        robust: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        super().__init__()
        # Weights are copied into an optimizer-free twin before saving: Keras
        # would otherwise store the Adam moments too, tripling the file.
        self.export = export
        self.x_val, self.y_val = x_val, y_val
        # Optional second validation set of changed photos; when given, the best
        # checkpoint is the one with the best mean of plain and changed IoU, so
        # a gain on hard photos is not bought with a loss on ordinary ones.
        self.robust = robust
        self.out_dir, self.patience, self.time_limit = out_dir, patience, time_limit
        self.best_iou, self.best_epoch, self.best_metrics = -1.0, -1, {}
        self.rows: list[dict] = []
        self.started = time.time()

    def _scores(self, x: np.ndarray, y: np.ndarray, prefix: str) -> dict[str, float]:
        prob = self.model.predict(x, batch_size=16, verbose=0)
        total = Confusion()
        for p, t in zip(prob[..., 0] >= 0.5, y >= 0.5, strict=False):
            total = total + confusion(p, t)
        return {f"{prefix}_{k}": v for k, v in all_metrics(total).items()}

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        metrics = self._scores(self.x_val, self.y_val, "val")
        select = metrics["val_iou"]
        if self.robust is not None:
            metrics |= self._scores(*self.robust, "val_changed")
            select = (metrics["val_iou"] + metrics["val_changed_iou"]) / 2
        logs.update(metrics)
        lr = self.model.optimizer.learning_rate
        row = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", float("nan"))),
            **metrics,
            "lr": float(np.asarray(lr)),
            "seconds": round(time.time() - self.started, 1),
        }
        self.rows.append(row)
        with open(self.out_dir / HISTORY_FILE, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            writer.writeheader()
            writer.writerows(self.rows)
        improved = select > self.best_iou
        if improved:
            self.best_iou, self.best_epoch, self.best_metrics = select, epoch + 1, metrics
            self.export.set_weights(self.model.get_weights())
            self.export.save_weights(self.out_dir / WEIGHTS_FILE)
        print(
            f"epoch {epoch + 1}: loss {row['loss']:.4f} val_iou {metrics['val_iou']:.4f} "
            f"val_dice {metrics['val_dice']:.4f}"
            + (f" val_changed_iou {metrics['val_changed_iou']:.4f}" if self.robust is not None else "")
            + (" *best*" if improved else ""),
            flush=True,
        )
        if epoch + 1 - self.best_epoch >= self.patience:
            print(f"early stop: no val IoU gain for {self.patience} epochs", flush=True)
            self.model.stop_training = True
        elapsed = time.time() - self.started
        if self.time_limit and elapsed * (epoch + 2) / (epoch + 1) > self.time_limit:
            print(f"time limit: another epoch would pass {self.time_limit:.0f}s", flush=True)
            self.model.stop_training = True


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m seg_core.train", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, choices=list_models(), help="registered architecture")
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
        "--robust-val",
        action="store_true",
        help="also validate on robust-augmented val photos (fixed seed) and keep the best mean IoU",
    )
    p.add_argument("--init", type=Path, help="start from the weights in this model folder (fine-tuning)")
    p.add_argument("--patience", type=int, default=30, help="early-stopping patience (epochs)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--size", type=int, help="override the input size (tiny test runs)")
    p.add_argument("--limit", type=int, help="use only the first N train and val photos")
    p.add_argument("--workers", type=int, default=2, help="threads preparing batches")
    p.add_argument("--time-limit", type=float, help="stop (keeping the best checkpoint) before this many seconds")
    return p


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
    x_val = np.stack([preprocess(i, config.input_size) for i in val_images])
    y_val = np.stack([resize_mask(m, config.input_size) for m in val_masks])

    augment = None if args.no_augment else (AugmentConfig.robust() if args.augment == "robust" else AugmentConfig())
    seq = TrainSequence(
        train_images,
        train_masks,
        args.batch_size,
        config.input_size,
        augment,
        args.seed,
        workers=args.workers,
        use_multiprocessing=False,
    )
    steps = len(seq) * args.epochs
    if args.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            0.0, steps, alpha=0.01, warmup_target=args.lr, warmup_steps=min(len(seq) * 3, steps // 10)
        )
    else:
        lr = args.lr
    model = create_model(args.model, **overrides)
    init = None
    if args.init:
        # Loaded before the first checkpoint is written, so --init may name the output folder.
        init = {"folder": str(args.init), "weights_sha256": data.file_sha256(args.init / WEIGHTS_FILE)}
        model.load_weights(args.init / WEIGHTS_FILE)
    model.compile(optimizer=keras.optimizers.AdamW(lr, weight_decay=args.weight_decay), loss=LOSSES[args.loss])
    save_config(config, args.model, out_dir)
    robust = None
    if args.robust_val:
        pool = PhotoPool(val_images, val_masks)
        recipe = AugmentConfig.robust()
        views = [
            augment_pair(i, m, config.input_size, recipe, np.random.default_rng((args.seed, 10**6, k)), pool)
            for k, (i, m) in enumerate(zip(val_images, val_masks, strict=True))
        ]
        robust = (np.stack([v[0] for v in views]), np.stack([v[1] for v in views]))
    validator = Validator(
        x_val, y_val, out_dir, args.patience, create_model(args.model, **overrides), args.time_limit, robust
    )
    started = time.time()
    model.fit(seq, epochs=args.epochs, callbacks=[validator], verbose=2)
    seconds = time.time() - started

    card = {
        "name": name,
        "architecture": args.model,
        "recipe": args.recipe,
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
        "initial_weights": init,
        "epochs_run": len(validator.rows),
        "epochs_max": args.epochs,
        "time_limit_seconds": args.time_limit,
        "best_epoch": validator.best_epoch,
        "patience": args.patience,
        "seed": args.seed,
        "train_photos": len(train_samples),
        "val_photos": len(val_samples),
        "training_seconds": round(seconds, 1),
        "split_file": str(args.split.name),
        "split_sha256": data.file_sha256(args.split),
        "validation_at_input_size": validator.best_metrics,
        "backend": keras.backend.backend(),
        "device": platform.machine() + " " + (platform.processor() or ""),
        "library_versions": library_versions(),
        "command": shlex.join(["python", "-m", "seg_core.train", *sys.argv[1:]]),
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    print(f"best val IoU {validator.best_iou:.4f} at epoch {validator.best_epoch}; wrote {out_dir}")
    return out_dir


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        train(build_parser().parse_args(argv))
    except data.DatasetNotFoundError as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
