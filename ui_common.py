"""Streamlit pieces shared by the pages: cached model loading, photo pickers, results.

Caches here are process-wide, so every page and every session share one
loaded model per name and one probability map per (photo, model).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd
import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from seg_core import app_support
from seg_core.data import load_species
from seg_core.imaging import InvalidImageError
from seg_core.inference import ModelLoadError, Predictor
from seg_core.results import ResultsFormatError, ResultsMissingError, load_bench, load_eval

log = logging.getLogger(__name__)

UPLOAD = "Upload"
SAMPLE = "Sample photo"

#: (label, number format) of the numeric result columns the pages show.
_NUMBERS = {
    "parameters": ("Parameters", "localized"),
    "file_mb": ("Weights (MB)", "%.2f"),
    "load_s": ("Load (s)", "%.2f"),
    "inference_ms": ("Inference (ms)", "%.1f"),
    "latency_median_ms": ("Median latency (ms)", "%.1f"),
    "latency_p95_ms": ("p95 latency (ms)", "%.1f"),
    "throughput_batch8_ips": ("Batch of 8 (photos/s)", "%.1f"),
    "peak_rss_mb": ("Peak memory (MB)", "%.0f"),
    "foreground": ("Foreground (%)", "%.1f"),
    "iou": ("IoU", "%.3f"),
    "dice": ("Dice", "%.3f"),
    "accuracy": ("Pixel accuracy", "%.4f"),
    "mean_iou": ("Mean IoU (2 classes)", "%.4f"),
}
#: Column labels and formats shared by the pages; a page overrides what it words differently.
COLUMNS = {
    "model": st.column_config.TextColumn("Model"),
    "kind": "Kind",
    "recipe": st.column_config.TextColumn("Recipe", width="large"),
    "reference": "Reference only",
    "photos": "Photos",
    "threshold": "Threshold",
    **{name: st.column_config.NumberColumn(label, format=fmt) for name, (label, fmt) in _NUMBERS.items()},
}


def threshold_slider(key: str, disabled: bool = False, help: str | None = None) -> float:
    """The probability threshold control every page uses (0.05 to 0.95, default 0.5)."""
    return st.slider("Threshold", 0.05, 0.95, 0.5, 0.01, key=key, disabled=disabled, help=help)


def require_app_navigation() -> None:
    """Rerun through ``streamlit_app.py`` when Streamlit ran a page file on its own.

    Because the pages live in ``pages/``, Streamlit starts in its legacy multipage
    mode: a deep link opened before anyone has loaded the entry point (``/segment``
    just after the server starts) runs the page file directly, without the app's
    navigation and page settings. Leaving that mode and rerunning keeps the
    requested page, since both modes name a page by the same URL path.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


@st.cache_resource(show_spinner="Loading the model...")
def get_predictor(name: str) -> Predictor:
    """The one loaded instance of model ``name`` (raises ModelLoadError)."""
    return app_support.load_warm(name)


# cache_resource, not cache_data: results are shared without pickling copies,
# which is safe because analyse() returns read-only arrays. A 50-megapixel photo
# holds about 350 MB here, hence the small bound and the expiry.
@st.cache_resource(max_entries=16, ttl="1h", show_spinner=False)
def cached_analysis(photo_key: str, model: str, _data: bytes) -> app_support.Analysis:
    """Decode ``_data`` and run ``model`` once per (photo digest, model)."""
    return app_support.analyse(_data, get_predictor(model))


@st.cache_data(show_spinner=False)
def species() -> dict[str, dict[str, str]]:
    """Species code -> names, from the committed models/species.json."""
    return load_species()


@st.cache_data(show_spinner=False)
def catalogue() -> pd.DataFrame:
    """Every selectable model with recipe and size (no weights loaded)."""
    return app_support.model_catalogue()


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
        return app_support.digest(self.data)


def analysis(photo: Photo, model: str) -> app_support.Analysis:
    """The cached decode-and-predict result of ``photo`` through ``model``."""
    return cached_analysis(photo.key, model, photo.data)


def _uploads(label: str, key: str, multiple: bool, help_text: str) -> list:
    files = st.file_uploader(
        label, type=app_support.UPLOAD_TYPES, accept_multiple_files=multiple, key=key, help=help_text
    )
    if files is None:
        return []
    return files if isinstance(files, list) else [files]


def photo_picker(key: str, multiple: bool, default: str = UPLOAD) -> list[Photo]:
    """Let the user upload photos or pick a sample; returns the chosen photos.

    Args:
        key: widget key prefix (one per page).
        multiple: allow a batch of uploads.
        default: which source is selected first.
    """
    source = st.radio(
        "Photo source", [UPLOAD, SAMPLE], index=[UPLOAD, SAMPLE].index(default), horizontal=True, key=f"{key}_source"
    )
    if source == SAMPLE:
        samples = app_support.sample_photos()
        names = species()
        chosen = st.selectbox(
            "Sample photo (test split, never seen in training)",
            samples,
            format_func=lambda s: app_support.sample_label(s, names),
            key=f"{key}_sample",
        )
        if chosen is None:
            return []
        use_truth = st.checkbox("Score against its ground-truth mask", value=True, key=f"{key}_sample_truth")
        truth = chosen.mask_path.read_bytes() if use_truth else None
        return [Photo(chosen.image_path.name, chosen.image_path.read_bytes(), truth, chosen.mask_path.name)]

    files = _uploads(
        "Photos" if multiple else "Photo",
        f"{key}_upload",
        multiple,
        f"{app_support.UPLOAD_LIMITS}. Files stay in memory and are never written to disk.",
    )
    st.caption(app_support.UPLOAD_LIMITS + ".")
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
    matches = app_support.match_truth([f.name for f in files], list(truth_by_name))
    photos = []
    for f in files:
        mask_file = truth_by_name.get(matches.get(f.name, ""))
        photos.append(
            Photo(
                f.name, f.getvalue(), mask_file.getvalue() if mask_file else None, mask_file.name if mask_file else None
            )
        )
    return photos


def show_problem(what: str, exc: Exception) -> None:
    """Show a clear error for one photo or model; unexpected errors are logged with their traceback."""
    if isinstance(exc, InvalidImageError):
        st.error(f"**{what}** cannot be used: {exc}.")
    elif isinstance(exc, ModelLoadError):
        st.error(f"**The model could not be loaded.** {exc}")
    else:
        log.exception("unexpected error for %s", what, exc_info=exc)
        st.error(f"**{what}** could not be processed ({type(exc).__name__}: {exc}).")
