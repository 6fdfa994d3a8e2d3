"""Segment page: photos in, masks and cut-outs out, with optional scoring."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

import ui_common
from seg_core import labels, outputs
from seg_core.analysis import MaskSettings, Outcome, finish, views
from seg_core.inference import InferenceOptions, ModelLoadError, Predictor, available_predictors
from seg_core.postprocess import foreground_fraction

ui_common.require_app_navigation()


@dataclass(frozen=True)
class Settings:
    """Everything the user chose that shapes the results."""

    predictor: Predictor
    mask: MaskSettings
    options: InferenceOptions


@dataclass(frozen=True)
class Result:
    """One photo's outcome at the current settings, and its model time's provenance."""

    outcome: Outcome
    timed: ui_common.Timed


def settings_panel() -> Settings:
    """Model, threshold, clean-up and inference switches, on the page itself (usable on a phone)."""
    model = st.selectbox("Model", available_predictors(), key="seg_model", persist_state=ui_common.KEEP)
    try:
        predictor = ui_common.get_predictor(model)
    except ModelLoadError as exc:
        ui_common.show_problem(model, exc)
        st.stop()
    threshold = ui_common.threshold_slider(
        "seg_threshold",
        disabled=predictor.binary_only,
        help=f"{model} answers yes/no per pixel, so the threshold changes nothing."
        if predictor.binary_only
        else "Pixels whose butterfly probability is at least this value form the mask. "
        "Moving it does not run the model again.",
    )
    with st.expander("More settings"):
        largest = st.checkbox("Keep only the largest region", key="seg_largest", persist_state=ui_common.KEEP)
        holes = st.checkbox("Fill holes", key="seg_holes", persist_state=ui_common.KEEP)
        options = ui_common.inference_options("seg")
    return Settings(predictor, MaskSettings(threshold, largest, holes), options)


def process(photo: ui_common.Photo, settings: Settings) -> Result:
    """Analyse (cached: the network runs once per photo, model and options), then threshold, clean and score."""
    timed = ui_common.analysis(photo, settings.predictor.name, settings.options)
    return Result(finish(timed.analysis, settings.mask, photo.truth), timed)


def figures(result: Result, photo: ui_common.Photo, predictor: Predictor) -> None:
    """Size, foreground, model time and scores in one row that wraps on a narrow screen."""
    mask = result.outcome.mask
    height, width = mask.shape
    scores = result.outcome.scores
    with st.container(horizontal=True, gap="medium"):
        st.metric("Size", f"{width}x{height}", width="content")
        st.metric("Foreground", f"{foreground_fraction(mask):.1%}", width="content")
        st.metric("Model time", result.timed.time_text(), help=labels.label("model_ms").help, width="content")
        if scores is not None:
            for name in ("iou", "dice"):
                st.metric(labels.text(name), labels.fmt(name, scores[name]), width="content")
    st.caption(result.timed.caption(predictor))
    if result.outcome.truth_error is not None:
        st.warning(f"Ground truth {photo.truth_name}: {result.outcome.truth_error}.")


def pictures(outcome: Outcome) -> None:
    """Original, mask, overlay and cut-out, two to a row (one on a phone)."""
    image, mask = outcome.analysis.image, outcome.mask
    shown = views(image, mask)
    small = next(iter(shown.values()))
    if small.shape[:2] != mask.shape:
        st.caption(f"Shown at {small.shape[1]}x{small.shape[0]}; the downloads are full size.")
    items = list(shown.items())
    for start in range(0, len(items), 2):
        for column, (caption, picture) in zip(st.columns(2), items[start : start + 2], strict=True):
            column.image(picture, caption=caption, width="stretch")


def downloads(outcome: Outcome, names: tuple[str, str], index: int) -> None:
    """The files a user can take away for one photo."""
    image, mask = outcome.analysis.image, outcome.mask
    files = [
        ("Mask PNG", lambda: outputs.mask_png(mask), names[0]),
        ("Cut-out PNG", lambda: outputs.cutout_png(image, mask), names[1]),
    ]
    with st.container(horizontal=True):
        for label, data, file_name in files:
            st.download_button(
                label,
                data=data,
                file_name=file_name,
                mime="image/png",
                on_click="ignore",
                key=f"{file_name}_{index}",
                icon=":material/download:",
            )


def batch_download(done: list[tuple[tuple[str, str], Outcome]]) -> None:
    """One ZIP with every segmented photo's mask and cut-out."""
    st.download_button(
        "Download all masks and cut-outs (ZIP)",
        data=lambda: outputs.batch_zip([(names, o.analysis.image, o.mask) for names, o in done]),
        file_name="wingmask.zip",
        mime="application/zip",
        on_click="ignore",
        key="zip",
        type="primary",
        icon=":material/folder_zip:",
    )


st.title("Segment photos")
st.write(
    "Pick a sample or upload photos to get the butterfly's mask at the photo's own resolution, "
    "an overlay and a cut-out on a transparent background."
)
left, right = st.columns([3, 2], gap="large")
with left:
    photos = ui_common.photo_picker("seg", multiple=True)
with right, st.container(border=True):
    settings = settings_panel()

if not photos:
    st.info("Upload one or more photos, or choose **Sample photo**, to see masks here.")
    st.stop()

results: list[Result | Exception] = []
progress = st.progress(0.0, text="Segmenting...") if len(photos) > 1 else None
for number, photo in enumerate(photos, start=1):
    try:
        results.append(process(photo, settings))
    except Exception as exc:  # each upload fails alone; show_problem explains it
        results.append(exc)
    if progress is not None:
        progress.progress(number / len(photos), text=f"Segmented {number} of {len(photos)} photos")
if progress is not None:
    progress.empty()

names = outputs.output_names([photo.name for photo in photos])
done = [(n, r.outcome) for n, r in zip(names, results, strict=True) if isinstance(r, Result)]
if len(photos) > 1:
    at = "(yes/no per pixel)" if settings.predictor.binary_only else f"at threshold {settings.mask.threshold:.2f}"
    st.write(f"**{len(done)} of {len(photos)} photos segmented** with {settings.predictor.name} {at}.")
    if done:
        batch_download(done)

for index, (photo, result, photo_names) in enumerate(zip(photos, results, names, strict=True)):
    st.divider()
    st.subheader(photo.name, anchor=False)
    if isinstance(result, Exception):
        ui_common.show_problem(photo.name, result)
        continue
    figures(result, photo, settings.predictor)
    pictures(result.outcome)
    downloads(result.outcome, photo_names, index)
