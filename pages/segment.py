"""Segment page: photos in, masks and cut-outs out, with optional scoring."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

import ui_common
from seg_core import app_support
from seg_core.imaging import InvalidImageError, to_png_bytes
from seg_core.inference import ModelLoadError, available_predictors, threshold_mask
from seg_core.postprocess import (
    clean_mask,
    cutout,
    display_copy,
    foreground_fraction,
    mask_image,
    on_checkerboard,
    overlay,
)

ui_common.require_app_navigation()


@dataclass(frozen=True)
class Outcome:
    """What one photo produced at the current settings."""

    analysis: app_support.Analysis
    mask: np.ndarray
    scores: dict[str, float] | None
    truth_problem: str | None


def process(photo: ui_common.Photo, model: str, threshold: float, largest: bool, holes: bool) -> Outcome:
    """Threshold, clean and score one photo at the current settings (the network runs once per photo)."""
    result = ui_common.analysis(photo, model)
    mask = clean_mask(threshold_mask(result.prob, threshold), largest_region=largest, holes=holes)
    scores, problem = None, None
    if photo.truth is not None:
        try:
            truth = app_support.load_truth(photo.truth, result.image)
            scores = app_support.scores(mask, truth)
        except InvalidImageError as exc:
            problem = f"Ground truth {photo.truth_name}: {exc}."
    return Outcome(result, mask, scores, problem)


def show(outcome: Outcome, names: tuple[str, str], index: int) -> None:
    """Draw one photo's figures, pictures and download buttons."""
    image, mask = outcome.analysis.image, outcome.mask
    height, width = mask.shape
    columns = st.columns(5)
    columns[0].metric("Size", f"{width}x{height}")
    columns[1].metric("Foreground", f"{foreground_fraction(mask):.1%}")
    columns[2].metric(
        "Inference",
        f"{outcome.analysis.infer_ms:.0f} ms",
        help="From the decoded photo to its probability map on this server, "
        "including any wait while other users' photos go through the same model.",
    )
    if outcome.scores is not None:
        columns[3].metric("IoU", f"{outcome.scores['iou']:.3f}")
        columns[4].metric("Dice", f"{outcome.scores['dice']:.3f}")
    if outcome.truth_problem:
        st.warning(outcome.truth_problem)
    rgba = cutout(image, mask)
    small_image, small_mask = display_copy(image, mask)
    if small_mask.shape != mask.shape:
        st.caption(f"Shown at {small_mask.shape[1]}x{small_mask.shape[0]}; the downloads are full size.")
    pictures = {
        "Original": small_image,
        "Mask": mask_image(small_mask),
        "Overlay": overlay(small_image, small_mask),
        "Cut-out": on_checkerboard(cutout(small_image, small_mask)),
    }
    for column, (caption, picture) in zip(st.columns(4), pictures.items(), strict=True):
        column.image(picture, caption=caption)
    downloads = [("Mask PNG", mask, names[0]), ("Cut-out PNG", rgba, names[1])]
    for column, (label, picture, file_name) in zip(st.columns([1, 1, 3])[:2], downloads, strict=True):
        column.download_button(
            label,
            data=lambda picture=picture: to_png_bytes(picture),
            file_name=file_name,
            mime="image/png",
            on_click="ignore",
            key=f"{file_name}_{index}",
            icon=":material/download:",
        )


def batch_zip(done: list[tuple[tuple[str, str], Outcome]]) -> bytes:
    """Masks and cut-outs of every segmented photo in one ZIP archive."""
    files = []
    for (mask_name, cutout_name), outcome in done:
        files.append((mask_name, to_png_bytes(outcome.mask)))
        files.append((cutout_name, to_png_bytes(cutout(outcome.analysis.image, outcome.mask))))
    return app_support.zip_files(files)


st.title("Segment photos")
st.write(
    "Upload photos (or pick a sample) to get the butterfly's mask at the photo's own resolution, "
    "an overlay and a cut-out on a transparent background."
)

with st.sidebar:
    st.header("Settings")
    model = st.selectbox("Model", available_predictors(), key="seg_model")
    threshold = ui_common.threshold_slider(
        "seg_threshold",
        help="Pixels whose butterfly probability is at least this value form the mask. "
        "Moving it does not run the model again.",
    )
    largest = st.checkbox("Keep only the largest region", key="seg_largest")
    holes = st.checkbox("Fill holes", key="seg_holes")

try:
    predictor = ui_common.get_predictor(model)
except ModelLoadError as exc:
    ui_common.show_problem(model, exc)
    st.stop()
if predictor.binary_only:
    st.sidebar.info(f"{model} gives a yes/no answer per pixel, so the threshold changes nothing.")

photos = ui_common.photo_picker("seg", multiple=True)
if not photos:
    st.info("Upload one or more photos, or choose **Sample photo**, to see masks here.")
    st.stop()

outcomes: list[Outcome | Exception] = []
progress = st.progress(0.0, text="Segmenting...") if len(photos) > 1 else None
for number, photo in enumerate(photos, start=1):
    try:
        outcomes.append(process(photo, model, threshold, largest, holes))
    except Exception as exc:  # each upload fails alone; show_problem explains it
        outcomes.append(exc)
    if progress is not None:
        progress.progress(number / len(photos), text=f"Segmented {number} of {len(photos)} photos")
if progress is not None:
    progress.empty()

names = app_support.output_names([photo.name for photo in photos])
done = [(n, o) for n, o in zip(names, outcomes, strict=True) if isinstance(o, Outcome)]
if len(photos) > 1:
    st.write(f"**{len(done)} of {len(photos)} photos segmented** with {model} at threshold {threshold:.2f}.")
    if done:
        st.download_button(
            "Download all masks and cut-outs (ZIP)",
            data=lambda: batch_zip(done),
            file_name="wingmask.zip",
            mime="application/zip",
            on_click="ignore",
            key="zip",
            type="primary",
            icon=":material/folder_zip:",
        )

for index, (photo, outcome, photo_names) in enumerate(zip(photos, outcomes, names, strict=True)):
    st.divider()
    st.subheader(photo.name, anchor=False)
    if isinstance(outcome, Exception):
        ui_common.show_problem(photo.name, outcome)
    else:
        show(outcome, photo_names, index)
