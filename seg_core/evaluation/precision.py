"""The precision check: every runtime and precision against Keras FP32 on a split.

A precision passes when its masks agree with Keras FP32 masks on at least 99.9%
of the split's pixels and its foreground IoU is within 0.002 of Keras'. The rows go
to ``models/precision_check.csv``, which :mod:`seg_core.runtime.checks` reads.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from seg_core.core.metrics import Confusion, confusion, iou
from seg_core.core.paths import MODELS_DIR
from seg_core.data.leeds import (
    DatasetNotFoundError,
    load_split_photos,
)
from seg_core.evaluation.bench import machine_description
from seg_core.runtime.base import ModelLoadError, threshold_mask
from seg_core.runtime.checks import CHECK_COLUMNS, MAX_IOU_GAP, MIN_AGREEMENT, check_path, read_checks
from seg_core.runtime.engines import RUNTIME_PRECISIONS, available_runtimes, cpu_flags
from seg_core.runtime.export import folder_digest
from seg_core.runtime.int8 import has_int8
from seg_core.runtime.predictor import UNetPredictor
from seg_core.runtime.registry import trained_models


def _agreement_rows(
    name: str,
    models_dir: Path,
    images: list[np.ndarray],
    truths: list[np.ndarray],
    progress: bool,
    precisions: tuple[str, ...] | None = None,
) -> list[dict]:

    def run(predictor: UNetPredictor) -> list[np.ndarray]:
        label = f"{name} {predictor.runtime} {predictor.precision}"
        return [
            threshold_mask(predictor.predict_proba(img))
            for img in tqdm(images, desc=label, file=sys.stderr, disable=not progress)
        ]

    def fg_iou(masks: list[np.ndarray]) -> float:
        return iou(sum((confusion(m, t) for m, t in zip(masks, truths, strict=True)), Confusion(0, 0, 0, 0)))

    directory = models_dir / name
    reference = run(UNetPredictor(directory, "keras", "fp32"))
    keras_iou = fg_iou(reference)
    base = {"model": name, "digest": folder_digest(directory), "photos": len(images), "keras_fg_iou": keras_iou}
    rows = [base | {"runtime": "keras", "precision": "fp32", "agreement": 1.0, "worst_photo_agreement": 1.0}]
    rows[0] |= {"fg_iou": keras_iou, "passed": True}
    for runtime in available_runtimes():
        for precision in RUNTIME_PRECISIONS[runtime] if runtime != "keras" else ():
            if precisions is not None and precision not in precisions:
                continue
            if precision == "int8" and not has_int8(directory, base["digest"]):
                print(f"{name}: no INT8 version of these weights; skipped", file=sys.stderr)
                continue
            predictor = UNetPredictor(directory, runtime, precision)
            if predictor.precision != precision:
                print(f"{name}: {runtime} runs {predictor.precision} here, not {precision}; skipped", file=sys.stderr)
                continue
            masks = run(predictor)
            same = [int(np.count_nonzero(m == r)) for m, r in zip(masks, reference, strict=True)]
            agreement = sum(same) / sum(r.size for r in reference)
            value = fg_iou(masks)
            passed = agreement >= MIN_AGREEMENT and abs(value - keras_iou) <= MAX_IOU_GAP
            rows.append(
                base
                | {"runtime": runtime, "precision": precision, "agreement": agreement, "fg_iou": value}
                | {"worst_photo_agreement": min(s / r.size for s, r in zip(same, reference, strict=True))}
                | {"passed": passed}
            )
    return rows


def check_runtimes(
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    models: list[str] | None = None,
    models_dir: str | os.PathLike = MODELS_DIR,
    progress: bool = True,
) -> pd.DataFrame:
    """Compare every installed runtime and precision with Keras FP32 on a split; update the check file.

    Masks are the default predictor path's (second look on) at threshold 0.5, at
    each photo's own size. Rows of models not checked this time are kept.

    Args:
        data_dir: Leeds-layout folder (default: ``$WINGMASK_DATA`` or ``../shared``).
        split: the split of ``models/split.json`` to run on.
        models: trained model names (default: all of them).
        models_dir: folder of trained U-Nets; ``precision_check.csv`` is written there.
        progress: show progress bars on stderr.

    Returns:
        The rows of this run, columns ``CHECK_COLUMNS``.

    Raises:
        DatasetNotFoundError: no dataset, or no readable photo in the split.
        ModelLoadError: a model name is unknown or does not load.
    """
    models_dir = Path(models_dir)
    names = models or trained_models(models_dir)
    unknown = sorted(set(names) - set(trained_models(models_dir)))
    if unknown:
        raise ModelLoadError(f"unknown model(s) {', '.join(unknown)}; trained: {', '.join(trained_models(models_dir))}")
    samples, images, truths = load_split_photos(data_dir, split)
    if not samples:
        raise DatasetNotFoundError(f"no readable {split} photos of the dataset")
    rows = [row for name in names for row in _agreement_rows(name, models_dir, images, truths, progress)]
    return _store(rows, names, split, models_dir)


def _store(rows: list[dict], names: list[str], split: str, models_dir: Path) -> pd.DataFrame:
    """Replace the check rows of ``names`` in the models folder's check file with ``rows``; the new rows."""
    cpu = f"{machine_description()}; {' '.join(cpu_flags()) or 'no BF16/AMX flags'}"
    table = pd.DataFrame(rows).assign(split=split, cpu=cpu, checked_at=datetime.date.today().isoformat())
    table = table[CHECK_COLUMNS]
    kept = read_checks(models_dir)
    kept = kept[~kept["model"].isin(names)]
    pd.concat([kept, table] if len(kept) else [table], ignore_index=True).to_csv(check_path(models_dir), index=False)
    return table


def check_model(
    name: str,
    images: list[np.ndarray],
    truths: list[np.ndarray],
    split: str,
    models_dir: str | os.PathLike = MODELS_DIR,
    precisions: tuple[str, ...] = ("int8", "bf16"),
) -> pd.DataFrame:
    """Check one model's lower precisions against Keras FP32 on given photos; update the check file.

    For a model whose own photos are not a Leeds split (a fine-tune checked on its
    collection's held-out photos), and for only the precisions ``auto`` could pick
    over FP32, which needs no check.

    Args:
        name: trained model name (a folder of ``models_dir``).
        images, truths: the photos and their boolean masks.
        split: what the photos are, written in the rows' ``split`` column.
        models_dir: folder of the model and of ``precision_check.csv``.
        precisions: the OpenVINO precisions to check.

    Returns:
        The rows of this check (Keras' own row first).
    """
    rows = _agreement_rows(name, Path(models_dir), images, truths, False, precisions)
    return _store(rows, [name], split, Path(models_dir))
