"""Validation metrics page: charts over the Leeds test split or a collection of the user's own photos."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import ui_common
from seg_core.core import labels
from seg_core.core.imaging import InvalidImageError
from seg_core.data.collections import (
    MAX_ZIP_MB,
    NAME_RULE,
    CollectionError,
    collections_dir,
    scan_folder,
    slugify,
    truth_mask,
)
from seg_core.data.leeds import dataset_available, scan_dataset
from seg_core.evaluation import results
from seg_core.evaluation.evaluate import evaluated_collections, read_notes
from seg_core.outputs.postprocess import error_overlay, screen_bytes
from seg_core.runtime.base import DEFAULT_MODEL, InferenceOptions, ModelLoadError
from seg_core.runtime.registry import available_predictors
from seg_core.service import jobs
from seg_core.service.analysis import load_truth
from seg_core.service.collection_eval import CocoUpload, ZipUpload, start_collection_evaluation

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
#: Picker values that are not collection names (a name cannot contain ':').
LEEDS = ":leeds-test"
NEW = ":upload"
ZIP_KIND = "ZIP of images/ and masks/"
COCO_KIND = "Photos and a COCO JSON file"
#: How often a running evaluation's progress bar is redrawn, in seconds.
POLL_S = 1.0
#: Score differences smaller than this count as a draw between two models.
DRAW_MARGIN = 0.001
JOB_KEY = "val_job"
PENDING_KEY = "val_pending_collection"
NOTICE_KEY = "val_upload_notice"


@dataclass(frozen=True)
class Shown:
    """What the page shows: the Leeds test split or one collection.

    Attributes:
        key: :data:`LEEDS` or the collection's name.
        eval_file: its evaluation CSV.
        what: how its photos are named in sentences.
        folder: the collection's folder (None for Leeds).
        summary_file: the collection's summary, with its skipped files (None for Leeds).
    """

    key: str
    eval_file: Path
    what: str
    folder: Path | None = None
    summary_file: Path | None = None

    def widget_key(self, base: str) -> str:
        """A widget key of its own for each collection (the Leeds split keeps the plain key)."""
        return base if self.key == LEEDS else f"{base}@{self.key}"


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


@st.cache_data(show_spinner=False)
def collection_photos(folder: str, mtime: float) -> dict[str, tuple[str, str]]:
    """Image id -> (photo path, mask path) in a collection folder, cached until its results change."""
    return {p.id: (str(p.image_path), str(p.mask_path)) for p in scan_folder(folder).pairs}


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
            tooltip=["model:N", alt.Tooltip("threshold:Q", format=".2f"), alt.Tooltip(f"{metric}:Q", format=".4f")],
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
            tooltip=["model", "image_id", "species:N", alt.Tooltip(f"{metric}:Q", format=".4f")],
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


def versus_chart(table: pd.DataFrame, first: str, second: str, metric: str) -> alt.LayerChart:
    """One dot per photo: ``first``'s score across, ``second``'s up, and the dashed line where they are equal."""
    label = labels.text(metric)
    low = float(min(table["first"].min(), table["second"].min()))
    domain = [max(0.0, min(math.floor(low * 20) / 20, 0.95)), 1.0]
    scale = alt.Scale(domain=domain)
    points = (
        alt.Chart(table)
        .mark_circle(size=45, opacity=0.65, clip=True)
        .encode(
            x=alt.X("first:Q", title=f"{label}: {first}", scale=scale),
            y=alt.Y("second:Q", title=f"{label}: {second}", scale=scale),
            color=alt.condition(f"datum.difference > {DRAW_MARGIN}", alt.value(PALETTE[1]), alt.value(PALETTE[0])),
            tooltip=[
                "image_id",
                "species:N",
                alt.Tooltip("first:Q", title=first, format=".4f"),
                alt.Tooltip("second:Q", title=second, format=".4f"),
                alt.Tooltip("difference:Q", format="+.4f"),
            ],
        )
    )
    diagonal = (
        alt.Chart(pd.DataFrame({"first": domain, "second": domain}))
        .mark_line(strokeDash=[6, 4], color="#555")
        .encode(x="first:Q", y="second:Q")
    )
    return (diagonal + points).properties(height=380)


def has_species(rows: pd.DataFrame) -> bool:
    """Whether the photos have species (every Leeds photo does; a collection only when it names them)."""
    return bool(rows["species"].fillna("").astype(str).str.strip().ne("").any())


def species_label(code: object, names: dict[str, dict[str, str]]) -> str:
    """A photo's species for a caption: its common name where known, its code or name otherwise, or ""."""
    if not isinstance(code, str) or not code:
        return ""
    return names.get(code, {}).get("common", code)


def gallery(
    rows: pd.DataFrame,
    model: str,
    threshold: float,
    photos: dict[str, tuple[str, str]],
    read_truth: Callable[[str, tuple[int, int]], np.ndarray],
    names: dict[str, dict[str, str]],
) -> None:
    """The worst photos of ``model`` with correct, false and missed pixels coloured."""
    worst = results.worst_images(rows, model, threshold, n=GALLERY_SIZE, metric="iou")
    columns = st.columns(3)
    for number, item in enumerate(worst.itertuples(index=False)):
        paths = photos.get(item.image_id)
        column = columns[number % 3]
        if paths is None:
            column.warning(f"{item.image_id} is not in the photo folder.")
            continue
        photo = ui_common.Photo(item.image_id, Path(paths[0]).read_bytes())
        try:
            analysis = ui_common.analysis(photo, model, InferenceOptions()).analysis
            truth = analysis.shrink(read_truth(paths[1], analysis.shape))
        except Exception as exc:  # one unreadable photo must not hide the rest
            with column:
                ui_common.show_problem(item.image_id, exc)
            continue
        mask = analysis.shown_mask(threshold)
        name = species_label(item.species, names)
        scores = f"IoU {labels.fmt('iou', item.iou)}, Dice {labels.fmt('dice', item.dice)}"
        picture = screen_bytes(error_overlay(analysis.shown_image, mask, truth))
        column.image(picture, caption=f"{item.image_id}{f' ({name})' if name else ''}: {scores}")


def notes_section(shown: Shown) -> None:
    """A collection's mask conventions and the files its evaluation left out, from its summary."""
    notes = read_notes(shown.summary_file) if shown.summary_file else None
    if notes is None:
        return
    if notes.conventions:
        read = ", ".join(f"{name} ({count} photos)" for name, count in notes.conventions)
        st.caption(f"Masks read as: {read}.")
    if notes.skipped:
        with st.expander(f"{len(notes.skipped)} file(s) left out"):
            st.markdown("\n".join(f"- `{item.file}`: {item.reason}" for item in notes.skipped))


def distributions_section(at: pd.DataFrame, chosen: list[str], binary: set[str], zoomed: bool, threshold: float):
    """Per-photo IoU and Dice of every chosen model as box plots with one tick per photo."""
    st.subheader("Per-photo distributions", anchor=False)
    colours = model_colours(chosen)
    shown = at[~at["model"].isin(binary)] if zoomed else at
    for column, name in zip(st.columns(2), ("iou", "dice"), strict=True):
        low, high = distribution_domain(shown[name]) if zoomed else (0.0, 1.0)
        column.altair_chart(distribution_chart(shown, name, (low, high), colours), width="stretch")
        outside = int((shown[name] < low).sum())
        if outside:
            column.caption(f"{outside} photo(s) below {low:.2f} lie off the left edge; untick the zoom to see them.")
    st.caption(
        f"One tick per photo at threshold {threshold:.2f}; boxes show quartiles, circles outliers. "
        "Distributions are per photo whatever the aggregation."
        + (" Yes/no baselines are left out while zoomed." if zoomed and set(chosen) & binary else "")
    )


def versus_section(rows: pd.DataFrame, chosen: list[str], threshold: float, metric: str) -> None:
    """Two chosen models photo by photo: where one wins, where the other does."""
    st.subheader("Model against model", anchor=False)
    if len(chosen) < 2:
        st.info("Choose two models or more above to compare them photo by photo.")
        return
    columns = st.columns(2)
    first = columns[0].selectbox(
        "Model",
        chosen,
        index=chosen.index(DEFAULT_MODEL) if DEFAULT_MODEL in chosen else 0,
        key="val_vs_first",
        persist_state=ui_common.KEEP,
    )
    second = columns[1].selectbox(
        "Against", [m for m in chosen if m != first], key="val_vs_second", persist_state=ui_common.KEEP
    )
    table = results.model_against_model(rows, first, second, threshold, metric)
    st.altair_chart(versus_chart(table, first, second, metric), width="stretch")
    better = int((table["difference"] > DRAW_MARGIN).sum())
    worse = int((table["difference"] < -DRAW_MARGIN).sum())
    st.caption(
        f"One dot per photo at threshold {threshold:.2f}; above the dashed line {second} scores higher. "
        f"{second} is better on {better} photo(s), worse on {worse} and within {DRAW_MARGIN} on "
        f"{len(table) - better - worse}."
    )


def scores_section(evaluation: pd.DataFrame, shown: Shown) -> tuple[pd.DataFrame, list[str], float] | None:
    """Controls, score table and charts; returns (rows, chosen models, threshold), or None when none is chosen."""
    path = shown.eval_file
    mtime = path.stat().st_mtime
    photos = evaluation["image_id"].nunique()
    st.write(
        f"Scores of every model on the {photos} {shown.what}, at each photo's own resolution, "
        f"from `{path.parent.name}/{path.name}`."
    )
    notes_section(shown)
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
    chosen = st.multiselect(
        "Models", models, default=models, key=shown.widget_key("val_models"), persist_state=ui_common.KEEP
    )
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
    distributions_section(at, chosen, binary, zoomed, threshold)
    versus_section(rows, chosen, threshold, metric)
    if has_species(at):
        st.subheader("Per species", anchor=False)
        names = ui_common.species() if shown.key == LEEDS else {}
        by_species = results.species_breakdown(rows, threshold, names, mode)
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


def gallery_section(rows: pd.DataFrame, chosen: list[str], threshold: float, shown: Shown) -> None:
    """The worst photos of one chosen model, from the Leeds dataset or the collection's folder."""
    st.subheader("Worst photos", anchor=False)
    if shown.folder is None:
        root = dataset_available()
        if root is None:
            st.info("The gallery needs the Leeds dataset (set WINGMASK_DATA or place it at ../shared/leedsbutterfly).")
            return
        photos, read_truth, names = dataset_photos(str(root)), load_truth, ui_common.species()
    else:
        try:
            photos = collection_photos(str(shown.folder), shown.eval_file.stat().st_mtime)
        except CollectionError as exc:
            st.warning(f"The photos of {shown.key} cannot be read: {exc}")
            return
        read_truth, names = truth_mask, {}
    default = chosen.index(DEFAULT_MODEL) if DEFAULT_MODEL in chosen else 0
    gallery_model = st.selectbox("Model", chosen, index=default, key="val_gallery_model")
    st.caption(
        f"The {GALLERY_SIZE} lowest-IoU photos for {gallery_model} at threshold {threshold:.2f}. "
        "Green: correct butterfly pixels; red: false butterfly; blue: missed butterfly."
    )
    gallery(rows, gallery_model, threshold, photos, read_truth, names)


def collection_label(value: str) -> str:
    """How the picker names its choices."""
    return {LEEDS: "Leeds test split", NEW: "Upload a new collection..."}.get(value, value)


def pick_collection() -> Shown | None:
    """The collection picker: what to show, or None when a new collection is to be uploaded."""
    found = {c.name: c for c in evaluated_collections(collections_dir())}
    # A finished upload selects its collection; the widget's value may only be set before the widget is drawn.
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending in found:
        st.session_state["val_collection"] = pending
    choice = st.selectbox(
        "Collection",
        [LEEDS, *found, NEW],
        format_func=collection_label,
        key="val_collection",
        persist_state=ui_common.KEEP,
        help="The Leeds test split, a collection of your own photos evaluated earlier, or a new one to upload. "
        f"Collections are kept in {collections_dir()} (set WINGMASK_COLLECTIONS to move them).",
    )
    if choice == NEW:
        return None
    if choice == LEEDS:
        return Shown(LEEDS, results.EVAL_TEST_FILE, "held-out test photos")
    picked = found[choice]
    return Shown(
        picked.name, picked.eval_file, f"photos of the collection {picked.name}", picked.folder, picked.summary_file
    )


def failure_text(error: BaseException | None) -> str:
    """Why an evaluation failed, for the page (a bug names its type; the server log has its traceback)."""
    if isinstance(error, (CollectionError, InvalidImageError, ModelLoadError, OSError)):
        return f"**The collection could not be evaluated.** {error}"
    return f"**The collection could not be evaluated** ({type(error).__name__}: {error})."


@st.fragment(run_every=POLL_S)
def job_progress(job_id: int) -> None:
    """The running evaluation's progress bar, redrawn every :data:`POLL_S` s; a finished one reruns the page."""
    status = jobs.process_jobs().status(job_id)
    if status is not None and not status.finished:
        st.progress(status.fraction, text=f"{status.name}: {status.message}")
        if st.button("Cancel", key="val_upload_cancel"):
            jobs.process_jobs().cancel(job_id)
        return
    st.session_state.pop(JOB_KEY, None)
    if status is not None and status.state == jobs.DONE:
        st.session_state[PENDING_KEY] = status.result.name
    elif status is not None and status.state == jobs.FAILED:
        st.session_state[NOTICE_KEY] = ("error", failure_text(status.error))
    elif status is not None:
        st.session_state[NOTICE_KEY] = ("info", "The evaluation was cancelled; nothing was kept.")
    st.rerun()


def start_upload(kind: str, archive, coco, photos: list, name: str, models: list[str]) -> None:
    """Start evaluating the uploaded collection in the background, or say why it cannot start."""
    if kind == ZIP_KIND and archive is None:
        st.error("Choose a ZIP file first.")
        return
    if kind == COCO_KIND and (coco is None or not photos):
        st.error("Choose the COCO JSON file and the photos it describes first.")
        return
    if kind == ZIP_KIND:
        upload, source = ZipUpload(archive.getvalue()), archive.name
    else:
        upload, source = CocoUpload(coco.getvalue(), tuple((f.name, f.getvalue()) for f in photos)), coco.name
    try:
        predictors = {model: ui_common.get_predictor(model) for model in models}
        status = start_collection_evaluation(
            upload, name.strip() or slugify(Path(source).stem), collections_dir(), predictors
        )
    except (CollectionError, jobs.JobBusyError, ModelLoadError) as exc:
        st.error(f"**The collection cannot be evaluated.** {exc}")
        return
    st.session_state[JOB_KEY] = status.id


def upload_section() -> None:
    """The form for a new collection, and the progress of its evaluation."""
    st.subheader("Evaluate your own photos", anchor=False)
    st.write(
        "Upload a ZIP of a folder holding `images/` (photos) and `masks/` (masks with the same file names; "
        "0/255, 0/1, palette or any non-zero as butterfly), or your photos with a COCO instances file from CVAT, "
        "Label Studio or FiftyOne. Every model runs on every photo at its own resolution, in the background; "
        "files that cannot be used are listed with the reason."
    )
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice is not None:
        (st.error if notice[0] == "error" else st.info)(notice[1])
    kind = st.radio(
        "Upload as", [ZIP_KIND, COCO_KIND], horizontal=True, key="val_upload_kind", persist_state=ui_common.KEEP
    )
    archive, coco, photos = None, None, []
    if kind == ZIP_KIND:
        archive = st.file_uploader(
            f"ZIP archive (at most {MAX_ZIP_MB} MB)", type=["zip"], key="val_upload_zip", max_upload_size=MAX_ZIP_MB
        )
    else:
        coco = st.file_uploader("COCO JSON file", type=["json"], key="val_upload_coco")
        photos = (
            st.file_uploader("Photos", type=ui_common.UPLOAD_TYPES, accept_multiple_files=True, key="val_upload_photos")
            or []
        )
    name = st.text_input(
        "Collection name",
        key="val_upload_name",
        persist_state=ui_common.KEEP,
        placeholder="the file's name",
        help=f"{NAME_RULE}.",
    )
    every = available_predictors()
    models = st.multiselect("Models", every, default=every, key="val_upload_models", persist_state=ui_common.KEEP)
    busy = jobs.process_jobs().running()
    mine = st.session_state.get(JOB_KEY)
    if busy is not None and busy.id != mine:
        st.info(f"Another collection is being evaluated ({busy.name}); yours can start once it has finished.")
    if st.button("Evaluate", type="primary", key="val_upload_start", disabled=busy is not None or not models):
        start_upload(kind, archive, coco, photos, name, models)
    if st.session_state.get(JOB_KEY) is not None:
        job_progress(st.session_state[JOB_KEY])


st.title("Validation metrics")
shown = pick_collection()
chosen_scores = None
if shown is None:
    upload_section()
else:
    evaluation = ui_common.eval_results(shown.eval_file, "validation metrics")
    chosen_scores = scores_section(evaluation, shown) if evaluation is not None else None
latency_section()
if chosen_scores is not None:
    gallery_section(*chosen_scores, shown)
