"""Home page: what Wingmask does and which models it offers."""

import streamlit as st

import ui_common
from seg_core.data.leeds import load_split
from seg_core.evaluation.results import BENCH_FILE, EVAL_TEST_FILE, PER_IMAGE, model_table

ui_common.require_app_navigation()

LINKS = {
    "pages/segment.py": "Upload one or many photos: masks, overlays, cut-outs, downloads, and IoU/Dice with a "
    "ground truth.",
    "pages/compare.py": "One photo through every model side by side, each with its own threshold, and how far "
    "they agree.",
    "pages/validation.py": "Scores on the held-out test photos: distributions, thresholds, species, latency, "
    "worst cases.",
}

st.title("Wingmask")
st.write(
    "Wingmask finds the butterfly in a photo, pixel by pixel. Trained U-Nets (and simple classical "
    "baselines for comparison) turn each photo into a butterfly probability map; a threshold turns "
    "that into a mask at the photo's own resolution, from which the app makes an overlay and a cut-out."
)

for column, (path, blurb) in zip(st.columns(len(LINKS)), LINKS.items(), strict=True):
    spec = ui_common.page_spec(path)
    with column, st.container(border=True):
        st.page_link(spec.path, label=f"**{spec.title}**", icon=spec.icon)
        st.caption(blurb)

st.subheader("Available models", anchor=False)
evaluation = ui_common.eval_results(EVAL_TEST_FILE, "test scores")
bench = ui_common.bench_results(BENCH_FILE, "latencies")
# One row per model: model_table takes each model's default runtime and precision from the benchmark.
table = model_table(ui_common.catalogue(), evaluation, bench, threshold=0.5, mode=PER_IMAGE)
st.dataframe(
    table,
    hide_index=True,
    column_order=[
        "model",
        "kind",
        "iou",
        "dice",
        "runtime",
        "precision",
        "latency_median_ms",
        "parameters",
        "file_mb",
    ],
    column_config=ui_common.COLUMNS,
)
notes = []
if evaluation is not None:
    photos = evaluation["image_id"].nunique()
    notes.append(f"IoU and Dice: butterfly class, mean over the {photos} test photos at threshold 0.5.")
if bench is not None:
    machines = ", ".join(sorted(bench["machine"].dropna().astype(str).unique()))
    notes.append(
        f"Runtime and precision: the ones the app picks for each model (the fastest installed runtime, at the "
        f"lowest precision verified to give the same masks), and latency: their median time for one photo, both "
        f"on {machines}. The Segment page names the runtime behind each of its results on this server; "
        "Validation metrics times every runtime."
    )
if notes:
    st.caption(" ".join(notes))
with st.expander("How each model was made"):
    st.markdown("\n".join(f"- **{row.model}**: {row.recipe or 'no recipe recorded'}" for row in table.itertuples()))

st.subheader("Beyond Leeds", anchor=False)
st.write(
    "The U-Nets learnt from Leeds photos of ten species only. u2netp never saw a butterfly: it is rembg's "
    "generic background remover, trained on everyday salient objects. u2netp-butterfly is u2netp fine-tuned on "
    "the Leeds photos in colours turned around the colour circle; unet-colour is unet-best taught the same "
    "colours. wingmask-blend runs unet-colour and u2netp-butterfly together, leaning on the second where the "
    "first is unsure or finds little butterfly. The test split "
    "holds the same ten species, so it cannot tell how a model does on others; the leave-species-out benchmark "
    "can: each recipe is trained five times, each time without two species, and tested on every photo of the two "
    "it never saw (a blend recipe blends two recipes' fold models). Its recipes are sized for a 2-core CPU, "
    "smaller and shorter than the committed models' own."
)
results = ui_common.species_out()
if results is not None:
    st.dataframe(
        ui_common.species_out_table(results[0]),
        column_order=["mean over species", "worst species", "worst species IoU", "mean per photo"],
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ("mean over species", "worst species IoU", "mean per photo")
        },
    )
    st.page_link(ui_common.page_spec("pages/robustness.py").path, label="Per species, and recoloured photos")

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
