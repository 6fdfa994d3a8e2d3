"""Validation metrics page: charts over the committed test-set evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

import ui_common
from seg_core.core import labels
from seg_core.data.leeds import dataset_available, scan_dataset
from seg_core.evaluation import results
from seg_core.outputs.postprocess import error_overlay, screen_bytes
from seg_core.runtime.base import DEFAULT_MODEL, InferenceOptions
from seg_core.service.analysis import load_truth

ui_common.require_app_navigation()

GALLERY_SIZE = 6
#: Share of photos a zoomed distribution may leave off its left edge (the worst 2%).
ZOOM_QUANTILE = 0.02
#: Strong, distinct colours; the headline model gets the first (the app's own colour).
PALETTE = ["#c2185b", "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#5d4037", "#546e7a"]
#: The latency table's columns; parameters, weights and load time are on the Home page.
BENCH_SHOWN = [
    "model",
    "runtime",
    "precision",
    "default",
    "latency_median_ms",
    "latency_p95_ms",
    "throughput_batch8_ips",
    "peak_rss_mb",
]


@st.cache_data(show_spinner=False)
def scored(path: str, mtime: float) -> pd.DataFrame:
    """Evaluation rows with per-photo metrics, cached until the file changes."""
    return results.with_metrics(results.load_eval(path))


@st.cache_data(show_spinner=False)
def curves(path: str, mtime: float, mode: str) -> pd.DataFrame:
    """Metrics against threshold for every model, cached until the file changes."""
    return results.threshold_curves(results.load_eval(path), mode)


@st.cache_resource(show_spinner=False)
def dataset_photos(root: str) -> dict[str, tuple[str, str]]:
    """Image id -> (photo path, mask path) in the dataset folder."""
    return {s.id: (str(s.image_path), str(s.mask_path)) for s in scan_dataset(root).samples}


def model_colours(models: list[str]) -> alt.Scale:
    """The same colour for a model on every chart, the headline model first and strongest."""
    ordered = sorted(models, key=lambda m: (m != DEFAULT_MODEL, m))
    return alt.Scale(domain=ordered, range=PALETTE[: len(ordered)] or PALETTE[:1])


def threshold_chart(
    table: pd.DataFrame, metric: str, threshold: float, domain: tuple[float, float] | None, colours: alt.Scale
) -> alt.LayerChart:
    """Metric curves per model, the headline model drawn thicker, with a dashed rule at the chosen threshold."""
    label = labels.text(metric)
    y_scale = alt.Scale(domain=list(domain), zero=False) if domain else alt.Scale(zero=False)
    lines = (
        alt.Chart(table)
        .mark_line(point=alt.OverlayMarkDef(size=18), clip=True)
        .encode(
            x=alt.X("threshold:Q", title="Threshold", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y(f"{metric}:Q", title=label, scale=y_scale),
            color=alt.Color("model:N", title="Model", scale=colours),
            strokeWidth=alt.condition(f"datum.model == '{DEFAULT_MODEL}'", alt.value(3.5), alt.value(1.8)),
            tooltip=["model", alt.Tooltip("threshold:Q", format=".2f"), alt.Tooltip(f"{metric}:Q", format=".4f")],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"threshold": [threshold]}))
        .mark_rule(strokeDash=[6, 4], color="#555")
        .encode(x="threshold:Q")
    )
    return (lines + rule).properties(height=340)


def zoom_domain(table: pd.DataFrame, metric: str, models: set[str]) -> tuple[float, float] | None:
    """A y range that fits the curves of ``models`` (None when there are none)."""
    values = table.loc[table["model"].isin(models), metric]
    if values.empty:
        return None
    pad = max(0.005, (values.max() - values.min()) * 0.1)
    return float(values.min() - pad), float(min(1.0, values.max() + pad))


def distribution_domain(values: pd.Series) -> tuple[float, float]:
    """An x range from just below most photos' scores to 1 (the worst :data:`ZOOM_QUANTILE` may fall outside)."""
    low = math.floor(float(values.quantile(ZOOM_QUANTILE)) * 20) / 20
    return max(0.0, min(low, 0.95)), 1.0


def distribution_chart(
    rows: pd.DataFrame, metric: str, domain: tuple[float, float], colours: alt.Scale
) -> alt.LayerChart:
    """Box plot and one tick per photo of a metric, per model, on the x range ``domain``."""
    x = alt.X(f"{metric}:Q", title=f"{labels.text(metric)} per photo", scale=alt.Scale(domain=list(domain)))
    y = alt.Y("model:N", title=None, sort=colours.domain, axis=alt.Axis(labelLimit=200))
    colour = alt.Color("model:N", legend=None, scale=colours)
    box = alt.Chart(rows).mark_boxplot(extent=1.5, opacity=0.6, size=22, clip=True).encode(x=x, y=y, color=colour)
    ticks = (
        alt.Chart(rows)
        .mark_tick(opacity=0.35, thickness=1, clip=True)
        .encode(
            x=x,
            y=y,
            color=colour,
            tooltip=["model", "image_id", "species", alt.Tooltip(f"{metric}:Q", format=".4f")],
        )
    )
    return (box + ticks).properties(height=max(140, 48 * rows["model"].nunique()))


def species_chart(table: pd.DataFrame, metric: str) -> alt.LayerChart:
    """Heat map of a metric per species and model, values printed in the cells."""
    label = labels.text(metric)
    base = alt.Chart(table).encode(
        x=alt.X("model:N", title=None, axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("species_name:N", title=None, axis=alt.Axis(labelLimit=180)),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(f"{metric}:Q", title=label, scale=alt.Scale(scheme="viridis")),
        tooltip=["model", "species_name", "photos", alt.Tooltip(f"{metric}:Q", format=".4f")],
    )
    middle = (table[metric].min() + table[metric].max()) / 2
    text = base.mark_text(fontSize=12).encode(
        text=alt.Text(f"{metric}:Q", format=".3f"),
        color=alt.condition(f"datum.{metric} > {middle}", alt.value("black"), alt.value("white")),
    )
    return (cells + text).properties(height=32 * table["species"].nunique())


def latency_chart(long: pd.DataFrame) -> alt.Chart:
    """Median and p95 latency per model as dots on a log axis; reference rows drawn pale.

    Times run from a fraction of a millisecond (Otsu) to seconds (the reference
    network), so bars from zero would flatten all but the slowest model.
    """
    return (
        alt.Chart(long)
        .mark_point(filled=True, size=90)
        .encode(
            x=alt.X("ms:Q", title="Milliseconds per photo (log scale)", scale=alt.Scale(type="log")),
            y=alt.Y("model:N", title=None, sort="x", axis=alt.Axis(labelLimit=200)),
            shape=alt.Shape("statistic:N", title="Latency", scale=alt.Scale(range=["circle", "diamond"])),
            opacity=alt.condition("datum.reference", alt.value(0.45), alt.value(1.0)),
            color=alt.Color("statistic:N", title="Latency", scale=alt.Scale(range=["#c2185b", "#f48fb1"])),
            tooltip=["model", "statistic", alt.Tooltip("ms:Q", format=".1f")],
        )
        .properties(height=max(160, 30 * long["model"].nunique()))
    )


def gallery(rows: pd.DataFrame, model: str, threshold: float, root: str) -> None:
    """The worst photos of ``model`` with correct, false and missed pixels coloured."""
    photos = dataset_photos(root)
    worst = results.worst_images(rows, model, threshold, n=GALLERY_SIZE, metric="iou")
    columns = st.columns(3)
    for number, item in enumerate(worst.itertuples(index=False)):
        paths = photos.get(item.image_id)
        column = columns[number % 3]
        if paths is None:
            column.warning(f"{item.image_id} is not in the dataset folder.")
            continue
        photo = ui_common.Photo(item.image_id, Path(paths[0]).read_bytes())
        try:
            analysis = ui_common.analysis(photo, model, InferenceOptions()).analysis
            truth = analysis.shrink(load_truth(paths[1], analysis.shape))
        except Exception as exc:  # one unreadable photo must not hide the rest
            with column:
                ui_common.show_problem(item.image_id, exc)
            continue
        mask = analysis.shown_mask(threshold)
        name = ui_common.species().get(item.species, {}).get("common", item.species)
        scores = f"IoU {labels.fmt('iou', item.iou)}, Dice {labels.fmt('dice', item.dice)}"
        picture = screen_bytes(error_overlay(analysis.shown_image, mask, truth))
        column.image(picture, caption=f"{item.image_id} ({name}): {scores}")


def scores_section(evaluation: pd.DataFrame, path: Path) -> tuple[pd.DataFrame, list[str], float] | None:
    """Controls, score table and charts; returns (rows, chosen models, threshold), or None when none is chosen."""
    mtime = path.stat().st_mtime
    photos = evaluation["image_id"].nunique()
    st.write(
        f"Scores of every model on the {photos} held-out test photos, at each photo's own resolution, "
        f"from `{path.parent.name}/{path.name}`."
    )
    options = results.thresholds(evaluation) or [0.5]
    controls = st.columns([3, 2, 2])
    threshold = controls[0].select_slider(
        "Threshold",
        options=options,
        value=min(options, key=lambda t: abs(t - 0.5)),
        format_func=lambda t: f"{t:.2f}",
        key="val_threshold",
        persist_state=ui_common.KEEP,
    )
    mode = controls[1].radio(
        "Aggregation",
        results.AGGREGATIONS,
        horizontal=True,
        key="val_mode",
        persist_state=ui_common.KEEP,
        help="per-image: the mean of each photo's score. whole-set: one score from all photos' pixels together.",
    )
    metric = controls[2].selectbox(
        "Metric",
        sorted(results.METRIC_NAMES, key=lambda name: name != "iou"),
        format_func=labels.text,
        key="val_metric",
        persist_state=ui_common.KEEP,
    )
    models = sorted(evaluation["model"].unique())
    chosen = st.multiselect("Models", models, default=models, key="val_models", persist_state=ui_common.KEEP)
    rows = scored(str(path), mtime)
    rows = rows[rows["model"].isin(chosen)]
    if rows.empty:
        st.info("Choose at least one model to see its scores.")
        return None
    colours = model_colours(chosen)
    binary = results.binary_models(evaluation)

    st.subheader(f"Scores at threshold {threshold:.2f} ({mode})", anchor=False)
    at = results.at_threshold(rows, threshold)
    summary = results.aggregate(at, ["model"], mode).sort_values("iou", ascending=False)
    st.dataframe(summary, hide_index=True, column_config=ui_common.COLUMNS)

    st.subheader("Metrics against threshold", anchor=False)
    zoom = st.checkbox(
        "Zoom on the models that use a threshold",
        value=True,
        key="val_zoom",
        persist_state=ui_common.KEEP,
        disabled=set(chosen) <= binary,
        help="Yes/no baselines are flat lines and spread over the whole 0-1 range; zooming leaves them out "
        "of the per-photo charts and lets their curves fall below the visible range.",
    )
    zoomed = zoom and not set(chosen) <= binary
    curve = curves(str(path), mtime, mode)
    curve = curve[curve["model"].isin(chosen)]
    domain = zoom_domain(curve, metric, set(chosen) - binary) if zoomed else None
    st.altair_chart(threshold_chart(curve, metric, threshold, domain, colours), width="stretch")
    st.caption(
        f"The dashed line marks the chosen threshold; {DEFAULT_MODEL}, the app's default model, is drawn thicker. "
        "Baselines that answer yes/no are flat; their scores are in the table above."
    )

    st.subheader("Per-photo distributions", anchor=False)
    shown = at[~at["model"].isin(binary)] if zoomed else at
    for column, name in zip(st.columns(2), ("iou", "dice"), strict=True):
        low, high = distribution_domain(shown[name]) if zoomed else (0.0, 1.0)
        column.altair_chart(distribution_chart(shown, name, (low, high), colours), width="stretch")
        outside = int((shown[name] < low).sum())
        if outside:
            column.caption(f"{outside} photo(s) below {low:.2f} lie off the left edge; untick the zoom to see them.")
    st.caption(
        f"One tick per test photo at threshold {threshold:.2f}; boxes show quartiles, circles outliers. "
        "Distributions are per photo whatever the aggregation."
        + (" Yes/no baselines are left out while zoomed." if zoomed and set(chosen) & binary else "")
    )

    st.subheader("Per species", anchor=False)
    by_species = results.species_breakdown(rows, threshold, ui_common.species(), mode)
    st.altair_chart(species_chart(by_species, metric), width="stretch")
    return rows, chosen, threshold


def latency_label(row, bench: pd.DataFrame) -> str:
    """A latency row's name: model, runtime and precision, "(in use)" marking the app's pick among several."""
    precision = "" if row.precision in ("-", "") else f" {row.precision}"
    several = int((bench["model"] == row.model).sum()) > 1
    return f"{row.model} · {row.runtime}{precision}" + (" (in use)" if several and row.default else "")


def latency_section() -> None:
    """Benchmark chart and table; independent of the models chosen above."""
    st.subheader("Latency", anchor=False)
    bench = ui_common.bench_results(results.BENCH_FILE, "latency chart")
    if bench is None:
        return
    bars = bench
    if bench["model"].duplicated().any() and {"runtime", "precision", "default"} <= set(bench.columns):
        bars = bench.assign(model=[latency_label(row, bench) for row in bench.itertuples()])
    st.altair_chart(latency_chart(results.latency_long(bars)), width="stretch")
    st.dataframe(
        bench[[c for c in BENCH_SHOWN if c in bench.columns]],
        hide_index=True,
        column_config=ui_common.COLUMNS | {"model": st.column_config.TextColumn("Model", width="medium")},
    )
    machines = ", ".join(sorted(bench["machine"].dropna().astype(str).unique()))
    dates = ", ".join(sorted(bench["measured_at"].dropna().astype(str).unique()))
    photos = ", ".join(sorted(bench["photos"].dropna().astype(str).unique()))
    st.caption(
        f"One photo at a time (photos: {photos}; the default path with its second look where it triggers), "
        f"measured on {machines} ({dates}). Pale dots: reference rows (e.g. an untrained network) that show cost only."
    )


def gallery_section(rows: pd.DataFrame, chosen: list[str], threshold: float) -> None:
    """The worst test photos of one chosen model."""
    st.subheader("Worst photos", anchor=False)
    root = dataset_available()
    if root is None:
        st.info("The gallery needs the Leeds dataset (set WINGMASK_DATA or place it at ../shared/leedsbutterfly).")
        return
    default = chosen.index(DEFAULT_MODEL) if DEFAULT_MODEL in chosen else 0
    gallery_model = st.selectbox("Model", chosen, index=default, key="val_gallery_model")
    st.caption(
        f"The {GALLERY_SIZE} lowest-IoU test photos for {gallery_model} at threshold {threshold:.2f}. "
        "Green: correct butterfly pixels; red: false butterfly; blue: missed butterfly."
    )
    gallery(rows, gallery_model, threshold, str(root))


st.title("Validation metrics")
path = results.EVAL_TEST_FILE
evaluation = ui_common.eval_results(path, "validation metrics")
chosen_scores = scores_section(evaluation, path) if evaluation is not None else None
latency_section()
if chosen_scores is not None:
    gallery_section(*chosen_scores)
