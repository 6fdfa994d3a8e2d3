"""Teach a trained network new species: fine-tune a copy of it on a collection of photos and masks.

A collection (``images/`` + ``masks/``, :mod:`seg_core.data.collections`) of at
least :data:`MIN_PAIRS` usable pairs is split, when it holds
:data:`HOLD_OUT_FROM` pairs or more, into photos to learn from and a few held
apart (:func:`held_out_ids`) that choose the checkpoint and give the card its
before/after scores. The copy learns with the robust augmentation, recoloured
samples included, for a fixed time rather than a fixed number of epochs: the
learning rate follows a cosine over the time budget (:class:`TimedCosine`), so
a run on a slow CPU and one on a GPU both finish their schedule.

Fine-tuning on a few hundred photos of other species makes a network forget
what it knew (a plain 10-minute run lost 0.05 IoU on Leeds photos). Two guards:

* **replay**: when the Leeds dataset is present, every batch mixes collection
  samples with Leeds training photos (:attr:`AdaptSettings.leeds_share`), and
  a spread of Leeds validation photos is scored after each epoch;
* **distillation**: without it, the collection's targets are blended with the
  base network's own predictions (:attr:`AdaptSettings.distill_weight`), which
  keeps the copy's answers near the base's wherever the labels do not say otherwise.

The checkpoint kept is the one with the best :func:`selection_score`: the
held-out collection photos' per-photo IoU, less a penalty for any Leeds loss
beyond :attr:`AdaptSettings.leeds_tolerance`. The base itself is epoch 0, so a
run that only makes things worse keeps the base's weights. The model folder
gets the weights, ``config.json``, ``card.json`` (base, collection digest, photo
counts, before/after scores, time, recipe), ``history.csv`` and ``recipe.toml``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shlex
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from seg_core.core.config import (
    CARD_FILE,
    CONFIG_FILE,
    HISTORY_FILE,
    WEIGHTS_FILE,
    NetworkConfig,
    load_config,
    save_config,
)
from seg_core.core.metrics import confusion, iou
from seg_core.data import leeds
from seg_core.data.augment import AugmentConfig, PhotoPool, augment_pair
from seg_core.data.collections import Collection, LabelledPhoto, check_pairs, require_pairs, scan_folder
from seg_core.data.teaching import (
    HOLD_OUT_FROM,
    KEEP_SIDE_FACTOR,
    LEEDS_VAL_PHOTOS,
    MAX_PAIRS,
    MIN_PAIRS,
    AdaptCancelled,
    AdaptError,
    AdaptResult,
    CollectionSizeError,
    Progress,
    check_model_name,
    held_out_ids,
    keep_size,
    staging_folder,
)
from seg_core.models.losses import LOSSES
from seg_core.models.registry import build_model
from seg_core.models.training import (
    BestCheckpoint,
    HistoryCSV,
    TimeLimit,
    carry_notice,
    library_versions,
    shown_path,
    validation_view,
)

RECIPE_FILE = "recipe.toml"
#: Guards against forgetting: ``auto`` is replay when the Leeds dataset is found, else distillation.
GUARDS = ("auto", "replay", "distill", "none")
REPLAY, DISTILL = "replay", "distill"
#: Each Leeds IoU point lost beyond the tolerance costs this many collection IoU points in the selection.
LEEDS_PENALTY = 3.0


@dataclass(frozen=True)
class AdaptSettings:
    """How a fine-tune learns (written to the model folder as its recipe).

    Attributes:
        seconds: time from the start of :func:`adapt` until training must end.
        lr: peak learning rate of the time-based cosine.
        batch_size: samples per step.
        guard: one of :data:`GUARDS`.
        leeds_share: share of each batch taken from Leeds training photos (replay).
        distill_weight: weight of the base's predictions in the targets (distillation).
        augment_strength: scale of the robust augmentation's chances.
        recolour: chance of a recoloured sample (colours Leeds lacks).
        leeds_tolerance: Leeds IoU the selection lets go before it penalises.
        seed: seeds the split of batches and the augmentation.
        size: input size override (tiny test runs); None keeps the base's.
        max_epochs: stop after this many epochs even with time left.
        min_steps: steps per epoch at least (a small collection is seen several times an epoch).
        workers: threads preparing batches.
    """

    seconds: float = 540.0
    lr: float = 3e-4
    batch_size: int = 8
    guard: str = "auto"
    leeds_share: float = 0.5
    distill_weight: float = 0.5
    augment_strength: float = 0.6
    recolour: float = 0.2
    leeds_tolerance: float = 0.003
    seed: int = 42
    size: int | None = None
    max_epochs: int = 1000
    min_steps: int = 20
    workers: int = 2

    def augmentation(self) -> AugmentConfig:
        """The robust preset at :attr:`augment_strength`, with :attr:`recolour`."""
        return dataclasses.replace(AugmentConfig.robust(self.augment_strength), p_recolour=self.recolour)

    def to_toml(self, base: str) -> str:
        """The recipe file's text: the base model and every setting (None values left out)."""
        lines = [f"base = {json.dumps(base)}"]
        for key, value in dataclasses.asdict(self).items():
            if value is not None:
                lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join(lines) + "\n"


def read_recipe(path: str | os.PathLike) -> tuple[str | None, dict]:
    """(base model, settings) from a recipe file written by a fine-tune.

    Raises:
        AdaptError: unreadable file or unknown settings.
    """
    try:
        recipe = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AdaptError(f"cannot read the recipe {path}: {exc}") from exc
    base = recipe.pop("base", None)
    known = {f.name for f in dataclasses.fields(AdaptSettings)}
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise AdaptError(f"recipe {path} has unknown settings {unknown}; it may set base, {', '.join(sorted(known))}")
    return base, recipe


@dataclass(frozen=True)
class PhotoSet:
    """Decoded photos and masks, kept at most :data:`KEEP_SIDE_FACTOR` times the input side."""

    ids: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]

    def subset(self, ids: set[str]) -> PhotoSet:
        """The photos whose id is in ``ids``, in order."""
        keep = [k for k, photo_id in enumerate(self.ids) if photo_id in ids]
        return PhotoSet([self.ids[k] for k in keep], [self.images[k] for k in keep], [self.masks[k] for k in keep])


@dataclass(frozen=True)
class TeachingCollection:
    """A checked collection ready to learn from: its photos, what was left out, and its digest."""

    collection: Collection
    photos: PhotoSet
    digest: str


def collection_digest(collection: Collection) -> str:
    """SHA-256 over every used pair's id and the SHA-256 of its photo and mask files."""
    sha = hashlib.sha256()
    for pair in sorted(collection.pairs, key=lambda p: p.id):
        files = [leeds.file_sha256(pair.image_path)] + ([leeds.file_sha256(pair.mask_path)] if pair.mask_path else [])
        sha.update(f"{pair.id}:{':'.join(files)}\n".encode())
    return sha.hexdigest()


def read_collection(folder: str | os.PathLike, side: int) -> TeachingCollection:
    """Check a collection folder and decode its usable pairs once, shrunk to at most ``side``.

    Raises:
        CollectionError: no such folder or not in the collection layout, or no usable pair.
        CollectionSizeError: fewer than :data:`MIN_PAIRS` usable pairs, or more than :data:`MAX_PAIRS`.
    """
    collection = scan_folder(folder)
    if len(collection.pairs) > MAX_PAIRS:
        raise CollectionSizeError(
            f"{collection.source} has {len(collection.pairs)} photos with masks; at most {MAX_PAIRS} can be "
            "learnt from in one fine-tune: split it into smaller collections"
        )
    ids, images, masks = [], [], []

    def keep(photo: LabelledPhoto) -> None:
        image, mask = keep_size(photo.image, photo.mask, side)
        ids.append(photo.id)
        images.append(image)
        masks.append(mask)

    require_pairs(check_pairs(collection, on_usable=keep))
    if len(collection.pairs) < MIN_PAIRS:
        skipped = "; ".join(f"{s.file}: {s.reason}" for s in collection.skipped[:3])
        raise CollectionSizeError(
            f"{collection.source} has {len(collection.pairs)} usable photos with masks; a fine-tune needs at "
            f"least {MIN_PAIRS}" + (f" (left out: {skipped})" if skipped else "")
        )
    return TeachingCollection(collection, PhotoSet(ids, images, masks), collection_digest(collection))


def leeds_photos(data_dir: str | os.PathLike | None, split_file: Path, side: int) -> tuple[PhotoSet, PhotoSet] | None:
    """(Leeds train photos, a spread of :data:`LEEDS_VAL_PHOTOS` val photos), or None without the dataset."""
    if leeds.dataset_available(data_dir) is None:
        return None
    sets = []
    for split in ("train", "val"):
        samples = leeds.load_split_samples(data_dir, split, split_file)
        if split == "val":
            samples = samples[:: max(1, len(samples) // LEEDS_VAL_PHOTOS)][:LEEDS_VAL_PHOTOS]
        samples, images, masks = leeds.load_pairs(samples)
        kept = [keep_size(image, mask, side) for image, mask in zip(images, masks, strict=True)]
        sets.append(PhotoSet([s.id for s in samples], [k[0] for k in kept], [k[1] for k in kept]))
    return (sets[0], sets[1]) if sets[0].ids and sets[1].ids else None


def mean_photo_iou(prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> float:
    """Mean over photos of the foreground IoU of ``prob >= threshold`` against ``truth`` (N, S, S[, 1])."""
    pred = np.asarray(prob).reshape(len(truth), *np.shape(truth)[1:3]) >= threshold
    return float(np.mean([iou(confusion(p, t >= 0.5)) for p, t in zip(pred, np.asarray(truth), strict=True)]))


def selection_score(scores: dict[str, float], leeds_before: float | None, tolerance: float) -> float:
    """The collection's held-out IoU, less :data:`LEEDS_PENALTY` times any Leeds IoU lost beyond ``tolerance``."""
    if leeds_before is None or "leeds_iou" not in scores:
        return scores["collection_iou"]
    lost = max(0.0, leeds_before - tolerance - scores["leeds_iou"])
    return scores["collection_iou"] - LEEDS_PENALTY * lost


@dataclass(frozen=True)
class Source:
    """Photos a batch draws ``per_batch`` augmented samples from, and their augmentation."""

    photos: PhotoSet
    per_batch: int
    augment: AugmentConfig

    @property
    def pool(self) -> PhotoPool:
        return PhotoPool(self.photos.images, self.photos.masks)


class MixedBatches(keras.utils.PyDataset):
    """Batches mixing augmented samples from several sources, optionally with the base's predictions blended in.

    Each source is walked in a new seeded order every epoch, so every photo of
    a source is seen before any is seen twice. With a ``teacher``, the targets
    are ``(1 - distill) * mask + distill * teacher(photo)``: binary cross-entropy
    and soft Dice are linear and smooth in the target, so this is the label
    loss plus a pull towards the base's answers.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        steps: int,
        size: int,
        seed: int,
        teacher: keras.Model | None = None,
        distill: float = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sources, self.steps, self.size, self.seed = list(sources), steps, size, seed
        self.pools = [source.pool for source in self.sources]
        self.teacher, self.distill = teacher, distill
        self.epoch = 0

    def __len__(self) -> int:
        return self.steps

    def _ids(self, k: int, index: int) -> list[int]:
        """The photos of source ``k`` in batch ``index``: the next stretch of its seeded walk."""
        source = self.sources[k]
        count = len(source.photos.ids)
        picked = []
        for position in range(index * source.per_batch, (index + 1) * source.per_batch):
            # An epoch that needs more samples than the source has goes on into another shuffled pass.
            walk, offset = divmod(position, count)
            picked.append(int(np.random.default_rng((self.seed, self.epoch, k, walk)).permutation(count)[offset]))
        return picked

    def __getitem__(self, index: int):
        xs, ys = [], []
        for k, source in enumerate(self.sources):
            for i in self._ids(k, index):
                rng = np.random.default_rng((self.seed, self.epoch, index, k, i))
                image, mask = source.photos.images[i], source.photos.masks[i]
                x, y = augment_pair(image, mask, self.size, source.augment, rng, self.pools[k])
                xs.append(x)
                ys.append(y[..., None].astype(np.float32))
        x, y = np.stack(xs), np.stack(ys)
        if self.teacher is not None and self.distill > 0:
            y = (1.0 - self.distill) * y + self.distill * keras.ops.convert_to_numpy(self.teacher(x, training=False))
        return x, y

    def on_epoch_end(self) -> None:
        self.epoch += 1


class PhotoScores(keras.callbacks.Callback):
    """Per-photo IoU on each validation set after every epoch, added to the logs with the selection score.

    Writes ``<set>_iou`` for every set and ``adapt_score`` (:func:`selection_score`).
    """

    def __init__(self, sets: dict[str, tuple[np.ndarray, np.ndarray]], leeds_before: float | None, tolerance: float):
        super().__init__()
        self.sets, self.leeds_before, self.tolerance = sets, leeds_before, tolerance
        #: The scores of every epoch so far, in order.
        self.epochs: list[dict[str, float]] = []

    def scores(self, model: keras.Model) -> dict[str, float]:
        """Every set's mean per-photo IoU and the selection score, for ``model``."""
        found = {
            f"{name}_iou": mean_photo_iou(model.predict(x, batch_size=16, verbose=0), y)
            for name, (x, y) in self.sets.items()
        }
        return found | {"adapt_score": selection_score(found, self.leeds_before, self.tolerance)}

    def on_epoch_end(self, epoch, logs=None):
        found = self.scores(self.model)
        self.epochs.append(found)
        if logs is not None:
            logs.update(found)


class TimedCosine(keras.callbacks.Callback):
    """Sets the learning rate before each step from the share of the time budget spent.

    A short linear warm-up (``warmup`` of the budget), then a cosine down to
    ``floor`` times the peak at the end of the budget.
    """

    def __init__(self, peak: float, seconds: float, warmup: float = 0.05, floor: float = 0.02, clock=time.time):
        super().__init__()
        self.peak, self.seconds, self.warmup, self.floor, self.clock = peak, seconds, warmup, floor, clock
        self.started = clock()

    def rate(self, spent: float) -> float:
        """The learning rate after ``spent`` (0 to 1) of the budget."""
        spent = min(max(spent, 0.0), 1.0)
        if spent < self.warmup:
            return self.peak * max(spent / self.warmup, 0.01)
        cosine = 0.5 * (1.0 + math.cos(math.pi * (spent - self.warmup) / (1.0 - self.warmup)))
        return self.peak * (self.floor + (1.0 - self.floor) * cosine)

    def on_train_begin(self, logs=None):
        self.started = self.clock()

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate = self.rate((self.clock() - self.started) / self.seconds)


class Watch(keras.callbacks.Callback):
    """Reports each epoch's scores, stops at once when asked to or when the time is up."""

    def __init__(
        self,
        report: Callable[[Progress], None],
        should_stop: Callable[[], bool],
        started: float,
        deadline: float,
        checkpoint: BestCheckpoint,
        clock=time.time,
    ):
        super().__init__()
        self.report, self.should_stop, self.clock = report, should_stop, clock
        self.started, self.deadline, self.checkpoint = started, deadline, checkpoint
        self.cancelled = False

    def on_train_batch_end(self, batch, logs=None):
        if self.should_stop():
            self.cancelled = True
            self.model.stop_training = True
        elif self.clock() >= self.deadline:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        scores = {k: float(v) for k, v in logs.items() if k.endswith("_iou") or k in ("loss", "adapt_score")}
        best = " *best*" if self.checkpoint.best_epoch == epoch + 1 else ""
        shown = ", ".join(f"{k.removesuffix('_iou')} IoU {v:.4f}" for k, v in scores.items() if k.endswith("_iou"))
        message = f"epoch {epoch + 1}: {shown}{best}"
        budget = self.deadline - self.started
        self.report(Progress("train", self.clock() - self.started, budget, message, scores | {"epoch": epoch + 1}))


def base_config(base_dir: Path, size: int | None) -> tuple[str, NetworkConfig]:
    """(architecture, config) of a model folder, at input ``size`` when given.

    Raises:
        AdaptError: the folder is not a trained model.
    """
    if not (base_dir / CONFIG_FILE).is_file() or not (base_dir / WEIGHTS_FILE).is_file():
        raise AdaptError(f"{base_dir} is not a trained model folder (it needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    arch, config = load_config(base_dir)
    return arch, dataclasses.replace(config, input_size=size) if size else config


def _guard(settings: AdaptSettings, has_leeds: bool) -> str:
    if settings.guard not in GUARDS:
        raise AdaptError(f"unknown guard {settings.guard!r}; choose one of {', '.join(GUARDS)}")
    if settings.guard == REPLAY and not has_leeds:
        raise AdaptError(f"replay needs the Leeds dataset. {leeds.HOW_TO_GET}")
    if settings.guard == "auto":
        return REPLAY if has_leeds else DISTILL
    return settings.guard


def _steps(collection_photos: int, per_batch: int, minimum: int) -> int:
    """Steps per epoch: one pass over the collection's training photos, at least ``minimum``."""
    return max(minimum, math.ceil(collection_photos / max(per_batch, 1)))


@dataclass(frozen=True)
class Lesson:
    """What a fine-tune learns from and is judged on.

    Attributes:
        teaching: the checked collection.
        held_out: ids of the collection photos held apart (empty for a small collection).
        train: the collection photos learnt from.
        val: the photos that score each epoch (the held-out ones, else the training ones).
        leeds: Leeds (training, validation) photos, or None without the dataset.
        guard: ``replay``, ``distill`` or ``none``.
    """

    teaching: TeachingCollection
    held_out: set[str]
    train: PhotoSet
    val: PhotoSet
    leeds: tuple[PhotoSet, PhotoSet] | None
    guard: str


def prepare_lesson(
    folder: str | os.PathLike,
    side: int,
    settings: AdaptSettings,
    data_dir: str | os.PathLike | None,
    split_file: Path,
    say: Callable[[str, str], None],
) -> Lesson:
    """Read the collection, hold some photos apart, find the Leeds photos and settle the guard.

    Raises:
        CollectionError, CollectionSizeError: the collection cannot be learnt from.
        AdaptError: an unknown guard, or replay without the dataset.
    """
    say("load", f"reading the collection {folder}")
    teaching = read_collection(folder, side)
    photos = teaching.photos
    held_out = held_out_ids(photos.ids)
    train = photos.subset(set(photos.ids) - held_out)
    left_out = len(teaching.collection.skipped)
    say("load", f"{len(photos.ids)} usable pairs ({len(held_out)} held out), {left_out} files left out")
    found = leeds_photos(data_dir, split_file, side)
    if found is not None:
        say("load", f"Leeds: {len(found[0].ids)} training and {len(found[1].ids)} validation photos")
    guard = _guard(settings, found is not None)
    return Lesson(teaching, held_out, train, photos.subset(held_out) if held_out else train, found, guard)


def mixed_batches(lesson: Lesson, settings: AdaptSettings, size: int, teacher: keras.Model) -> MixedBatches:
    """The training batches: collection samples, plus Leeds ones (replay) or the base's predictions (distillation)."""
    augment = settings.augmentation()
    leeds_per_batch = round(settings.batch_size * settings.leeds_share) if lesson.guard == REPLAY else 0
    sources = [Source(lesson.train, settings.batch_size - leeds_per_batch, augment)]
    if leeds_per_batch:
        sources.append(Source(lesson.leeds[0], leeds_per_batch, augment))
    steps = _steps(len(lesson.train.ids), sources[0].per_batch, settings.min_steps)
    distill = settings.distill_weight if lesson.guard == DISTILL else 0.0
    return MixedBatches(
        sources, steps, size, settings.seed, teacher if distill else None, distill, workers=settings.workers
    )


def model_card(
    name: str,
    base_dir: Path,
    folder: Path,
    lesson: Lesson,
    settings: AdaptSettings,
    config: NetworkConfig,
    scores: dict[str, dict[str, float]],
    run: dict,
) -> dict:
    """The new model's card: base, collection (digest, counts, held-out ids, files left out), guard, scores, run.

    ``run`` holds the architecture, parameter count and what the run did (epochs, seconds, command).
    """
    leeds_sets = lesson.leeds or (PhotoSet([], [], []), PhotoSet([], [], []))
    collection = lesson.teaching.collection
    measured_on = (
        "held-out collection photos"
        if lesson.held_out
        else f"the collection's training photos (fewer than {HOLD_OUT_FROM} pairs: none held out)"
    )
    return {
        "name": name,
        "architecture": run["architecture"],
        "recipe": f"{run['architecture']} fine-tuned from {base_dir.name} on the collection {collection.name} "
        f"({len(lesson.train.ids)} photos, {lesson.guard} guard against forgetting) "
        f"for {settings.seconds / 60:.1f} min",
        "recipe_file": RECIPE_FILE,
        "config": config.to_dict(),
        "input_size": config.input_size,
        "base_model": {
            "name": base_dir.name,
            "folder": shown_path(base_dir),
            "weights_sha256": leeds.file_sha256(base_dir / WEIGHTS_FILE),
        },
        "collection": {
            "name": collection.name,
            "folder": shown_path(folder),
            "digest": lesson.teaching.digest,
            "photos": len(lesson.teaching.photos.ids),
            "train_photos": len(lesson.train.ids),
            "held_out_photos": len(lesson.held_out),
            "held_out_ids": sorted(lesson.held_out),
            "skipped": [{"file": s.file, "reason": s.reason} for s in collection.skipped],
        },
        "guard": {
            "kind": lesson.guard,
            "leeds_share": settings.leeds_share if lesson.guard == REPLAY else 0.0,
            "distill_weight": settings.distill_weight if lesson.guard == DISTILL else 0.0,
            "leeds_train_photos": len(leeds_sets[0].ids),
            "leeds_val_photos": len(leeds_sets[1].ids),
        },
        "validation": {
            "measured_on": measured_on,
            "metric": f"mean per-photo IoU at {config.input_size} px, threshold 0.5",
            "before": scores["before"],
            "after": scores["after"],
            "selection": f"collection IoU - {LEEDS_PENALTY:g} x Leeds IoU lost beyond {settings.leeds_tolerance}",
        },
        "settings": dataclasses.asdict(settings),
        "augmentation": settings.augmentation().to_dict(),
        "loss": "bce_dice",
        **{key: value for key, value in run.items() if key != "architecture"},
        "backend": keras.backend.backend(),
        "library_versions": library_versions(),
    }


def adapt(
    base_dir: str | os.PathLike,
    folder: str | os.PathLike,
    name: str,
    models_dir: str | os.PathLike,
    settings: AdaptSettings | None = None,
    data_dir: str | os.PathLike | None = None,
    split_file: str | os.PathLike = leeds.SPLIT_FILE,
    report: Callable[[Progress], None] = lambda progress: None,
    should_stop: Callable[[], bool] = lambda: False,
    command: Sequence[str] | None = None,
) -> AdaptResult:
    """Fine-tune a copy of the model in ``base_dir`` on the collection in ``folder``; write ``models_dir/name``.

    Args:
        base_dir: the base model's folder.
        folder: the collection folder (``images/`` + ``masks/``).
        name: the new model's name (:func:`check_model_name`).
        models_dir: where the new model's folder goes.
        settings: how to learn (default :class:`AdaptSettings`).
        data_dir: the Leeds dataset (default ``$WINGMASK_DATA`` or ``../shared``); used when found.
        split_file: the Leeds split.
        report: called with each stage and after each epoch.
        should_stop: polled after each step; True cancels the fine-tune.
        command: the command line to record in the card.

    Returns:
        The model folder and its card.

    Raises:
        ModelNameError, CollectionSizeError, CollectionError: bad name or collection (before any training).
        AdaptError: the base is not a model folder, or an unknown guard.
        AdaptCancelled: ``should_stop`` said so; nothing is left behind.
    """
    settings = settings or AdaptSettings()
    started = time.time()
    deadline = started + settings.seconds
    models_dir, base_dir, folder = Path(models_dir), Path(base_dir), Path(folder)
    name = check_model_name(name, models_dir)

    def say(stage: str, message: str) -> None:
        report(Progress(stage, time.time() - started, settings.seconds, message))

    arch, config = base_config(base_dir, settings.size)
    lesson = prepare_lesson(folder, KEEP_SIDE_FACTOR * config.input_size, settings, data_dir, Path(split_file), say)
    keras.utils.set_random_seed(settings.seed)
    teacher = build_model(config, arch)
    teacher.load_weights(base_dir / WEIGHTS_FILE)
    sets = {"collection": validation_view(lesson.val.images, lesson.val.masks, config.input_size, config.resample)}
    if lesson.leeds is not None:
        sets["leeds"] = validation_view(
            lesson.leeds[1].images, lesson.leeds[1].masks, config.input_size, config.resample
        )
    say("baseline", "scoring the base model")
    before = PhotoScores(sets, None, settings.leeds_tolerance).scores(teacher)
    validation = PhotoScores(sets, before.get("leeds_iou"), settings.leeds_tolerance)
    batches = mixed_batches(lesson, settings, config.input_size, teacher)
    model = build_model(config, arch)
    model.set_weights(teacher.get_weights())
    model.compile(optimizer=keras.optimizers.AdamW(settings.lr, weight_decay=1e-4), loss=LOSSES["bce_dice"])

    staging = staging_folder(models_dir, name)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        checkpoint = BestCheckpoint(staging / WEIGHTS_FILE, build_model(config, arch), ("adapt_score",))
        # The base is epoch 0: a fine-tune that only makes things worse keeps its weights.
        checkpoint.best_score, checkpoint.best_epoch = before["adapt_score"], 0
        checkpoint.export.set_weights(teacher.get_weights())
        checkpoint.export.save_weights(checkpoint.path)
        remaining = max(1.0, deadline - time.time())
        watch = Watch(report, should_stop, started, deadline, checkpoint)
        callbacks = [TimedCosine(settings.lr, remaining), validation, checkpoint]
        callbacks += [HistoryCSV(staging / HISTORY_FILE), TimeLimit(remaining), watch]
        say("train", f"training for {remaining / 60:.1f} min ({lesson.guard} guard, {len(batches)} steps an epoch)")
        trained_at = time.time()
        model.fit(batches, epochs=settings.max_epochs, callbacks=callbacks, verbose=0)
        if watch.cancelled:
            raise AdaptCancelled(f"the fine-tune of {name} was cancelled; nothing was kept")
        after = validation.epochs[checkpoint.best_epoch - 1] if checkpoint.best_epoch else before
        run = {
            "architecture": arch,
            "parameters": int(model.count_params()),
            "epochs_run": len(validation.epochs),
            "best_epoch": checkpoint.best_epoch,
            "steps_per_epoch": len(batches),
            "training_seconds": round(time.time() - trained_at, 1),
            "total_seconds": round(time.time() - started, 1),
            "command": shlex.join(command or ["python", "-m", "seg_core.adapt", *sys.argv[1:]]),
        }
        card = model_card(name, base_dir, folder, lesson, settings, config, {"before": before, "after": after}, run)
        save_config(config, arch, staging)
        (staging / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        (staging / RECIPE_FILE).write_text(settings.to_toml(base_dir.name))
        change = f"fine-tuned by Wingmask on the collection {folder.name} (seg_core/models/adapt.py)"
        carry_notice(base_dir, staging, change)
        final = models_dir / name
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    gain = f"collection IoU {before['collection_iou']:.4f} -> {after['collection_iou']:.4f}"
    say("done", f"best epoch {checkpoint.best_epoch}: {gain}")
    return AdaptResult(final, card)
