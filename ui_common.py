"""Streamlit pieces shared by the pages: the page list, cached models and results, photo pickers.

Caches here are process-wide, so every page and every session share one
loaded model per name and one compact result per (photo, model, options).
Results live in :func:`seg_core.service.budget.process_cache`, bounded by bytes
(``WINGMASK_CACHE_MB``), and the heavy work behind them (decoding, the
network, full-size masks, refined edges, mattes, downloads) runs in a slot of
:func:`seg_core.service.admission.process_admission` (``WINGMASK_MAX_JOBS``), so a
burst of big uploads waits in order, each session told how many are ahead.

Every setting widget keeps its value for the whole session
(``persist_state="session"``): a widget hidden for a while (the sample picker
while Upload is chosen, a model's threshold while the model is deselected, a
page the user left) comes back showing the value that produced the results.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import logging
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from seg_core.core import labels
from seg_core.core.imaging import MAX_PIXELS, MAX_SIDE, InvalidImageError, load_image
from seg_core.data.leeds import load_species
from seg_core.evaluation import generalisation as gen
from seg_core.evaluation.results import ResultsFormatError, ResultsMissingError, load_bench, load_eval
from seg_core.outputs import files as outputs
from seg_core.outputs.compact import CompactAnalysis, FullLevels, analyse_compact, full_levels
from seg_core.outputs.matting import Matte, soft_matte
from seg_core.runtime.base import InferenceOptions, ModelLoadError, Predictor
from seg_core.runtime.catalogue import model_catalogue, sample_label, sample_photos
from seg_core.service.admission import photo_cost, process_admission
from seg_core.service.analysis import (
    MaskSettings,
    age_text,
    cutout_file,
    digest,
    final_mask,
    is_cached,
    load_warm,
    mask_file,
    refined_edge,
)
from seg_core.service.batch import OutputOptions
from seg_core.service.budget import give_back_freed_buffers, process_cache

log = logging.getLogger(__name__)

UPLOAD = "Upload"
SAMPLE = "Sample photo"
#: File types the upload widgets offer (MIME types, so the browser filters the picker).
UPLOAD_TYPES = ["image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "image/gif"]
UPLOAD_LIMITS = (
    f"JPEG, PNG, WebP, BMP, TIFF or GIF (first frame); "
    f"at most {MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE:,} pixels a side"
)
#: Start-up lines of TensorFlow's native libraries that the server log leaves out.
TENSORFLOW_NOISE = ("All log messages before absl::InitializeLog()", "oneDNN custom operations are on")
#: How long a setting keeps its value when its widget is not drawn (see the module docstring).
KEEP = "session"
#: How runtimes are named to people.
RUNTIME_NAMES = {"keras": "Keras", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime", "opencv": "OpenCV"}


@dataclass(frozen=True)
class PageSpec:
    """One page of the app: its file (relative to ``streamlit_app.py``), menu title and icon."""

    path: str
    title: str
    icon: str


#: The app's pages in menu order; the first is the home page. Adding a page is one line here.
PAGES = (
    PageSpec("pages/home.py", "Home", ":material/home:"),
    PageSpec("pages/segment.py", "Segment", ":material/content_cut:"),
    PageSpec("pages/compare.py", "Compare models", ":material/compare:"),
    PageSpec("pages/validation.py", "Validation metrics", ":material/bar_chart:"),
    PageSpec("pages/robustness.py", "Robustness", ":material/shield:"),
    PageSpec("pages/teach.py", "Teach", ":material/school:"),
)
_IN_APP = contextvars.ContextVar("wingmask_in_app", default=False)
_TF_IMPORT = threading.Lock()


def app_pages() -> list[st.Page]:
    """The ``st.Page`` objects of :data:`PAGES` (new ones per run: Streamlit marks them as it runs them)."""
    return [st.Page(p.path, title=p.title, icon=p.icon, default=i == 0) for i, p in enumerate(PAGES)]


def page_spec(path: str) -> PageSpec:
    """The entry of :data:`PAGES` for a page file, e.g. for a link to it."""
    return next(p for p in PAGES if p.path == path)


def run_app() -> None:
    """Show the app's navigation and run the page the URL asks for (the entry point calls this)."""
    token = _IN_APP.set(True)
    try:
        st.navigation(app_pages()).run()
    finally:
        _IN_APP.reset(token)


def require_app_navigation() -> None:
    """Rerun through the app's navigation when Streamlit ran a page file on its own.

    Because the pages live in ``pages/``, Streamlit starts in its legacy
    multipage mode: until some run has called ``st.navigation``, a deep link
    (``/segment`` as the first request after the server starts) runs the page
    file directly, without the entry point's page list and page settings.
    Declaring the app's pages with ``st.navigation`` ends that mode, and
    ``st.rerun`` then runs the entry point, which opens the same page because
    both modes name a page by the same URL path.
    """
    if not _IN_APP.get():
        st.navigation(app_pages())
        st.rerun()


def threshold_slider(key: str, disabled: bool = False, help: str | None = None) -> float:
    """The probability threshold control every page uses (0.05 to 0.95, default 0.5)."""
    return st.slider("Threshold", 0.05, 0.95, 0.5, 0.01, key=key, disabled=disabled, help=help, persist_state=KEEP)


def inference_options(key: str) -> InferenceOptions:
    """The two switches that change how hard the networks look at a photo."""
    second_look = st.toggle(
        "Second look for small butterflies",
        value=True,
        key=f"{key}_second_look",
        persist_state=KEEP,
        help="When the butterfly is small in the photo, run the network again on a crop around it for a "
        "finer outline. Photos where it fills much of the frame are not affected.",
    )
    tta = st.toggle(
        "Test-time augmentation (best quality, slower)",
        value=False,
        key=f"{key}_tta",
        persist_state=KEEP,
        help="Average the network over flipped and turned copies of the photo: about four times the work.",
    )
    return InferenceOptions(second_look=second_look, tta=tta)


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with its C++ start-up notices kept out of the server log.

    TensorFlow's native libraries print "All log messages before
    absl::InitializeLog()..." and a oneDNN notice, once per library, straight to
    file descriptor 2 while they load, before any logging setting applies. They
    say nothing an operator can act on, so stderr is captured for the import
    (once per server process, at the first model load) and everything else
    written meanwhile is passed on afterwards. Later C++ messages below errors
    are hidden by ``TF_CPP_MIN_LOG_LEVEL=2`` unless the operator set it otherwise.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _TF_IMPORT:  # two sessions loading their first models at once capture stderr once
        if "tensorflow" in sys.modules:
            return
        _capture_noise_while_importing_tensorflow()


def _capture_noise_while_importing_tensorflow() -> None:
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            with contextlib.suppress(ImportError):  # then only the baselines load; U-Nets report why not
                import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        captured.seek(0)
        lines = captured.read().decode(errors="replace").splitlines(keepends=True)
    sys.stderr.write("".join(line for line in lines if not any(noise in line for noise in TENSORFLOW_NOISE)))


@st.cache_resource(show_spinner="Loading the model...")
def get_predictor(name: str) -> Predictor:
    """The one loaded instance of model ``name`` (raises ModelLoadError)."""
    _import_tensorflow_quietly()
    predictor = load_warm(name)
    _freeze_long_lived_objects()
    return predictor


def _freeze_long_lived_objects() -> None:
    """Exempt everything alive now (libraries, loaded models) from Python's cyclic garbage collector.

    Streamlit runs a full collection after every script run, and, once Keras
    is imported (TensorFlow imports it), ``keras.backend.clear_session()``
    runs another. With TensorFlow's 400,000 objects each took about 0.24 s
    of CPU holding the interpreter lock, so every rerun of every session cost
    half a second of server time; frozen objects are skipped (both then take
    well under a millisecond). Frozen objects are still freed by reference
    counting; only cycles among them would outlive their use, and these live
    as long as the process anyway.
    """
    gc.freeze()


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def waiting_text(ahead: int) -> str:
    """The status a queued session sees, e.g. ``"Waiting for the server: 2 ahead of you..."``."""
    if ahead == 0:
        return "Waiting for the server: you are next..."
    return f"Waiting for the server: {ahead} ahead of you..."


@contextlib.contextmanager
def heavy(photo: Photo, show_wait: bool = True):
    """Hold an admission slot for heavy work on ``photo`` (decoding, the network, full-size masks).

    While the session waits for its turn, a "waiting, n ahead" status is shown
    where this was called (not from a download's callback: ``show_wait=False``).
    Heavy helpers below expect their caller to hold the slot; they never take
    a second one, so a session cannot wait on itself.
    """
    status = st.empty() if show_wait else None

    def waiting(ahead: int) -> None:
        status.info(waiting_text(ahead), icon=":material/hourglass_top:")

    try:
        with process_admission().slot(photo_cost(photo.data), on_wait=waiting if show_wait else None):
            if status is not None:
                status.empty()
            yield
    finally:
        if status is not None:
            status.empty()


def photo_image(photo: Photo) -> np.ndarray:
    """``photo`` decoded at full size (the compact result keeps only a display copy); caller holds a slot."""
    return load_image(photo.data)


def _key(what: str, photo: Photo, timed: Timed, *shaping: object) -> tuple:
    return (what, photo.key, timed.model, timed.analysis.options, *shaping)


def levels(photo: Photo, timed: Timed, image: np.ndarray | None = None) -> FullLevels:
    """The full-size probability levels of ``photo``, once per photo, model and options.

    A photo no larger than the screen was analysed at full size, so its
    compact result serves; a larger one is decoded in full (or ``image``, the
    photo when already decoded) and run through the model again. The caller
    holds a :func:`heavy` slot.
    """
    if timed.analysis.is_full:
        return timed.analysis.full()

    def compute() -> FullLevels:
        picture = photo_image(photo) if image is None else image
        return full_levels(picture, get_predictor(timed.model), timed.analysis.options)

    return process_cache().get_or_compute(_key("levels", photo, timed), compute)


def edge(photo: Photo, timed: Timed, threshold: float, image: np.ndarray | None = None) -> np.ndarray:
    """The full-size mask with its edge redrawn by GrabCut, once per photo, model, options and threshold.

    The caller holds a :func:`heavy` slot. ``image``: the photo when already decoded.
    """

    def compute() -> np.ndarray:
        picture = photo_image(photo) if image is None else image
        return _read_only(refined_edge(levels(photo, timed, picture), picture, threshold))

    return process_cache().get_or_compute(_key("refined", photo, timed, threshold), compute)


def full_mask(photo: Photo, timed: Timed, settings: MaskSettings, image: np.ndarray | None = None) -> np.ndarray:
    """The full-size final mask at ``settings`` (refined when asked for); the caller holds a :func:`heavy` slot."""
    refined = edge(photo, timed, settings.threshold, image) if settings.refine else None
    return final_mask(levels(photo, timed, image), settings, refined)


def matte(photo: Photo, timed: Timed, settings: MaskSettings, image: np.ndarray | None = None) -> Matte:
    """The full-size soft-edged matte at ``settings``, once per photo, model, options and settings.

    The caller holds a :func:`heavy` slot. ``image``: the photo when already decoded.
    """

    def compute() -> Matte:
        picture = photo_image(photo) if image is None else image
        full = levels(photo, timed, picture)
        made = soft_matte(picture, full_mask(photo, timed, settings, picture), full.probabilities())
        _read_only(made.alpha), _read_only(made.foreground)
        return made

    return process_cache().get_or_compute(_key("matte", photo, timed, settings), compute)


def mask_download(photo: Photo, timed: Timed, settings: MaskSettings) -> bytes:
    """The full-size mask PNG, made when the download is asked for."""
    with heavy(photo, show_wait=False):
        return analysis_files(photo, timed, settings)[0]


def photo_files(photo: Photo, timed: Timed, settings: MaskSettings, output: OutputOptions) -> tuple[bytes, bytes]:
    """The full-size mask PNG and cut-out of ``photo``, made when a download is asked for (one slot for both)."""
    with heavy(photo, show_wait=False):
        return analysis_files(photo, timed, settings, output)


def cutout_download(photo: Photo, timed: Timed, settings: MaskSettings, output: OutputOptions) -> bytes:
    """The full-size cut-out, made when the download is asked for."""
    return photo_files(photo, timed, settings, output)[1]


def analysis_files(
    photo: Photo, timed: Timed, settings: MaskSettings, output: OutputOptions | None = None
) -> tuple[bytes, ...]:
    """The mask PNG and (given ``output``) the cut-out of ``photo``; the caller holds a :func:`heavy` slot."""
    # A cut-out needs the photo in full anyway: decode it once for the levels too.
    image = photo_image(photo) if output is not None and not timed.analysis.is_full else None
    mask = full_mask(photo, timed, settings, image)
    files = (mask_file(levels(photo, timed, image), mask),)
    if output is None:
        return files
    image = photo_image(photo) if image is None else image
    made = matte(photo, timed, settings, image) if output.soft_edges else None
    return (*files, cutout_file(image, levels(photo, timed, image), mask, output, made))


def background_picture(data: bytes) -> np.ndarray:
    """An uploaded background image, decoded once per content while the cache holds it (raises InvalidImageError)."""
    return process_cache().get_or_compute(("background", digest(data)), lambda: _read_only(load_image(data)))


@st.cache_data(show_spinner=False)
def species() -> dict[str, dict[str, str]]:
    """Species code -> names, from the committed models/species.json."""
    return load_species()


@st.cache_data(show_spinner=False)
def _species_out(path: str, mtime: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = gen.load_generalisation(path)
    return gen.summarize(rows), gen.per_species(rows)


def species_out() -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Leave-species-out results (summary per recipe, IoU per held-out species), or None after saying why not.

    Cached until models/generalisation.csv changes.
    """
    path = gen.GENERALISATION_FILE
    if not path.is_file():
        st.info("No leave-species-out results yet: `python -m seg_core.evaluate --leave-species-out RECIPE`.")
        return None
    return _species_out(str(path), path.stat().st_mtime)


def species_out_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The leave-species-out summary with readable column names and the worst species' common name."""
    shown = summary.rename(
        columns={
            "species_mean_iou": "mean over species",
            "worst_species": "worst species",
            "worst_species_iou": "worst species IoU",
            "iou_per_photo": "mean per photo",
        }
    )
    shown["worst species"] = shown["worst species"].map(lambda s: species().get(s, {}).get("common", s))
    return shown


@st.cache_data(show_spinner=False)
def catalogue() -> pd.DataFrame:
    """Every selectable model with recipe and size (no weights loaded)."""
    return model_catalogue()


def _column(name: str):
    label = labels.label(name)
    if label.number_format:
        return st.column_config.NumberColumn(label.text, format=label.number_format, help=label.help or None)
    return st.column_config.Column(label.text, help=label.help or None)


#: Column headers and number formats for every results table, from the one table in seg_core.core.labels.
COLUMNS = {name: _column(name) for name in labels.LABELS}


@st.cache_data(show_spinner=False)
def _read_eval(path: str, mtime: float) -> pd.DataFrame:
    return load_eval(path)


@st.cache_data(show_spinner=False)
def _read_bench(path: str, mtime: float) -> pd.DataFrame:
    return load_bench(path)


def _results(path: Path, reader, what: str, tool: str) -> pd.DataFrame | None:
    try:
        # The modification time is part of the cache key so a rewritten file is re-read.
        return reader(str(path), path.stat().st_mtime if path.is_file() else 0.0)
    except ResultsMissingError:
        st.warning(
            f"**Results file missing:** `{path.name}` is not in `{path.parent.name}/` yet, so the {what} "
            f"cannot be shown. `python -m {tool}` writes it."
        )
    except ResultsFormatError as exc:
        st.error(f"**Results file unreadable:** {exc}")
    return None


def eval_results(path: Path, what: str = "scores") -> pd.DataFrame | None:
    """The evaluation rows, or None after showing why they are unavailable."""
    return _results(path, _read_eval, what, "seg_core.evaluate")


def bench_results(path: Path, what: str = "latencies") -> pd.DataFrame | None:
    """The benchmark rows, or None after showing why they are unavailable."""
    return _results(path, _read_bench, what, "seg_core.bench")


@dataclass(frozen=True)
class Photo:
    """A photo chosen on a page, with an optional ground-truth mask (bytes, never on disk)."""

    name: str
    data: bytes
    truth: bytes | None = None
    truth_name: str | None = None

    @cached_property
    def key(self) -> str:
        return digest(self.data)


@dataclass(frozen=True)
class Timed:
    """An analysis, and whether its model time was measured for this request or comes from the cache.

    Attributes:
        analysis: the cached or fresh result.
        cached: True when an earlier request computed it (and its time).
        age_s: seconds since its time was measured.
    """

    analysis: CompactAnalysis
    cached: bool
    age_s: float
    model: str = ""

    @property
    def note(self) -> str:
        """When the time was measured: ``"just now"`` or ``"2 min ago (cached)"``."""
        return f"{age_text(self.age_s)} ago (cached)" if self.cached else "just now"

    def time_text(self) -> str:
        """The model time as shown, e.g. ``"37.2 ms"`` or ``"37.2 ms (cached)"``."""
        shown = f"{labels.fmt('model_ms', self.analysis.model_ms)} ms"
        return f"{shown} (cached)" if self.cached else shown

    def caption(self, predictor: Predictor) -> str:
        """What the model time covers and when it was measured, in one sentence."""
        when = f"cached result, measured {age_text(self.age_s)} ago" if self.cached else "measured just now"
        if predictor.kind != "unet":
            return f"Model time: {predictor.name}'s whole computation on this photo; {when}."
        options = self.analysis.options
        extras = [name for name, on in (("second look", options.second_look), ("TTA", options.tta)) if on]
        steps = ", ".join(["preprocessing", "network", *extras, "resizing to the photo"])
        # A photo larger than the screen is analysed from a copy decoded at about screen size.
        subject = "this photo" if self.analysis.is_full else "a screen-size copy of this photo"
        return f"Model time: {predictor.name}{runtime_text(predictor)} on {subject} ({steps}); {when}."


def runtime_text(predictor: Predictor) -> str:
    """`` on OpenVINO BF16``-style words for the runtime a loaded U-Net runs on; empty for baselines."""
    info = predictor.info()
    if not info.get("runtime"):
        return ""
    precision = str(info.get("precision") or "").upper()
    return f" on {RUNTIME_NAMES.get(info['runtime'], info['runtime'])} {precision}".rstrip()


def analysis(photo: Photo, model: str, options: InferenceOptions) -> Timed:
    """The compact decode-and-predict result of ``photo`` through ``model`` with ``options``.

    Computed once per (photo digest, model, options) while the byte-bounded
    process cache holds it, in an admission slot (a "waiting" status shows
    while queued). Raises InvalidImageError or ModelLoadError.
    """
    asked_at = time.time()
    predictor = get_predictor(model)

    def compute() -> CompactAnalysis:
        with heavy(photo):
            return analyse_compact(photo.data, predictor, options)

    result = process_cache().get_or_compute(("analysis", photo.key, model, options), compute)
    return Timed(result, is_cached(result, asked_at), time.time() - result.measured_at, model)


def _uploads(label: str, key: str, multiple: bool, help_text: str) -> list:
    files = st.file_uploader(label, type=UPLOAD_TYPES, accept_multiple_files=multiple, key=key, help=help_text)
    if files is None:
        return []
    return files if isinstance(files, list) else [files]


def _sample(key: str) -> list[Photo]:
    samples = {s.id: s for s in sample_photos()}
    names = species()
    chosen = st.selectbox(
        "Sample photo (test split, never seen in training)",
        list(samples),
        format_func=lambda sample_id: sample_label(samples[sample_id], names),
        key=f"{key}_sample",
        persist_state=KEEP,
    )
    if chosen is None:
        return []
    sample = samples[chosen]
    use_truth = st.checkbox(
        "Score against its ground-truth mask", value=True, key=f"{key}_sample_truth", persist_state=KEEP
    )
    truth = sample.mask_path.read_bytes() if use_truth else None
    return [Photo(sample.image_path.name, sample.image_path.read_bytes(), truth, sample.mask_path.name)]


def _upload(key: str, multiple: bool) -> list[Photo]:
    files = _uploads(
        "Photos" if multiple else "Photo",
        f"{key}_upload",
        multiple,
        f"{UPLOAD_LIMITS}. Files stay in memory and are never written to disk.",
    )
    st.caption(UPLOAD_LIMITS + ".")
    with st.expander("Ground-truth masks (optional)"):
        masks = _uploads(
            "Masks",
            f"{key}_truth",
            True,
            "Black/white or Leeds palette masks, matched to photos by file name "
            "(photo.jpg <- photo.png, photo_seg0.png or photo_mask.png).",
        )
        st.caption("Give a mask the photo's file name (optionally ending in _seg0 or _mask) to get IoU and Dice.")
    truth_by_name = {f.name: f for f in masks}
    photo_names = [f.name for f in files]
    if files:
        for name in outputs.unmatched_masks(photo_names, list(truth_by_name)):
            st.warning(
                f"Ground-truth mask **{name}** matches no photo, so it is not used. Name it after its photo: "
                f"`{outputs.stem(name)}.jpg` pairs with `{outputs.stem(name)}.png`, "
                f"`{outputs.stem(name)}_seg0.png` or `{outputs.stem(name)}_mask.png`."
            )
    matches = outputs.match_truth(photo_names, list(truth_by_name))
    photos = []
    for f in files:
        mask_file = truth_by_name.get(matches.get(f.name, ""))
        photos.append(
            Photo(
                f.name, f.getvalue(), mask_file.getvalue() if mask_file else None, mask_file.name if mask_file else None
            )
        )
    return photos


def photo_picker(key: str, multiple: bool) -> list[Photo]:
    """Let the user pick a sample (the default, so a page opens with a result) or upload photos.

    Args:
        key: widget key prefix (one per page).
        multiple: allow a batch of uploads.

    Returns:
        The chosen photos, each with its ground-truth mask when there is one.
    """
    source = st.radio("Photo source", [SAMPLE, UPLOAD], horizontal=True, key=f"{key}_source", persist_state=KEEP)
    return _sample(key) if source == SAMPLE else _upload(key, multiple)


def show_problem(what: str, exc: Exception) -> None:
    """Show a clear error for one photo or model; unexpected errors are logged with their traceback."""
    if isinstance(exc, InvalidImageError):
        st.error(f"**{what}** cannot be used: {exc}.")
    elif isinstance(exc, ModelLoadError):
        st.error(f"**The model could not be loaded.** {exc}")
    else:
        log.exception("unexpected error for %s", what, exc_info=exc)
        st.error(f"**{what}** could not be processed ({type(exc).__name__}: {exc}).")


# Large freed buffers go back to the system, so the server shrinks again after a burst of big photos.
give_back_freed_buffers()
