"""Evaluate every model on a split at each photo's own resolution.

Writes ``models/eval_<split>.csv``: one row per (model, photo, threshold) with
the pixel confusion counts, the boundary-band counts of Boundary IoU and the warm
inference time, so the dashboard can compute any metric at any threshold,
whole-set or per photo, without running a network. Binary-only baselines get one row per photo with an empty threshold.

    python -m seg_core.evaluate --data ../shared/leedsbutterfly --split test
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from seg_core.core.labels import headers, label
from seg_core.core.metrics import BoundaryCounts, Confusion, boundary_counts, confusion, mask_boundary
from seg_core.core.paths import MODELS_DIR
from seg_core.data.leeds import (
    SPLIT_FILE,
    DatasetNotFoundError,
    load_split_photos,
    resolve_data_dir,
    write_species,
)
from seg_core.evaluation.results import (
    EVAL_COLUMNS,
    PER_IMAGE,
    WHOLE_SET,
    aggregate,
    at_threshold,
)
from seg_core.runtime.base import Predictor, threshold_mask
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


def evaluate_predictor(
    predictor: Predictor,
    ids: list[str],
    images: list[np.ndarray],
    masks: list[np.ndarray],
    split: str,
    thresholds=THRESHOLDS,
    progress: bool = True,
) -> list[dict]:
    """Evaluate one predictor on already loaded photos.

    One warm-up prediction comes first so ``infer_ms`` excludes one-off costs
    (graph tracing, lazy initialisation).

    Args:
        predictor: the model to run.
        ids, images, masks: photo ids, RGB photos and boolean ground truths, aligned.
        split: split name written on each row.
        thresholds: thresholds swept when the predictor is not binary-only.
        progress: show a progress bar on stderr.

    Returns:
        Rows with the columns ``EVAL_COLUMNS`` of :mod:`seg_core.evaluation.results`.
    """
    if images:
        predictor.predict_proba(images[0])
    rows = []
    for image_id, image, truth in tqdm(
        list(zip(ids, images, masks, strict=True)),
        desc=f"{predictor.name} ({split})",
        file=sys.stderr,
        disable=not progress,
    ):
        started = time.perf_counter()
        prob = predictor.predict_proba(image)
        infer_ms = round((time.perf_counter() - started) * 1000.0, 3)
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
        base = {"model": predictor.name, "kind": predictor.kind, "image_id": image_id, "species": image_id[:3]}
        base |= {"split": split, "height": height, "width": width}
        for threshold, c, b in counts:
            rows.append(
                base
                | {"threshold": threshold, "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}
                | {"boundary_intersection": b.intersection, "boundary_union": b.union, "infer_ms": infer_ms}
            )
    return rows


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
