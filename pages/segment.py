"""Segment page: photos in; masks, cut-outs, measurements and COCO annotations out, with optional scoring."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePath

import pandas as pd
import streamlit as st
from streamlit_image_coordinates import streamlit_image_coordinates

import ui_common
from seg_core.core import labels
from seg_core.core.imaging import InvalidImageError
from seg_core.data.collections import NAME_RULE, CollectionError, collections_dir
from seg_core.data.teaching import MAX_PAIRS
from seg_core.outputs import annotations, correction
from seg_core.outputs import files as outputs
from seg_core.outputs.compact import approximate
from seg_core.outputs.cutout import BLUR, DEFAULT_MARGIN, FORMATS, TRANSPARENT, Background, parse_background
from seg_core.outputs.matting import Matte
from seg_core.outputs.postprocess import (
    MAX_HOLE_FRACTION,
    MIN_REGION_FRACTION,
    foreground_fraction,
    overlay,
    screen_bytes,
)
from seg_core.runtime.base import InferenceOptions, ModelLoadError, Predictor
from seg_core.runtime.registry import available_predictors
from seg_core.service.analysis import (
    Look,
    MaskSettings,
    Outcome,
    before_after,
    coco_instances,
    finish_compact,
    shown_matte,
    views,
)
from seg_core.service.batch import OutputOptions
from seg_core.service.teach import save_to_collection

ui_common.require_app_navigation()

#: Clean-up choices: the CLI's ``--clean`` steps they stand for, and what people read.
CLEANUPS = {
    "tidy": f"Tidy: drop regions under {MIN_REGION_FRACTION:.0%} of the largest, fill small holes",
    "largest": "Largest region only",
    "none": "None: the network's mask as it is",
}
BACKGROUNDS = {TRANSPARENT: "Transparent", "colour": "Colour", BLUR: "Blurred photo", "image": "Image"}
MIME = {"png": "image/png", "webp": "image/webp"}
MM_FIELDS = ("area_mm2", "wingspan_mm")
#: The correction tools, as people read them.
TOOLS = {
    correction.GROW: "Click: grow from the network's map",
    correction.GRABCUT: "Click: GrabCut from the photo's colours",
    correction.BRUSH: "Drag: brush",
}
ADD, REMOVE = "Add butterfly", "Remove"
#: The picture to click on goes to the browser as a JPEG: a PNG of a large photo is megabytes a redraw.
CLICK_QUALITY = 85


@dataclass(frozen=True)
class Settings:
    """Everything the user chose that shapes the results."""

    predictor: Predictor
    mask: MaskSettings
    options: InferenceOptions
    output: OutputOptions
    pixels_per_mm: float | None = None
    polygons: bool = False


@dataclass(frozen=True)
class Result:
    """One photo's outcome at the current settings (at display size), its model time's provenance, and its matte.

    ``matte`` is the soft-edged matte at display size, for the pictures on
    screen; the downloads take the full-size one from the cache.
    """

    outcome: Outcome
    timed: ui_common.Timed
    matte: Matte | None = None

    def look(self, output: OutputOptions) -> Look:
        """How this photo's cut-out is made, for the pictures on screen."""
        return Look(output.background, output.crop, output.square, self.matte)


def settings_panel() -> tuple[Predictor, float, InferenceOptions]:
    """Model, threshold and inference switches, on the page itself (usable on a phone)."""
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
        options = ui_common.inference_options("seg")
    return predictor, threshold, options


def background_choice() -> Background:
    """Transparent, a colour, the photo blurred, or an uploaded image (transparent until one is given)."""
    kind = st.radio(
        "Background",
        list(BACKGROUNDS),
        format_func=BACKGROUNDS.get,
        horizontal=True,
        key="seg_background",
        persist_state=ui_common.KEEP,
    )
    if kind == "colour":
        return parse_background(
            st.color_picker("Background colour", "#FFFFFF", key="seg_bg_colour", persist_state=ui_common.KEEP)
        )
    if kind != "image":
        return kind
    upload = st.file_uploader("Background image", type=ui_common.UPLOAD_TYPES, key="seg_bg_image")
    if upload is None:
        st.caption("Upload an image to put behind the butterfly; until then the cut-out stays transparent.")
        return TRANSPARENT
    try:
        return ui_common.background_picture(upload.getvalue())
    except InvalidImageError as exc:
        st.error(f"**{upload.name}** cannot be used as a background: {exc}. The cut-out stays transparent.")
        return TRANSPARENT


def output_panel(threshold: float) -> tuple[MaskSettings, OutputOptions, float | None, bool]:
    """Every output option in one place: clean-up and edges, the cut-out, measurements and annotations.

    The slow options (refine, soft edges) run only while they are on, and their
    results are cached per photo and settings, as the model's are.
    """
    mask_tab, cutout_tab, export_tab = st.tabs(["Clean-up and edges", "Cut-out", "Measure and export"])
    with mask_tab:
        cleanup = st.radio(
            "Clean-up",
            list(CLEANUPS),
            format_func=CLEANUPS.get,
            key="seg_cleanup",
            persist_state=ui_common.KEEP,
            help=f"Tidy keeps every butterfly and drops scale bars, labels and specks; holes under "
            f"{MAX_HOLE_FRACTION:.0%} of the largest region are filled. What a clean-up removes is tinted blue "
            "on the overlay.",
        )
        holes = st.checkbox("Fill every hole", key="seg_holes", persist_state=ui_common.KEEP)
        refine = st.toggle(
            "Refine edges (GrabCut, slower)",
            key="seg_refine",
            persist_state=ui_common.KEEP,
            help="Redraw the mask's edge at the photo's full resolution from the photo's colours, in a band "
            "where the network is unsure. Takes a second or more per photo.",
        )
    with cutout_tab:
        soft = st.toggle(
            "Soft edges",
            key="seg_soft",
            persist_state=ui_common.KEEP,
            help="An alpha matte at full resolution with the background's colour removed from the edge, so "
            "no fringe shows on a new background. Takes a moment per photo.",
        )
        background = background_choice()
        crop = st.toggle(
            f"Crop to the butterflies ({DEFAULT_MARGIN:.0%} margin)", key="seg_crop", persist_state=ui_common.KEEP
        )
        square = st.checkbox("Square crop", key="seg_square", persist_state=ui_common.KEEP, disabled=not crop)
        fmt = st.radio(
            "Cut-out format",
            FORMATS,
            format_func=str.upper,
            horizontal=True,
            key="seg_format",
            persist_state=ui_common.KEEP,
            help="WebP files are smaller (lossy colour, lossless transparency). Masks are always PNG.",
        )
    with export_tab:
        scale = st.number_input(
            "Scale (pixels per mm)",
            min_value=0.001,
            value=None,
            format="%.3f",
            placeholder="unknown: sizes in pixels only",
            key="seg_ppmm",
            persist_state=ui_common.KEEP,
            help="Measure a ruler or scale bar in the photo: its length in pixels divided by its length in mm.",
        )
        polygons = st.checkbox(
            "COCO polygons instead of RLE masks",
            key="seg_polygons",
            persist_state=ui_common.KEEP,
            help="Regions with holes keep an RLE mask, since COCO polygons cannot hold holes.",
        )
    mask = MaskSettings(threshold, largest=cleanup == "largest", holes=holes, tidy=cleanup == "tidy", refine=refine)
    output = OutputOptions(refine, soft, background, crop, crop and square, fmt)
    return mask, output, scale, polygons


def process(photo: ui_common.Photo, settings: Settings) -> Result:
    """Analyse (cached: the network runs once per photo, model and options), then threshold, clean and score.

    Everything shown is made at display size. Full-size work (scoring against
    a ground truth, refined edges, soft-edged mattes) runs only when asked
    for, in an admission slot; refined edges and mattes are cached.
    """
    timed = ui_common.analysis(photo, settings.predictor.name, settings.options)
    mask, output = settings.mask, settings.output
    if photo.truth is None and not mask.refine and not output.soft_edges:
        return Result(finish_compact(timed.analysis, mask), timed)
    with ui_common.heavy(photo):
        if mask.refine:
            with st.spinner("Refining the edges (GrabCut)..."):
                edge = ui_common.edge(photo, timed, mask.threshold)
        else:
            edge = None
        full = ui_common.levels(photo, timed) if photo.truth is not None or edge is not None else None
        outcome = finish_compact(timed.analysis, mask, photo.truth, edge, full)
        if not output.soft_edges:
            return Result(outcome, timed)
        with st.spinner("Softening the edges..."):
            matte = ui_common.matte(photo, timed, mask)
    return Result(outcome, timed, shown_matte(timed.analysis, matte))


def figures(result: Result, photo: ui_common.Photo, predictor: Predictor) -> None:
    """Size, foreground, model time and scores in one row that wraps on a narrow screen."""
    mask = result.outcome.mask
    height, width = result.outcome.analysis.shape
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


def pictures(result: Result, output: OutputOptions) -> None:
    """Original, mask, overlay (with what the clean-up removed) and cut-out, two to a row (one on a phone)."""
    outcome = result.outcome
    shown = views(outcome.analysis.shown_image, outcome.mask, outcome.removed, result.look(output))
    small = shown["Original"]
    if small.shape[:2] != outcome.analysis.shape:
        st.caption(f"Shown at {small.shape[1]}x{small.shape[0]}; the downloads are full size.")
    items = list(shown.items())
    for start in range(0, len(items), 2):
        for column, (caption, picture) in zip(st.columns(2), items[start : start + 2], strict=True):
            column.image(screen_bytes(picture), caption=caption, width="stretch")
    if outcome.removed is not None and outcome.removed.any():
        share = foreground_fraction(outcome.removed)
        st.caption(f"The clean-up removed {share:.2%} of the photo's pixels from the mask: tinted blue on the overlay.")


@st.fragment
def comparison(result: Result, output: OutputOptions, index: int) -> None:
    """The photo and its cut-out in one picture, split where the slider says (reruns only this part)."""
    position = st.slider(
        "Photo ← → cut-out",
        0,
        100,
        50,
        format="%d%%",
        key=f"seg_split_{index}",
        help="The photo is shown left of the line, the cut-out right of it.",
    )
    outcome = result.outcome
    picture = before_after(outcome.analysis.shown_image, outcome.mask, result.look(output), position / 100)
    st.image(screen_bytes(picture), caption="Before / after", width="stretch")


def measurements(photo: ui_common.Photo, result: Result, settings: Settings) -> None:
    """Area, bounding box and wingspan of each butterfly (connected region), in mm when the scale is known.

    Measured on the full-size final mask, made in an admission slot while the expander is open.
    """
    pixels_per_mm = settings.pixels_per_mm
    with ui_common.heavy(photo):
        mask = ui_common.full_mask(photo, result.timed, settings.mask)
        rows = [m.as_row() for m in annotations.measure(mask, pixels_per_mm)]
    if not rows:
        st.caption("No butterfly in the mask, so nothing to measure.")
        return
    table = pd.DataFrame(rows, columns=annotations.MEASUREMENT_FIELDS)
    if pixels_per_mm is None:
        table = table.drop(columns=list(MM_FIELDS))
    st.dataframe(table, hide_index=True, column_config=ui_common.COLUMNS)
    scale = "Give a scale under **Measure and export** for sizes in mm." if pixels_per_mm is None else ""
    st.caption(f"One row per butterfly (connected region of the mask). Wingspan: extent along its main axis. {scale}")


def cutout_name(names: tuple[str, str], fmt: str) -> str:
    """The cut-out's file name in the chosen format, as the batch CLI names it."""
    return str(PurePath(names[1]).with_suffix(f".{fmt}"))


def photo_files(
    photo: ui_common.Photo, result: Result, names: tuple[str, str], settings: Settings
) -> list[tuple[str, bytes]]:
    """(file name, content) of one photo's full-size mask and cut-out, made by the batch CLI's own functions."""
    mask_png, cutout = ui_common.photo_files(photo, result.timed, settings.mask, settings.output)
    return [(names[0], mask_png), (cutout_name(names, settings.output.fmt), cutout)]


def downloads(photo: ui_common.Photo, result: Result, names: tuple[str, str], settings: Settings, index: int) -> None:
    """The files a user can take away for one photo, made at full size only when asked for.

    The callbacks hold the photo's upload, its compact result and the settings, never a full-size array.
    """
    timed, mask, output = result.timed, settings.mask, settings.output
    files = [
        ("Mask PNG", lambda: ui_common.mask_download(photo, timed, mask), names[0], MIME["png"]),
        (
            f"Cut-out {output.fmt.upper()}",
            lambda: ui_common.cutout_download(photo, timed, mask, output),
            cutout_name(names, output.fmt),
            MIME[output.fmt],
        ),
    ]
    with st.container(horizontal=True):
        for label, data, file_name, mime in files:
            st.download_button(
                label,
                data=data,
                file_name=file_name,
                mime=mime,
                on_click="ignore",
                key=f"{names[0]}_{label}_{index}",
                icon=":material/download:",
            )


def coco_json(done: list[tuple[ui_common.Photo, Result]], settings: Settings) -> str:
    """One COCO instances file for the photos on the page, built as ``seg_core.service.batch --coco`` builds it.

    Made from each photo's full-size final mask, one photo at a time in an admission slot.
    """
    builder = annotations.CocoBuilder()
    for photo, result in done:
        compact = result.timed.analysis
        with ui_common.heavy(photo, show_wait=False):
            full = ui_common.levels(photo, result.timed)
            found = coco_instances(full, ui_common.full_mask(photo, result.timed, settings.mask), settings.polygons)
        builder.add_image(photo.name, compact.shape[1], compact.shape[0], found)
    return json.dumps(builder.to_dict())


def batch_downloads(
    done: list[tuple[ui_common.Photo, tuple[str, str], Result]], settings: Settings, batch: bool
) -> None:
    """A ZIP of every segmented photo's files (for a batch) and one COCO file for all of them."""
    with st.container(horizontal=True):
        if batch:
            st.download_button(
                "Download all masks and cut-outs (ZIP)",
                data=lambda: outputs.zip_files(
                    [file for p, names, r in done for file in photo_files(p, r, names, settings)]
                ),
                file_name="wingmask.zip",
                mime="application/zip",
                on_click="ignore",
                key="zip",
                type="primary",
                icon=":material/folder_zip:",
            )
        st.download_button(
            "COCO annotations (JSON)",
            data=lambda: coco_json([(p, r) for p, _, r in done], settings),
            file_name="annotations.json",
            mime="application/json",
            on_click="ignore",
            key="coco",
            icon=":material/data_object:",
            help="One butterfly per connected region, with its mask (RLE or polygons), box, area and score; "
            "CVAT, Label Studio and FiftyOne import it.",
        )


def correction_state(index: int, source: tuple, mask, event: dict | None) -> dict:
    """The photo's correction in progress: ``source`` (what it started from), ``history`` and ``handled`` (a click).

    Started again from ``mask`` when the photo, model or mask settings changed; a new start takes the
    picture's last click as handled, since it was made on the photo or mask shown before. A plain dict,
    since a class of this page is a new class on every run.
    """
    key = f"seg_fix_state_{index}"
    state = st.session_state.get(key)
    if state is None or state["source"] != source:
        state = {"source": source, "history": correction.History.start(mask), "handled": (event or {}).get("unix_time")}
        st.session_state[key] = state
    return state


def apply_click(photo: ui_common.Photo, result: Result, state: dict, edit: correction.Edit) -> None:
    """Apply one click or stroke to the correction (GrabCut in an admission slot: it takes about a second)."""
    analysis = result.outcome.analysis
    try:
        with ui_common.heavy(photo):
            mask = correction.apply_edit(
                analysis.shown_image, approximate(analysis.shown_levels), state["history"].current, edit
            )
    except correction.CorrectionError as exc:
        st.warning(f"That click could not be used: {exc}.")
        return
    state["history"] = state["history"].push(mask)


def step_back(state: dict, step: str) -> None:
    """Undo the last edit or reset to the start (a button's callback, so the picture redraws at once)."""
    state["history"] = getattr(state["history"], step)()


def save_correction(photo: ui_common.Photo, image, state: dict) -> None:
    """Save the photo and its corrected mask into the collection named on the page (the save button's callback).

    What happened is kept in ``state["saved"]`` as (kind, text) for the page to show.
    """
    name = st.session_state.get("seg_fix_collection", "")
    try:
        saved = save_to_collection(collections_dir(), name, photo.name, image, state["history"].current)
    except (CollectionError, OSError) as exc:
        state["saved"] = ("error", f"**Not saved.** {exc}")
        return
    state["saved"] = (
        "success",
        f"Saved to the collection **{saved.folder.name}** ({saved.photos} of at most {MAX_PAIRS} photos). "
        "Teach a model from it on the **Teach** page.",
    )


def correction_section(photo: ui_common.Photo, result: Result, settings: Settings, index: int) -> None:
    """Fix the mask with clicks and strokes, undo or reset, and save the photo and mask to a collection."""
    click_key = f"seg_fix_click_{index}"
    event = st.session_state.get(click_key)
    source = (photo.key, settings.predictor.name, settings.options, settings.mask)
    state = correction_state(index, source, result.outcome.mask, event)
    image = result.outcome.analysis.shown_image
    tools, modes, size = st.columns([3, 2, 2])
    tool = tools.radio(
        "Tool", list(TOOLS), format_func=TOOLS.get, key=f"seg_fix_tool_{index}", persist_state=ui_common.KEEP
    )
    add = (
        modes.radio("Clicks and strokes", [ADD, REMOVE], key=f"seg_fix_mode_{index}", persist_state=ui_common.KEEP)
        == ADD
    )
    radius = size.slider(
        "Brush radius (pixels)",
        1,
        60,
        correction.seed_radius(image.shape[:2]) * 2,
        key=f"seg_fix_radius_{index}",
        disabled=tool != correction.BRUSH,
    )
    if event and event.get("unix_time") != state["handled"]:
        state["handled"] = event["unix_time"]
        shown, shape = (event["width"], event["height"]), image.shape[:2]
        start = correction.from_screen(event["x1"], event["y1"], shown, shape)
        end = correction.from_screen(event["x2"], event["y2"], shown, shape)
        apply_click(photo, result, state, correction.drag_edit(tool, add, start, end, radius))
    streamlit_image_coordinates(
        overlay(image, state["history"].current),
        key=click_key,
        width="stretch",
        click_and_drag=True,
        image_format="JPEG",
        jpeg_quality=CLICK_QUALITY,
        cursor="crosshair",
    )
    st.caption(
        "A click grows the region around it as far as the network rates it at least half as likely "
        "(where the network sees nothing there, GrabCut decides from the photo's colours); GrabCut takes the "
        "click as sure butterfly or background; the brush paints or erases along a drag. "
        f"{state['history'].edits} edit(s) so far."
    )
    with st.container(horizontal=True):
        for label, step, icon in (("Undo", "undo", ":material/undo:"), ("Reset", "reset", ":material/restart_alt:")):
            st.button(
                label,
                key=f"seg_fix_{step}_{index}",
                disabled=not state["history"].edits,
                icon=icon,
                on_click=step_back,
                args=(state, step),
            )
    name = st.text_input(
        "Collection",
        key="seg_fix_collection",
        persist_state=ui_common.KEEP,
        placeholder="my-moths",
        help=f"{NAME_RULE}. Kept in {collections_dir()} (set WINGMASK_COLLECTIONS to move it); "
        f"at most {MAX_PAIRS} photos a collection.",
    )
    st.button(
        "Save to collection",
        key=f"seg_fix_save_{index}",
        type="primary",
        icon=":material/save:",
        disabled=not name.strip(),
        on_click=save_correction,
        args=(photo, image, state),
    )
    saved = state.pop("saved", None)
    if saved is not None:
        (st.success if saved[0] == "success" else st.error)(saved[1])


st.title("Segment photos")
st.write(
    "Pick a sample or upload photos to get each butterfly's mask at the photo's own resolution, an overlay, "
    "a cut-out on the background of your choice, measurements and COCO annotations."
)
left, right = st.columns([3, 2], gap="large")
with left:
    photos = ui_common.photo_picker("seg", multiple=True)
with right:
    with st.container(border=True):
        predictor, threshold, options = settings_panel()
    with st.container(border=True):
        mask_settings, output, pixels_per_mm, polygons = output_panel(threshold)
settings = Settings(predictor, mask_settings, options, output, pixels_per_mm, polygons)

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
done = [(p, n, r) for p, n, r in zip(photos, names, results, strict=True) if isinstance(r, Result)]
if len(photos) > 1:
    at = "(yes/no per pixel)" if settings.predictor.binary_only else f"at threshold {settings.mask.threshold:.2f}"
    st.write(f"**{len(done)} of {len(photos)} photos segmented** with {settings.predictor.name} {at}.")
if done:
    batch_downloads(done, settings, batch=len(photos) > 1)

for index, (photo, result, photo_names) in enumerate(zip(photos, results, names, strict=True)):
    st.divider()
    st.subheader(photo.name, anchor=False)
    if isinstance(result, Exception):
        ui_common.show_problem(photo.name, result)
        continue
    figures(result, photo, settings.predictor)
    pictures(result, settings.output)
    # Opened on demand: their work (a full-size measurement, a second cut-out) is not on the default path.
    with st.expander("Measurements", key=f"seg_measure_{index}", on_change="rerun") as box:
        if box.open:
            measurements(photo, result, settings)
    with st.expander("Before / after", key=f"seg_before_after_{index}", on_change="rerun") as box:
        if box.open:
            comparison(result, settings.output, index)
    with st.expander("Correct the mask and save it to a collection", key=f"seg_fix_{index}", on_change="rerun") as box:
        if box.open:
            correction_section(photo, result, settings, index)
    downloads(photo, result, photo_names, settings, index)
