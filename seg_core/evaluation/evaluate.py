"""Evaluate every model on a split at each photo's own resolution.

Writes ``models/eval_<split>.csv``: one row per (model, photo, threshold) with
the pixel confusion counts, the boundary-band counts of Boundary IoU and the warm
inference time, so the dashboard can compute any metric at any threshold,
whole-set or per photo, without running a network. Binary-only baselines get one row per photo with an empty threshold.

A labelled collection of the user's own photos (:mod:`seg_core.data.collections`)
is evaluated the same way by :func:`evaluate_collection`, into
``eval_<collection>.csv`` with the same columns and a JSON summary beside it.

    python -m seg_core.evaluate --data ../shared/leedsbutterfly --split test
    python -m seg_core.evaluate --folder ~/my-butterflies
"""

from __future__ import annotations

import itertools
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from seg_core.core.labels import headers, label
from seg_core.core.metrics import BoundaryCounts, Confusion, boundary_counts, confusion, mask_boundary
from seg_core.core.paths import MODELS_DIR
from seg_core.data.collections import (
    IMAGES_FOLDER,
    MASK_FOLDERS,
    NAME_PATTERN,
    Collection,
    LabelledPhoto,
    Skipped,
    collection_folders,
)
from seg_core.data.leeds import (
    SPLIT_FILE,
    SPLITS,
    DatasetNotFoundError,
    load_split_photos,
    resolve_data_dir,
    write_species,
)
from seg_core.evaluation.results import (
    BOUNDARY_IOU,
    EVAL_COLUMNS,
    PER_IMAGE,
    WHOLE_SET,
    aggregate,
    at_threshold,
)
from seg_core.runtime.base import ModelLoadError, Predictor, threshold_mask
from seg_core.runtime.registry import available_predictors, load_predictor

#: 0.05, 0.10, ..., 0.95 (rounded so they print and compare cleanly).
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
SUMMARY_THRESHOLD = 0.5
#: The summary's columns with their headers (whole-set metrics, then the per-photo mean IoU and timing).
SUMMARY_LABELS = headers(
    ["model", "kind", "photos", "accuracy", "dice", "iou", "mean_iou", "boundary_iou", "iou_per_image", "median_ms"]
)


def eval_path(out_dir: str | os.PathLike, split: str) -> Path:
    """Where the results of ``split`` are written: ``<out_dir>/eval_<split>.csv``."""
    return Path(out_dir) / f"eval_{split}.csv"


def _sweep_inputs(prob, truth, thresholds) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked (probabilities, boolean truth, thresholds in the probabilities' float type)."""
    prob = np.asarray(prob)
    truth = np.asarray(truth, dtype=bool)
    if prob.shape != truth.shape:
        raise ValueError(f"probability and mask shapes differ: {prob.shape} vs {truth.shape}")
    dtype = prob.dtype if np.issubdtype(prob.dtype, np.floating) else np.float64
    levels = np.asarray(thresholds, dtype=dtype)
    if levels.ndim != 1 or np.any(np.diff(levels) <= 0):
        raise ValueError(f"thresholds must be strictly increasing, got {list(thresholds)}")
    return prob, truth, levels


def sweep_counts(prob: np.ndarray, truth: np.ndarray, thresholds=THRESHOLDS) -> list[Confusion]:
    """Confusion counts of ``prob >= t`` against ``truth`` for every threshold ``t``, in one pass.

    Each pixel's probability is binned by how many thresholds it reaches;
    cumulative sums of the foreground and background histograms then give the
    predicted-foreground counts at every threshold. Thresholds are compared in
    the probability map's own float type, exactly as :func:`threshold_mask` does.

    Args:
        prob: foreground probabilities (H, W).
        truth: boolean ground truth of the same shape.
        thresholds: strictly increasing thresholds.

    Returns:
        One :class:`Confusion` per threshold, in the order given.

    Raises:
        ValueError: shapes differ, or thresholds are not strictly increasing.
    """
    prob, truth, levels = _sweep_inputs(prob, truth, thresholds)
    reached = np.searchsorted(levels, prob.ravel(), side="right")
    reached[np.isnan(prob.ravel())] = 0  # NaN >= t is False for every t
    flat_truth = truth.ravel()
    # above[k] = pixels reaching more than k thresholds, i.e. predicted foreground at thresholds[k].
    fg_above = np.cumsum(np.bincount(reached[flat_truth], minlength=len(levels) + 1)[::-1])[::-1][1:]
    bg_above = np.cumsum(np.bincount(reached[~flat_truth], minlength=len(levels) + 1)[::-1])[::-1][1:]
    n_fg = int(np.count_nonzero(flat_truth))
    n_bg = flat_truth.size - n_fg
    return [
        Confusion(int(tp), int(fp), n_fg - int(tp), n_bg - int(fp)) for tp, fp in zip(fg_above, bg_above, strict=True)
    ]


def sweep_boundary_counts(prob: np.ndarray, truth: np.ndarray, thresholds=THRESHOLDS) -> list[BoundaryCounts]:
    """Boundary counts of ``prob >= t`` against ``truth`` for every threshold ``t``.

    The truth's boundary band is found once; a threshold whose mask equals the
    previous one's (the masks shrink as the threshold rises, so equal sizes mean
    equal masks) reuses its counts. Thresholds are compared in the probability
    map's own float type, as in :func:`sweep_counts`.

    Args:
        prob: foreground probabilities (H, W) at the photo's own resolution.
        truth: boolean ground truth of the same shape.
        thresholds: strictly increasing thresholds.

    Returns:
        One :class:`BoundaryCounts` per threshold, equal to
        ``boundary_counts(prob >= t, truth)``.

    Raises:
        ValueError: shapes differ, or thresholds are not strictly increasing.
    """
    prob, truth, levels = _sweep_inputs(prob, truth, thresholds)
    true_band = mask_boundary(truth)
    true_pixels = int(np.count_nonzero(true_band))
    counts: list[BoundaryCounts] = []
    previous_size = -1
    for level in levels:
        pred = prob >= level
        size = int(np.count_nonzero(pred))
        if size != previous_size:
            band = mask_boundary(pred)
            both = int(np.count_nonzero(band & true_band))
            current = BoundaryCounts(both, int(np.count_nonzero(band)) + true_pixels - both)
            previous_size = size
        counts.append(current)
    return counts


def evaluate_photos(
    predictor: Predictor,
    photos: Iterable[LabelledPhoto],
    split: str,
    thresholds=THRESHOLDS,
    progress: bool = True,
    total: int | None = None,
) -> list[dict]:
    """Evaluate one predictor on photos decoded one at a time, at each photo's own resolution.

    One warm-up prediction on the first photo comes first so ``infer_ms``
    excludes one-off costs (graph tracing, lazy initialisation). Photos are
    consumed as they come, so a lazy iterable (:meth:`Collection.photos`)
    keeps one decoded photo in memory at a time.

    Args:
        predictor: the model to run.
        photos: the photos with their boolean ground truths and species.
        split: split (or collection) name written on each row.
        thresholds: thresholds swept when the predictor is not binary-only.
        progress: show a progress bar on stderr.
        total: the number of photos, for the progress bar.

    Returns:
        Rows with the columns ``EVAL_COLUMNS`` of :mod:`seg_core.evaluation.results`.
    """
    remaining = iter(photos)
    first = next(remaining, None)
    if first is None:
        return []
    predictor.predict_proba(first.image)
    rows = []
    chained = itertools.chain([first], remaining)
    for photo in tqdm(chained, total=total, desc=f"{predictor.name} ({split})", file=sys.stderr, disable=not progress):
        started = time.perf_counter()
        prob = predictor.predict_proba(photo.image)
        infer_ms = round((time.perf_counter() - started) * 1000.0, 3)
        truth = photo.mask
        if predictor.binary_only:
            mask = threshold_mask(prob)
            counts = [(math.nan, confusion(mask, truth), boundary_counts(mask, truth))]
        else:
            counts = zip(
                thresholds,
                sweep_counts(prob, truth, thresholds),
                sweep_boundary_counts(prob, truth, thresholds),
                strict=True,
            )
        height, width = truth.shape
        base = {"model": predictor.name, "kind": predictor.kind, "image_id": photo.id, "species": photo.species}
        base |= {"split": split, "height": height, "width": width}
        for threshold, c, b in counts:
            rows.append(
                base
                | {"threshold": threshold, "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}
                | {"boundary_intersection": b.intersection, "boundary_union": b.union, "infer_ms": infer_ms}
            )
    return rows


def evaluate_predictor(
    predictor: Predictor,
    ids: list[str],
    images: list[np.ndarray],
    masks: list[np.ndarray],
    split: str,
    thresholds=THRESHOLDS,
    progress: bool = True,
) -> list[dict]:
    """Evaluate one predictor on already loaded Leeds photos (species: the first 3 digits of the id).

    Args:
        predictor: the model to run.
        ids, images, masks: photo ids, RGB photos and boolean ground truths, aligned.
        split: split name written on each row.
        thresholds: thresholds swept when the predictor is not binary-only.
        progress: show a progress bar on stderr.

    Returns:
        Rows with the columns ``EVAL_COLUMNS`` of :mod:`seg_core.evaluation.results`.
    """
    photos = (
        LabelledPhoto(image_id, image, mask, image_id[:3])
        for image_id, image, mask in zip(ids, images, masks, strict=True)
    )
    return evaluate_photos(predictor, photos, split, thresholds, progress, len(ids))


def evaluate(
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    split_file: str | os.PathLike = SPLIT_FILE,
    models: list[str] | None = None,
    out_dir: str | os.PathLike = MODELS_DIR,
    models_dir: str | os.PathLike = MODELS_DIR,
    thresholds=THRESHOLDS,
    progress: bool = True,
) -> Path:
    """Evaluate models on one split and write ``<out_dir>/eval_<split>.csv`` and ``species.json``.

    Args:
        data_dir: Leeds-layout folder (default: ``$WINGMASK_DATA`` or ``../shared``).
        split: ``train``, ``val`` or ``test``.
        split_file: the split JSON naming the photos of each split.
        models: predictor names (default: every one of ``available_predictors()``).
        out_dir: folder receiving the results.
        models_dir: folder holding the trained U-Nets.
        thresholds: thresholds swept for probabilistic models.
        progress: show progress bars on stderr.

    Returns:
        Path of the CSV written.

    Raises:
        DatasetNotFoundError: no dataset, or no readable photo in the split.
        ModelLoadError: a model name is unknown or does not load.
    """
    samples, images, masks = load_split_photos(data_dir, split, split_file)
    if not samples:
        raise DatasetNotFoundError(f"no readable {split} photos of {split_file}")
    ids = [s.id for s in samples]
    rows = []
    for name in models or available_predictors(models_dir):
        predictor = load_predictor(name, models_dir)
        rows += evaluate_predictor(predictor, ids, images, masks, split, thresholds, progress)
        del predictor
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = eval_path(out_dir, split)
    pd.DataFrame(rows, columns=EVAL_COLUMNS).to_csv(path, index=False)
    write_species(resolve_data_dir(data_dir), out_dir / "species.json")
    return path


@dataclass(frozen=True)
class CollectionResults:
    """What :func:`evaluate_collection` wrote: the CSV, its rows, and the summary (also written as JSON)."""

    path: Path
    rows: pd.DataFrame
    summary: dict


def summary_path(out_dir: str | os.PathLike, name: str) -> Path:
    """Where a collection's summary is written beside its results: ``<out_dir>/eval_<name>.json``."""
    return Path(out_dir) / f"eval_{name}.json"


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file, so a reader (the dashboard) never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def model_names(models: list[str] | None, models_dir: str | os.PathLike = MODELS_DIR) -> list[str]:
    """The models to evaluate, in order and without repeats (default: every available one).

    Raises:
        ModelLoadError: a name is not an available model (checked before any work starts).
    """
    available = available_predictors(models_dir)
    names = list(dict.fromkeys(models or available))
    unknown = [name for name in names if name not in available]
    if unknown:
        raise ModelLoadError(f"unknown model(s) {', '.join(map(repr, unknown))}; available: {', '.join(available)}")
    return names


def evaluate_collection(
    collection: Collection,
    out_dir: str | os.PathLike,
    models: list[str] | None = None,
    models_dir: str | os.PathLike = MODELS_DIR,
    thresholds=THRESHOLDS,
    progress: bool = True,
    loader: Callable[[str], Predictor] | None = None,
    photos: Callable[[str], Iterable[LabelledPhoto]] | None = None,
) -> CollectionResults:
    """Evaluate models on a checked collection; write ``eval_<name>.csv`` and ``eval_<name>.json`` to ``out_dir``.

    The CSV has the columns of ``models/eval_test.csv``, the collection's
    name as its split and the collection's species (or none); the JSON is
    :func:`collection_summary`.

    Args:
        collection: a collection with checked pairs (:func:`seg_core.data.collections.check_pairs`).
        out_dir: folder receiving both files.
        models: model names (default: every available one).
        models_dir: folder holding the trained U-Nets.
        thresholds: thresholds swept for probabilistic models.
        progress: show progress bars on stderr.
        loader: model name -> predictor (default: :func:`load_predictor` from ``models_dir``).
        photos: model name -> the photos to run it on (default: the collection's
            pairs decoded one at a time), e.g. to take an admission slot per photo.

    Raises:
        ModelLoadError: a model name is unknown (without ``loader``) or does not load.
        UnusablePairError: a pair became unreadable since it was checked.
    """
    # A caller with its own loader (models loaded already) knows its names; others are checked before any work.
    names = list(dict.fromkeys(models)) if loader is not None and models else model_names(models, models_dir)
    load = loader or (lambda name: load_predictor(name, models_dir))
    rows = []
    for name in names:
        predictor = load(name)
        source = photos(name) if photos is not None else collection.photos()
        rows += evaluate_photos(predictor, source, collection.name, thresholds, progress, len(collection.pairs))
        del predictor
    frame = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = eval_path(out_dir, collection.name)
    _write_atomically(path, frame.to_csv(index=False))
    summary = collection_summary(frame, collection)
    _write_atomically(summary_path(out_dir, collection.name), json.dumps(summary, indent=1) + "\n")
    return CollectionResults(path, frame, summary)


def collection_summary(results: pd.DataFrame, collection: Collection, threshold: float = SUMMARY_THRESHOLD) -> dict:
    """Scores per model at ``threshold`` plus what the collection left out.

    Returns:
        A JSON-ready dict: for each model (in evaluation order) ``kind``,
        ``n`` (photos evaluated), ``threshold``, ``iou_per_photo``,
        ``iou_whole_set``, ``dice_per_photo``, ``dice_whole_set``,
        ``boundary_iou`` (mean per photo), ``boundary_iou_whole_set`` and
        ``median_ms``; then ``collection`` (its name), ``mask_conventions``
        (convention -> photos read in it) and ``skipped`` (``file`` and
        ``reason`` of each file left out).
    """
    rows = at_threshold(results, threshold)
    per_photo = aggregate(rows, ["model"], PER_IMAGE).set_index("model")
    whole_set = aggregate(rows, ["model"], WHOLE_SET).set_index("model")
    by_model = rows.groupby("model")
    summary: dict = {}
    for model in dict.fromkeys(rows["model"]):
        summary[model] = {
            "kind": str(by_model["kind"].first()[model]),
            "n": int(per_photo.loc[model, "photos"]),
            "threshold": threshold,
            "iou_per_photo": float(per_photo.loc[model, "iou"]),
            "iou_whole_set": float(whole_set.loc[model, "iou"]),
            "dice_per_photo": float(per_photo.loc[model, "dice"]),
            "dice_whole_set": float(whole_set.loc[model, "dice"]),
            "boundary_iou": float(per_photo.loc[model, BOUNDARY_IOU]),
            "boundary_iou_whole_set": float(whole_set.loc[model, BOUNDARY_IOU]),
            "median_ms": float(by_model["infer_ms"].median()[model]),
        }
    skipped = [{"file": s.file, "reason": s.reason} for s in collection.skipped]
    return summary | {"collection": collection.name, "mask_conventions": collection.conventions, "skipped": skipped}


@dataclass(frozen=True)
class CollectionNotes:
    """What a collection summary records besides scores: the files left out and the mask conventions read."""

    skipped: tuple[Skipped, ...] = ()
    conventions: tuple[tuple[str, int], ...] = ()


def read_notes(path: str | os.PathLike) -> CollectionNotes:
    """The notes of a collection summary written by :func:`evaluate_collection` (empty when missing or unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
        skipped = tuple(Skipped(str(item["file"]), str(item["reason"])) for item in data.get("skipped", []))
        conventions = tuple((str(name), int(count)) for name, count in data.get("mask_conventions", {}).items())
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return CollectionNotes()
    return CollectionNotes(skipped, conventions)


@dataclass(frozen=True)
class EvaluatedCollection:
    """A collection folder with its results: ``<folder>/eval_<name>.csv`` (and the summary beside it)."""

    name: str
    folder: Path

    @property
    def eval_file(self) -> Path:
        return eval_path(self.folder, self.name)

    @property
    def summary_file(self) -> Path:
        return summary_path(self.folder, self.name)


def evaluated_collections(root: str | os.PathLike) -> list[EvaluatedCollection]:
    """The evaluated collections under ``root``: folders with ``images/``, masks and an ``eval_<name>.csv``.

    A name found in two folders is listed once (the first folder by name).
    """
    found: dict[str, EvaluatedCollection] = {}
    for folder in collection_folders(Path(root)):
        if not (folder / IMAGES_FOLDER).is_dir() or not any((folder / m).is_dir() for m in MASK_FOLDERS):
            continue
        for csv_file in sorted(folder.glob("eval_*.csv")):
            name = csv_file.stem.removeprefix("eval_")
            if NAME_PATTERN.fullmatch(name) and name.lower() not in SPLITS:
                found.setdefault(name, EvaluatedCollection(name, folder))
    return sorted(found.values(), key=lambda c: c.name.lower())


def summarize(results: pd.DataFrame, threshold: float = SUMMARY_THRESHOLD) -> pd.DataFrame:
    """One row per model at ``threshold`` (binary-only baselines: their single row), in file order.

    Returns:
        Columns ``model, kind, photos, accuracy, dice, iou, mean_iou, boundary_iou``
        (whole-set: counts summed over photos first), ``iou_per_image`` (mean of
        per-photo foreground IoU) and ``median_ms`` (median warm inference time).
    """
    rows = at_threshold(results, threshold)
    per_image = aggregate(rows, ["model"], PER_IMAGE).set_index("model")
    by_model = rows.groupby("model")
    table = aggregate(rows, ["model"], WHOLE_SET).set_index("model")
    table = table.assign(
        kind=by_model["kind"].first(), iou_per_image=per_image["iou"], median_ms=by_model["infer_ms"].median()
    )
    return table.loc[list(dict.fromkeys(rows["model"]))].reset_index()[list(SUMMARY_LABELS)]


def format_table(table: pd.DataFrame, columns: Iterable[str], markdown: bool = False) -> str:
    """Render a table for a terminal, or as a Markdown table for the README.

    Headers and number formats come from :mod:`seg_core.core.labels`, so the
    command-line summaries read like the dashboard's tables.

    Args:
        table: the rows to show.
        columns: the columns to show, in this order (a dict's keys will do).
        markdown: Markdown pipe table instead of aligned plain text.

    Returns:
        The table as text, numbers right-aligned.
    """
    columns = list(columns)
    cells = [
        [label(c).format(v) for c, v in zip(columns, row, strict=True)]
        for row in table[columns].itertuples(index=False)
    ]
    header_row = [label(c).text for c in columns]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header_row)]
    numeric = [pd.api.types.is_numeric_dtype(table[c]) for c in columns]

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "| " + " | ".join(padded) + " |" if markdown else "  ".join(padded)

    rule = ["-" * (w - 1) + ":" if markdown and num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    return "\n".join([line(header_row), line(rule)] + [line(r) for r in cells])
