"""Robustness page: how each model holds up on photos as people take them."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

import ui_common
from seg_core.evaluation import robustness as rb
from seg_core.outputs.postprocess import display_copy, overlay, screen_bytes
from seg_core.runtime.base import DEFAULT_MODEL
from seg_core.runtime.registry import baseline_names

ui_common.require_app_navigation()


@st.cache_data(show_spinner=False)
def summary(path: str, mtime: float) -> pd.DataFrame:
    """Per condition, setting and model: mean and worst-tenth per-photo IoU, cached until the file changes."""
    table = rb.summarize(rb.load_robustness(path))
    table["label"] = table["condition"].map(lambda name: rb.CONDITIONS[name].label if name in rb.CONDITIONS else name)
    return table


@st.cache_data(show_spinner=False)
def examples(index: int) -> list[tuple[str, object]]:
    """Every condition applied to one sample photo, outlined with its ground truth, shrunk for display."""
    _, pairs = rb.sample_pairs()
    shown = []
    for name, condition in rb.CONDITIONS.items():
        image, mask = rb.apply(name, pairs, index)
        small, small_mask = display_copy(image, mask, 360)
        shown.append((condition.label, overlay(small, small_mask, alpha=0.0)))
    return shown


def species_section(names: dict[str, dict[str, str]]) -> None:
    """The generalisation benchmark: recipes trained without some species, tested on those species."""
    st.subheader("Species never seen (leave-species-out)")
    st.write(
        "Each recipe is trained five times, each time without two of the ten Leeds species, and tested on every "
        "photo of the two it never saw; zero-shot models never saw any. Per-photo foreground IoU at threshold 0.5."
    )
    results = ui_common.species_out()
    if results is None:
        return
    summary_table, per_species = results
    st.dataframe(ui_common.species_out_table(summary_table).style.format(precision=3), width="stretch")
    long = per_species.reset_index().melt(id_vars="recipe", var_name="species", value_name="iou")
    long["species"] = long["species"].map(lambda s: names.get(s, {}).get("common", s))
    chart = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            x=alt.X("iou:Q", title="per-photo IoU on the unseen species", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("species:N", title=None),
            yOffset=alt.YOffset("recipe:N"),
            color=alt.Color("recipe:N", title="Recipe or model"),
            tooltip=["species", "recipe", alt.Tooltip("iou:Q", format=".3f")],
        )
        .properties(height=alt.Step(8))
    )
    st.altair_chart(chart, width="stretch")


def iou_chart(table: pd.DataFrame, order: list[str]) -> alt.LayerChart:
    """Mean per-photo IoU per condition (bars' ends) and the worst tenth (ticks), one row per model."""
    low = max(0.0, float(table["iou_p10"].min()) - 0.02)
    title = "per-photo foreground IoU (mean; tick: worst tenth)"
    x = alt.X("iou_mean:Q", title=title, scale=alt.Scale(domain=[low, 1]))
    base = alt.Chart(table).encode(
        y=alt.Y("label:N", title=None, sort=order),
        yOffset=alt.YOffset("model:N"),
        color=alt.Color("model:N", title="Model"),
        tooltip=[
            "label",
            "model",
            alt.Tooltip("iou_mean:Q", format=".3f", title="mean IoU"),
            alt.Tooltip("iou_p10:Q", format=".3f", title="worst tenth below"),
            alt.Tooltip("iou_whole_set:Q", format=".3f", title="whole-set IoU"),
        ],
    )
    bars = base.mark_bar(clip=True).encode(x=x)
    ticks = base.mark_tick(color="black", thickness=2, size=8).encode(x="iou_p10:Q")
    return (bars + ticks).properties(height=alt.Step(9))


st.title("Robustness")
st.write(
    "The test photos changed the way real photos differ from Leeds photos: turned, small in the frame, out of "
    "focus, dim, black-and-white, several butterflies, museum sheets. Every model runs with the app's default "
    "settings at threshold 0.5; each condition is a fixed, seeded transform of photo and mask together."
)
path = rb.ROBUSTNESS_FILE
if not path.is_file():
    st.info("No robustness results yet. Run `python -m seg_core.robustness` to create them.")
    st.stop()
table = summary(str(path), path.stat().st_mtime)
default = table[table["setting"] == "default"]
models = sorted(default["model"].unique(), key=lambda m: (m != DEFAULT_MODEL, m))
chosen = st.multiselect(
    "Models",
    models,
    default=[m for m in models if m not in baseline_names()] or models,
    key="rob_models",
    persist_state=ui_common.KEEP,
)
order = [rb.CONDITIONS[name].label for name in rb.CONDITIONS]
if chosen:
    st.altair_chart(iou_chart(default[default["model"].isin(chosen)], order), width="stretch")
    wide = default[default["model"].isin(chosen)].pivot(index="label", columns="model", values="iou_mean")
    st.dataframe(wide.reindex(index=order, columns=chosen).style.format("{:.3f}"), width="stretch")
else:
    st.info("Choose at least one model to chart.")

ablation = table[(table["model"] == DEFAULT_MODEL) & (table["setting"] != "default")]
if not ablation.empty:
    st.subheader(f"Second look and test-time augmentation ({DEFAULT_MODEL})")
    st.caption(
        "default: one pass plus a second look at small butterflies (the app's setting); single pass: the network "
        "once on the whole photo; tta: default plus flips and a quarter turn averaged (about 4x slower). "
        "Times are per photo on the machine that wrote the file."
    )
    both = table[table["model"] == DEFAULT_MODEL]
    wide = both.pivot(index="label", columns="setting", values=["iou_mean", "iou_p10", "median_ms"])
    st.dataframe(wide.reindex([o for o in order if o in wide.index]).round(3), width="stretch")

species_section(ui_common.species())

st.subheader("What each condition looks like")
ids, _ = rb.sample_pairs()
index = st.selectbox(
    "Sample photo", range(len(ids)), format_func=lambda i: ids[i], key="rob_sample", persist_state=ui_common.KEEP
)
pictures = examples(index)
columns = st.columns(4)
for k, (label, picture) in enumerate(pictures):
    with columns[k % 4]:
        st.image(screen_bytes(picture), caption=label, width="stretch")
with st.expander("Conditions and strengths"):
    st.table(
        pd.DataFrame(
            [{"condition": c.label, "name": c.name, "how": c.description} for c in rb.CONDITIONS.values()]
        ).set_index("condition")
    )
