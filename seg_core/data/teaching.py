"""What teaching a network from a collection accepts: size limits, the hold-out, new models' names.

Front ends (the dashboard) check input against these before any training
starts, without loading TensorFlow; :mod:`seg_core.models.adapt` does the
fine-tune itself and :mod:`seg_core.service.teach` runs it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from seg_core.data.collections import NAME_PATTERN, NAME_RULE

#: Fewer usable pairs than this cannot teach a network anything reliable.
MIN_PAIRS = 8
#: Most pairs a collection may have (photos are kept in memory while training).
MAX_PAIRS = 500
#: From this many pairs on, some are held apart for validation.
HOLD_OUT_FROM = 20
HOLD_OUT_FRACTION = 0.15
HOLD_OUT_MIN = 4
HOLD_OUT_MAX = 40
#: Leeds validation photos scored after each epoch (every k-th of the split, so every species is in).
LEEDS_VAL_PHOTOS = 56
#: Photos are kept at most this many times the network's input side (augmentation crops and shrinks them).
KEEP_SIDE_FACTOR = 2
#: Model names leave room for the ``-heldout`` suffix of their comparison within a collection name's 64 characters.
MAX_NAME_LENGTH = 56


class AdaptError(ValueError):
    """A fine-tune cannot start or finish; the message says why."""


class ModelNameError(AdaptError):
    """A new model's name is not a safe folder name, or a model of that name exists."""


class CollectionSizeError(AdaptError):
    """A collection has too few usable pairs to learn from, or more than :data:`MAX_PAIRS`."""


class AdaptCancelled(AdaptError):
    """The fine-tune was asked to stop; nothing was kept."""


@dataclass(frozen=True)
class Progress:
    """What a fine-tune reports: a stage, the seconds spent of its budget, a message, and scores after an epoch."""

    stage: str
    elapsed: float
    budget: float
    message: str
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AdaptResult:
    """A finished fine-tune: the model folder and its card."""

    folder: Path
    card: dict

    @property
    def name(self) -> str:
        return self.folder.name


def check_model_name(name: str, models_dir: str | os.PathLike) -> str:
    """A new model's name, checked: a plain folder name under ``models_dir`` that no model uses yet.

    Raises:
        ModelNameError: not 1 to :data:`MAX_NAME_LENGTH` letters, digits, '-', '_' or '.'
            starting with a letter or digit, or ``models_dir`` has that folder already.
    """
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name) or len(name) > MAX_NAME_LENGTH:
        rule = NAME_RULE.replace("64", str(MAX_NAME_LENGTH))
        raise ModelNameError(f"{name!r} is not a usable model name: use {rule}")
    if (Path(models_dir) / name).exists() or staging_folder(models_dir, name).exists():
        raise ModelNameError(f"a model named {name!r} exists already in {models_dir}; choose another name")
    return name


def staging_folder(models_dir: str | os.PathLike, name: str) -> Path:
    """Where a fine-tune writes until it has finished (a hidden folder, which no model picker lists)."""
    return Path(models_dir) / f".{name}.partial"


def held_out_ids(ids: Sequence[str]) -> set[str]:
    """The photos held apart for validation: none under :data:`HOLD_OUT_FROM` pairs, else about 15%.

    Chosen by a hash of each id, so a photo keeps its side when others are added.
    """
    if len(ids) < HOLD_OUT_FROM:
        return set()
    count = min(HOLD_OUT_MAX, max(HOLD_OUT_MIN, round(len(ids) * HOLD_OUT_FRACTION)))
    return set(sorted(ids, key=lambda i: hashlib.sha256(i.encode()).hexdigest())[:count])


def keep_size(image: np.ndarray, mask: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo and mask shrunk so that their longer side is at most ``side`` (as they are when smaller)."""
    height, width = mask.shape
    scale = side / max(height, width)
    if scale >= 1:
        return image, mask
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) >= 0.5
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), small_mask
