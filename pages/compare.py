"""Compare page: one photo through every model, each with its own threshold, and how far they agree.

Overlays, foreground shares and agreement are worked out at display size from
each model's compact result; scores against a ground truth use full-size
masks, made only when a ground truth is given.
"""

from __future__ import annotations

import contextlib

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import ui_common
from seg_core.core import labels
from seg_core.core.imaging import InvalidImageError
from seg_core.core.metrics import all_metrics, confusion
from seg_core.evaluation.agreement import dispute_share, pairwise_iou, voters
from seg_core.outputs.postprocess import foreground_fraction, overlay, screen_bytes, vote_count, vote_map, vote_palette
from seg_core.runtime.registry import available_predictors
from seg_core.service.analysis import load_truth

ui_common.require_app_navigation()

PER_ROW = 3


def panel(
    photo: ui_common.Photo, model: str, timed: ui_common.Timed, truth: np.ndarray | None
) -> tuple[np.ndarray, dict]:
    """One model's threshold slider, overlay and figures; returns its mask at display size and its table row."""
    predictor = ui_common.get_predictor(model)
    st.markdown(f"**{model}**")
    threshold = ui_common.threshold_slider(
        f"cmp_thr_{model}",
        disabled=predictor.binary_only,
        help="This model answers yes/no per pixel; the threshold changes nothing." if predictor.binary_only else None,
    )
    compact = timed.analysis
    mask = compact.shown_mask(threshold)
    st.image(screen_bytes(overlay(compact.shown_image, mask)), width="stretch")
    row = {
        "model": model,
        "threshold": "yes/no" if predictor.binary_only else f"{threshold:.2f}",
        "model_ms": timed.analysis.model_ms,
        "measured": timed.note,
        "foreground": 100.0 * foreground_fraction(mask),
    }
    line = [f"{timed.time_text()}", f"foreground {labels.fmt('foreground', row['foreground'])}%"]
    if truth is not None:
        scores = all_metrics(confusion(ui_common.levels(photo, timed).mask(threshold), truth))
        row |= {name: scores[name] for name in ("iou", "dice")}
        line += [f"IoU {labels.fmt('iou', row['iou'])}", f"Dice {labels.fmt('dice', row['dice'])}"]
    st.caption(" · ".join(line))
    return mask, row


def agreement_chart(table: pd.DataFrame) -> alt.LayerChart:
    """Heat map of pairwise IoU, values printed in the cells."""
    order = list(dict.fromkeys(table["model"]))
    base = alt.Chart(table).encode(
        x=alt.X("other:N", sort=order, title=None, axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("model:N", sort=order, title=None),
    )
    cells = base.mark_rect().encode(
        color=alt.Color("iou:Q", title="IoU", scale=alt.Scale(scheme="viridis", domain=[0, 1])),
        tooltip=["model", "other", alt.Tooltip("iou:Q", format=".4f")],
    )
    text = base.mark_text(fontSize=13).encode(
        text=alt.Text("iou:Q", format=".3f"),
        color=alt.condition("datum.iou > 0.6", alt.value("black"), alt.value("white")),
    )
    return (cells + text).properties(height=44 * len(order))


def vote_section(masks: dict[str, np.ndarray]) -> None:
    """Where the chosen voters disagree, networks alone unless the user adds the baselines."""
    include = st.toggle(
        "Let the classical baselines vote too",
        value=False,
        key="cmp_vote_baselines",
        persist_state=ui_common.KEEP,
        help="By default only the networks vote, so one baseline that disagrees with everyone "
        "does not put most pixels in dispute.",
    )
    names = voters({m: ui_common.get_predictor(m).kind for m in masks}, include)
    chosen = [masks[m] for m in names]
    votes = vote_count(chosen)
    palette = vote_palette(len(chosen))
    left, right = st.columns([2, 1])
    legend = "Pixel colour = how many voters call it butterfly"
    left.image(screen_bytes(vote_map(chosen)), caption=legend, width="stretch")
    with right:
        st.caption("Voters: " + ", ".join(names))
        shares = [(votes == k).mean() for k in range(len(chosen) + 1)]
        legend = "".join(
            f"<div><span style='display:inline-block;width:1em;height:1em;border:1px solid #888;"
            f"background:rgb{tuple(int(c) for c in palette[k])};margin-right:.5em'></span>"
            f"{k} of {len(chosen)}: {shares[k]:.1%} of pixels</div>"
            for k in range(len(chosen) + 1)
        )
        st.markdown(legend, unsafe_allow_html=True)
        st.metric(
            "Pixels in dispute",
            f"{dispute_share(votes, len(chosen)):.1%}",
            help="Some but not all voters call them butterfly.",
        )


st.title("Compare models")
st.write("One photo through several models side by side, each with its own threshold, then how far their masks agree.")
left, right = st.columns([3, 2], gap="large")
with left:
    photos = ui_common.photo_picker("cmp", multiple=False)
with right, st.container(border=True):
    every_model = available_predictors()
    models = st.multiselect("Models", every_model, default=every_model, key="cmp_models", persist_state=ui_common.KEEP)
    options = ui_common.inference_options("cmp")
if not photos:
    st.info("Upload a photo, or choose **Sample photo**, to compare the models on it.")
    st.stop()
if not models:
    st.info("Choose at least one model.")
    st.stop()
photo = photos[0]

results: dict[str, ui_common.Timed] = {}
with st.spinner("Running the models..."):
    for model in models:
        try:
            results[model] = ui_common.analysis(photo, model, options)
        except InvalidImageError as exc:
            ui_common.show_problem(photo.name, exc)
            st.stop()
        except Exception as exc:  # one broken model must not hide the others
            ui_common.show_problem(model, exc)
if not results:
    st.stop()

shape = next(iter(results.values())).analysis.shape
truth = None
if photo.truth is not None:
    try:
        truth = load_truth(photo.truth, shape)
    except InvalidImageError as exc:
        st.warning(f"Ground truth {photo.truth_name}: {exc}.")

rows, masks = [], {}
names = list(results)
# Scoring makes each model's full-size mask: heavy work, so it waits for a slot like an analysis.
with ui_common.heavy(photo) if truth is not None else contextlib.nullcontext():
    for start in range(0, len(names), PER_ROW):
        for column, model in zip(st.columns(PER_ROW), names[start : start + PER_ROW], strict=False):
            with column, st.container(border=True):
                masks[model], row = panel(photo, model, results[model], truth)
                rows.append(row)

st.subheader("Side by side", anchor=False)
# Thresholds are text here: yes/no models have none.
threshold_text = {"threshold": st.column_config.TextColumn(labels.text("threshold"))}
st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=ui_common.COLUMNS | threshold_text)
st.caption(
    "Model time: preprocessing, network (plus any second look or TTA) and resizing back to the photo's size, "
    "for this photo on this server. A cached result keeps the time measured when it was computed."
    + ("" if truth is not None else " Add a ground-truth mask (samples have one) to score the models.")
)

if len(masks) > 1:
    st.subheader("How far the masks agree", anchor=False)
    st.altair_chart(agreement_chart(pairwise_iou(masks)), width="stretch")
    st.caption("IoU between each two models' masks at their current thresholds: 1 means identical masks.")
    vote_section(masks)
