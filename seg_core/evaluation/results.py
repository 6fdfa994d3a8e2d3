"""Reading and aggregating the committed evaluation and benchmark results.

``models/eval_test.csv`` holds one row per (model, photo, threshold) with the
pixel confusion counts; binary-only baselines have one row per photo with an
empty threshold, and that row applies at every threshold. Every metric is
computed from those counts through :mod:`seg_core.core.metrics`, either per photo
and then averaged ("per-image") or from the counts summed over the photos
("whole-set"). Boundary IoU comes the same way from the intersection and union
of the two masks' boundary bands, counted at the photo's own resolution.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from seg_core.core.metrics import METRICS, BoundaryCounts, Confusion, all_metrics
from seg_core.core.paths import MODELS_DIR
from seg_core.data.leeds import SPLITS

EVAL_TEST_FILE = MODELS_DIR / "eval_test.csv"
BENCH_FILE = MODELS_DIR / "bench.csv"

COUNT_COLUMNS = ["tp", "fp", "fn", "tn"]
#: Pixels in the intersection and the union of the predicted and true masks' boundary bands.
BOUNDARY_COLUMNS = ["boundary_intersection", "boundary_union"]
EVAL_COLUMNS = [
    "model",
    "kind",
    "image_id",
    "species",
    "split",
    "height",
    "width",
    "threshold",
    *COUNT_COLUMNS,
    *BOUNDARY_COLUMNS,
    "infer_ms",
]
BENCH_COLUMNS = [
    "model",
    "kind",
    "runtime",
    "precision",
    "default",
    "reference",
    "parameters",
    "file_mb",
    "load_s",
    "latency_median_ms",
    "latency_p95_ms",
    "throughput_batch8_ips",
    "peak_rss_mb",
    "photos",
    "machine",
    "cpu_flags",
    "measured_at",
]
BOUNDARY_IOU = "boundary_iou"
METRIC_NAMES = (*METRICS, BOUNDARY_IOU)
PER_IMAGE = "per-image"
WHOLE_SET = "whole-set"
AGGREGATIONS = (PER_IMAGE, WHOLE_SET)


class ResultsMissingError(FileNotFoundError):
    """A results file has not been produced yet."""


class ResultsFormatError(ValueError):
    """A results file exists but does not follow the documented columns."""


def _read_csv(path: str | os.PathLike, columns: list[str], what: str, dtype: dict, fix: str = "") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ResultsMissingError(f"{what} results file missing: {path}")
    try:
        df = pd.read_csv(path, dtype=dtype)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise ResultsFormatError(f"{path} is not a readable CSV file ({exc})") from exc
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ResultsFormatError(f"{path} lacks the columns {missing}" + (f"; {fix}" if fix else ""))
    return df


def load_eval(path: str | os.PathLike = EVAL_TEST_FILE) -> pd.DataFrame:
    """Read an evaluation file and check it against the documented format.

    Args:
        path: the CSV file (default ``models/eval_test.csv``).

    Returns:
        The rows, with ``image_id`` and ``species`` as strings (zero-padded on
        Leeds rows; a collection's species may be NaN) and a float
        ``threshold`` that is NaN on binary-only rows.

    Raises:
        ResultsMissingError: the file does not exist.
        ResultsFormatError: it is not CSV, lacks columns, or its counts do not add up.
    """
    text = {"model": str, "kind": str, "image_id": str, "species": str, "split": str}
    # Files written before the boundary columns existed lack them; the fix is a new evaluation.
    df = _read_csv(path, EVAL_COLUMNS, "evaluation", text, "rerun `python -m seg_core.evaluate` to rewrite it")
    # Leeds ids and species codes lose their leading zeros in a spreadsheet; a collection's names are kept as they are.
    leeds = df["split"].isin(SPLITS)
    df.loc[leeds, "image_id"] = df.loc[leeds, "image_id"].str.zfill(7)
    df.loc[leeds, "species"] = df.loc[leeds, "species"].str.zfill(3)
    try:
        df["threshold"] = pd.to_numeric(df["threshold"]).round(2)
        for column in [*COUNT_COLUMNS, *BOUNDARY_COLUMNS, "height", "width"]:
            df[column] = pd.to_numeric(df[column]).astype("int64")
        df["infer_ms"] = pd.to_numeric(df["infer_ms"])
    except (ValueError, TypeError) as exc:
        raise ResultsFormatError(f"{path} has non-numeric counts or thresholds ({exc})") from exc
    bad = df[COUNT_COLUMNS].sum(axis=1) != df["height"] * df["width"]
    if bad.any():
        raise ResultsFormatError(f"{path}: tp+fp+fn+tn differs from height*width on {int(bad.sum())} rows")
    inter, union = (df[c] for c in BOUNDARY_COLUMNS)
    bad = (inter < 0) | (inter > union) | (union > df["height"] * df["width"])
    if bad.any():
        raise ResultsFormatError(
            f"{path}: boundary counts are not 0 <= intersection <= union <= height*width on {int(bad.sum())} rows"
        )
    return df


def load_bench(path: str | os.PathLike = BENCH_FILE) -> pd.DataFrame:
    """Read the benchmark file (one row per model, runtime and precision).

    ``default`` marks the row of the runtime and precision that
    ``load_predictor`` picks for the model; ``cpu_flags`` names the CPU's
    BF16/AMX instructions ("none" without them).

    Raises:
        ResultsMissingError: the file does not exist.
        ResultsFormatError: it is not CSV or lacks columns.
    """
    text = {
        "model": str,
        "kind": str,
        "runtime": str,
        "precision": str,
        "machine": str,
        "cpu_flags": str,
        "photos": str,
    }
    df = _read_csv(path, BENCH_COLUMNS, "benchmark", text)
    for column in ("reference", "default"):
        df[column] = df[column].astype(str).str.lower().isin(["true", "1", "yes"])
    return df


def thresholds(df: pd.DataFrame) -> list[float]:
    """The thresholds evaluated in ``df``, ascending (binary-only rows excluded)."""
    return sorted(float(t) for t in df["threshold"].dropna().unique())


def binary_models(df: pd.DataFrame) -> set[str]:
    """Models whose rows all lack a threshold (yes/no predictors)."""
    has_threshold = df["threshold"].notna().groupby(df["model"]).any()
    return set(has_threshold.index[~has_threshold])


def at_threshold(df: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The rows that describe masks at ``threshold``.

    Binary-only rows (NaN threshold) are included whatever the threshold,
    because their masks do not depend on it.

    Args:
        df: evaluation rows.
        threshold: a threshold present in the file (compared at 2 decimals).

    Returns:
        A copy of the matching rows.
    """
    keep = df["threshold"].isna() | (df["threshold"].round(2) == round(float(threshold), 2))
    return df[keep].copy()


def _scores(counts: pd.DataFrame) -> list[dict[str, float]]:
    """Every metric of :data:`METRIC_NAMES` for each row of confusion and boundary counts."""
    values = []
    for row in counts[COUNT_COLUMNS + BOUNDARY_COLUMNS].to_numpy(dtype=np.int64):
        scores = all_metrics(Confusion(*(int(v) for v in row[:4])))
        values.append(scores | {BOUNDARY_IOU: BoundaryCounts(int(row[4]), int(row[5])).iou})
    return values


def with_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Add one column per metric of :data:`METRIC_NAMES`, computed per row.

    Args:
        df: rows with ``tp``, ``fp``, ``fn``, ``tn`` and the boundary counts.

    Returns:
        A copy of ``df`` with the metric columns added.
    """
    out = df.copy()
    values = _scores(out)
    for name in METRIC_NAMES:
        out[name] = [v[name] for v in values] if values else pd.Series(dtype=float)
    return out


def aggregate(df: pd.DataFrame, by: list[str], mode: str = PER_IMAGE) -> pd.DataFrame:
    """Metrics per group, averaged over photos or from the summed counts.

    Args:
        df: evaluation rows of ONE threshold (see :func:`at_threshold`).
        by: grouping columns, e.g. ``["model"]`` or ``["model", "species"]``.
        mode: ``"per-image"`` (mean of each photo's metric) or ``"whole-set"``
            (metric of the counts summed over the group's photos).

    Returns:
        One row per group: the ``by`` columns, ``photos`` and every metric.
    """
    if mode not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {mode!r}; use one of {AGGREGATIONS}")
    groups = df.groupby(by, sort=True, dropna=False)
    photos = groups.size().rename("photos")
    if mode == PER_IMAGE:
        scored = df if set(METRIC_NAMES) <= set(df.columns) else with_metrics(df)
        table = scored.groupby(by, sort=True, dropna=False)[list(METRIC_NAMES)].mean()
    else:
        sums = groups[COUNT_COLUMNS + BOUNDARY_COLUMNS].sum()
        table = pd.DataFrame(_scores(sums), index=sums.index, columns=list(METRIC_NAMES))
    return pd.concat([photos, table], axis=1).reset_index()


def threshold_curves(df: pd.DataFrame, mode: str = PER_IMAGE) -> pd.DataFrame:
    """Metrics of every model at every evaluated threshold.

    Binary-only models get the same values at every threshold, so they show
    as flat lines beside the U-Nets' curves.

    Args:
        df: all evaluation rows.
        mode: ``"per-image"`` or ``"whole-set"``.

    Returns:
        One row per (model, threshold) with every metric.
    """
    scored = with_metrics(df) if mode == PER_IMAGE else df
    frames = [aggregate(at_threshold(scored, t), ["model"], mode).assign(threshold=t) for t in thresholds(df)]
    if not frames:
        return pd.DataFrame(columns=["model", "threshold", "photos", *METRIC_NAMES])
    return pd.concat(frames, ignore_index=True)


def species_breakdown(
    df: pd.DataFrame, threshold: float, species: dict[str, dict[str, str]], mode: str = PER_IMAGE
) -> pd.DataFrame:
    """Metrics per (model, species) at one threshold, with readable species names.

    Args:
        df: all evaluation rows.
        threshold: the threshold to read.
        species: code -> {"latin", "common"}, as from :func:`seg_core.data.leeds.load_species`.
        mode: ``"per-image"`` or ``"whole-set"``.

    Returns:
        One row per (model, species) with ``species_name`` and every metric.
    """
    table = aggregate(at_threshold(df, threshold), ["model", "species"], mode)
    names = {code: f"{entry['common']} ({code})" for code, entry in species.items()}
    table.insert(2, "species_name", table["species"].map(names).fillna(table["species"]))
    return table


def worst_images(df: pd.DataFrame, model: str, threshold: float, n: int = 6, metric: str = "iou") -> pd.DataFrame:
    """The ``n`` photos on which ``model`` scores lowest at ``threshold``.

    Args:
        df: all evaluation rows.
        model: model name.
        threshold: the threshold to read.
        n: how many photos.
        metric: a name from :data:`METRIC_NAMES`.

    Returns:
        Up to ``n`` rows (image_id, species, every metric), worst first.
    """
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRIC_NAMES}")
    rows = with_metrics(at_threshold(df[df["model"] == model], threshold))
    rows = rows.sort_values([metric, "image_id"], kind="stable").head(n)
    return rows[["image_id", "species", *METRIC_NAMES]].reset_index(drop=True)


def model_against_model(
    df: pd.DataFrame, first: str, second: str, threshold: float, metric: str = "iou"
) -> pd.DataFrame:
    """Two models' scores on each photo both were evaluated on, at ``threshold``.

    Args:
        df: all evaluation rows.
        first, second: model names.
        threshold: the threshold to read.
        metric: a name from :data:`METRIC_NAMES`.

    Returns:
        One row per photo: ``image_id``, ``species``, ``first`` and ``second``
        (the two models' ``metric``) and ``difference`` (second minus first), in image id order.
    """
    if metric not in METRIC_NAMES:
        raise ValueError(f"unknown metric {metric!r}; use one of {METRIC_NAMES}")
    rows = at_threshold(df[df["model"].isin([first, second])], threshold)
    scored = rows if metric in rows.columns else with_metrics(rows)
    pick = {model: scored[scored["model"] == model].set_index("image_id") for model in (first, second)}
    table = pd.DataFrame({"first": pick[first][metric], "second": pick[second][metric]}).dropna()
    table.insert(0, "species", pick[first]["species"].reindex(table.index))
    table["difference"] = table["second"] - table["first"]
    return table.sort_index().rename_axis("image_id").reset_index()


def latency_long(bench: pd.DataFrame) -> pd.DataFrame:
    """Median and p95 latency per model in long form, for a grouped bar chart.

    Returns:
        Columns model, kind, reference, statistic ("median" or "p95"), ms.
    """
    table = bench[["model", "kind", "reference", "latency_median_ms", "latency_p95_ms"]].rename(
        columns={"latency_median_ms": "median", "latency_p95_ms": "p95"}
    )
    return table.melt(id_vars=["model", "kind", "reference"], var_name="statistic", value_name="ms")


def model_table(
    catalogue: pd.DataFrame,
    evaluation: pd.DataFrame | None,
    bench: pd.DataFrame | None,
    threshold: float = 0.5,
    mode: str = PER_IMAGE,
) -> pd.DataFrame:
    """The catalogue of models joined with their test scores and latency.

    A model benchmarked under several runtimes gets the row marked ``default``
    (the runtime and precision ``load_predictor`` picks), so the table keeps
    one row per model.

    Args:
        catalogue: one row per model with at least a ``model`` column.
        evaluation: evaluation rows, or None when the file is missing.
        bench: benchmark rows, or None when the file is missing.
        threshold: threshold for the IoU and Dice columns.
        mode: ``"per-image"`` or ``"whole-set"``.

    Returns:
        ``catalogue`` plus ``iou``, ``dice``, ``latency_median_ms`` and, where
        the benchmark has them, ``runtime`` and ``precision`` columns (NaN where
        a result is missing).
    """
    table = catalogue.copy()
    if evaluation is not None and len(evaluation):
        scores = aggregate(at_threshold(evaluation, threshold), ["model"], mode)[["model", "iou", "dice"]]
        table = table.merge(scores, on="model", how="left")
    else:
        table = table.assign(iou=np.nan, dice=np.nan)
    if bench is not None and len(bench):
        if "default" in bench.columns:
            bench = bench[bench["default"].astype(bool)]
        columns = ["model", *(c for c in ("runtime", "precision") if c in bench.columns), "latency_median_ms"]
        table = table.merge(bench[columns].drop_duplicates("model"), on="model", how="left")
    else:
        table = table.assign(latency_median_ms=np.nan)
    return table
