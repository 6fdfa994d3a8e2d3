"""Compare page: one photo through every model, each with its own threshold."""

from __future__ import annotations

import pandas as pd
import streamlit as st

import ui_common
from seg_core import app_support
from seg_core.imaging import InvalidImageError
from seg_core.inference import available_predictors, threshold_mask
from seg_core.postprocess import foreground_fraction, overlay, vote_count, vote_map, vote_palette

ui_common.require_app_navigation()

PER_ROW = 3

st.title("Compare models")
st.write(
    "One photo through every model side by side. Each model has its own threshold; the vote map shows "
    "where their masks disagree."
)

photos = ui_common.photo_picker("cmp", multiple=False, default=ui_common.SAMPLE)
if not photos:
    st.info("Upload a photo, or choose **Sample photo**, to compare the models on it.")
    st.stop()
photo = photos[0]
every_model = available_predictors()
models = st.multiselect("Models", every_model, default=every_model, key="cmp_models")
if not models:
    st.info("Choose at least one model.")
    st.stop()

results: dict[str, app_support.Analysis] = {}
with st.spinner("Running the models..."):
    for model in models:
        try:
            results[model] = ui_common.analysis(photo, model)
        except InvalidImageError as exc:
            ui_common.show_problem(photo.name, exc)
            st.stop()
        except Exception as exc:  # one broken model must not hide the others
            ui_common.show_problem(model, exc)
if not results:
    st.stop()

image = next(iter(results.values())).image
truth = None
if photo.truth is not None:
    try:
        truth = app_support.load_truth(photo.truth, image)
    except InvalidImageError as exc:
        st.warning(f"Ground truth {photo.truth_name}: {exc}.")

rows, masks = [], {}
names = list(results)
for start in range(0, len(names), PER_ROW):
    for column, model in zip(st.columns(PER_ROW), names[start : start + PER_ROW], strict=False):
        with column, st.container(border=True):
            binary = ui_common.get_predictor(model).binary_only
            st.markdown(f"**{model}**")
            threshold = ui_common.threshold_slider(
                f"cmp_thr_{model}",
                disabled=binary,
                help="This model answers yes/no per pixel; the threshold changes nothing." if binary else None,
            )
            mask = threshold_mask(results[model].prob, threshold)
            masks[model] = mask
            st.image(overlay(image, mask))
            row = {
                "model": model,
                "threshold": "yes/no" if binary else f"{threshold:.2f}",
                "inference_ms": results[model].infer_ms,
                "foreground": 100.0 * foreground_fraction(mask),
            }
            line = f"{row['inference_ms']:.0f} ms · foreground {row['foreground']:.1f}%"
            if truth is not None:
                row |= app_support.scores(mask, truth)
                line += f" · IoU {row['iou']:.3f} · Dice {row['dice']:.3f}"
            st.caption(line)
            rows.append(row)

st.subheader("Where the models disagree", anchor=False)
votes = vote_count(list(masks.values()))
palette = vote_palette(len(masks))
left, right = st.columns([2, 1])
left.image(vote_map(list(masks.values())), caption="Pixel colour = how many models call it butterfly")
with right:
    shares = [(votes == k).mean() for k in range(len(masks) + 1)]
    legend = "".join(
        f"<div><span style='display:inline-block;width:1em;height:1em;border:1px solid #888;"
        f"background:rgb{tuple(int(c) for c in palette[k])};margin-right:.5em'></span>"
        f"{k} of {len(masks)} models: {shares[k]:.1%} of pixels</div>"
        for k in range(len(masks) + 1)
    )
    st.markdown(legend, unsafe_allow_html=True)
    disagree = 1.0 - shares[0] - shares[-1]
    st.metric("Pixels in dispute", f"{disagree:.1%}", help="Some but not all models call them butterfly.")

st.subheader("Side by side", anchor=False)
table = pd.DataFrame(rows)
st.dataframe(table, hide_index=True, column_config=ui_common.COLUMNS)
if truth is None:
    st.caption("Add a ground-truth mask (samples have one) to score the models.")
