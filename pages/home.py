"""Home page: what Wingmask does and which models it offers."""

import streamlit as st

import ui_common
from seg_core.data import load_split
from seg_core.results import BENCH_FILE, EVAL_TEST_FILE, PER_IMAGE, model_table

ui_common.require_app_navigation()

st.title("Wingmask")
st.write(
    "Wingmask finds the butterfly in a photo, pixel by pixel. Trained U-Nets (and simple classical "
    "baselines for comparison) turn each photo into a butterfly probability map; a threshold turns "
    "that into a mask at the photo's own resolution, from which the app makes an overlay and a cut-out."
)

left, middle, right = st.columns(3)
with left, st.container(border=True):
    st.page_link("pages/segment.py", label="**Segment photos**", icon=":material/content_cut:")
    st.caption("Upload one or many photos: masks, overlays, cut-outs, downloads, and IoU/Dice with a ground truth.")
with middle, st.container(border=True):
    st.page_link("pages/compare.py", label="**Compare models**", icon=":material/compare:")
    st.caption("One photo through every model side by side, each with its own threshold, and where they disagree.")
with right, st.container(border=True):
    st.page_link("pages/validation.py", label="**Validation metrics**", icon=":material/bar_chart:")
    st.caption("Scores on the held-out test photos: distributions, thresholds, species, latency, worst cases.")

st.subheader("Available models", anchor=False)
evaluation = ui_common.eval_results(EVAL_TEST_FILE, "test scores")
bench = ui_common.bench_results(BENCH_FILE, "latencies")
table = model_table(ui_common.catalogue(), evaluation, bench, threshold=0.5, mode=PER_IMAGE)
st.dataframe(
    table,
    hide_index=True,
    column_order=["model", "kind", "iou", "dice", "latency_median_ms", "parameters", "file_mb", "recipe"],
    column_config=ui_common.COLUMNS
    | {
        "file_mb": st.column_config.NumberColumn("Size (MB)", format="%.2f"),
        "iou": st.column_config.NumberColumn("Test IoU @0.5", format="%.3f"),
        "dice": st.column_config.NumberColumn("Test Dice @0.5", format="%.3f"),
    },
)
notes = []
if evaluation is not None:
    photos = evaluation["image_id"].nunique()
    notes.append(f"Test IoU and Dice: butterfly class, mean over the {photos} test photos at threshold 0.5.")
if bench is not None:
    machines = ", ".join(sorted(bench["machine"].dropna().astype(str).unique()))
    notes.append(f"Latency: median time for one photo, measured on {machines}.")
if notes:
    st.caption(" ".join(notes))

st.subheader("Data", anchor=False)
split = load_split()
st.write(
    f"Models were trained and evaluated on the Leeds Butterfly Dataset ({len(ui_common.species())} species, "
    f"fixed split: {len(split['train'])} training, {len(split['val'])} validation and {len(split['test'])} test "
    "photos). The sample photos in the app come from the test split, so no model has seen them."
)
st.caption(
    "Josiah Wang, Katja Markert and Mark Everingham. Learning Models for Object Recognition from Natural "
    "Language Descriptions. BMVC 2009."
)
