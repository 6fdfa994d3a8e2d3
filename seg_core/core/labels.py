"""How results columns are shown: one table of labels and number formats.

A column has one name in every results table and CSV file (``iou``,
``latency_median_ms``); this table says what people read for it, in the
dashboard (column headers, metric cards, captions) and in the command-line
summaries of :mod:`seg_core.evaluation.evaluate` and :mod:`seg_core.evaluation.bench`, so a column is
worded and rounded the same wherever it appears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real


@dataclass(frozen=True)
class Label:
    """How one column is shown.

    Attributes:
        text: header or label text.
        decimals: digits after the point for a number; None for text and counts.
        grouped: a large whole number shown with thousands separators.
        help: what the value means, for tooltips.
    """

    text: str
    decimals: int | None = None
    grouped: bool = False
    help: str = ""

    @property
    def number_format(self) -> str | None:
        """The format for Streamlit's number columns (printf style), None when not a rounded number."""
        if self.grouped:
            return "localized"
        return None if self.decimals is None else f"%.{self.decimals}f"

    def format(self, value: object) -> str:
        """``value`` as text: rounded to :attr:`decimals`, grouped, or as is; blank when missing."""
        if value is None:
            return ""
        if isinstance(value, Real) and not isinstance(value, bool):
            if math.isnan(float(value)):
                return ""
            if self.grouped:
                return f"{float(value):,.0f}"
            if self.decimals is not None:
                return f"{float(value):.{self.decimals}f}"
        return str(value)


_SCORE = 4
LABELS: dict[str, Label] = {
    "model": Label("Model"),
    "kind": Label("Kind"),
    "recipe": Label("Recipe"),
    "reference": Label("Reference only"),
    "photos": Label("Photos"),
    "threshold": Label("Threshold", 2),
    "runtime": Label("Runtime"),
    "precision": Label("Precision"),
    "default": Label("Default", help="The runtime and precision that load_predictor picks for this model."),
    "cpu_flags": Label("CPU flags"),
    "machine": Label("Machine"),
    "measured_at": Label("Measured on"),
    "parameters": Label("Parameters", grouped=True),
    "file_mb": Label("Weights (MB)", 2),
    "load_s": Label("Load (s)", 2),
    "model_ms": Label(
        "Model time (ms)",
        1,
        help="Preprocessing, network and resizing the probabilities back to the photo's size, for this "
        "photo on this server, including any wait while other users' photos go through the same model.",
    ),
    "measured": Label(
        "Measured",
        help="just now: this request ran the model. cached: the result and time of an earlier request "
        "for the same photo, model and settings.",
    ),
    "median_ms": Label("Median model time (ms)", 1, help="Median over the photos, after one warm-up photo."),
    "latency_median_ms": Label("Median latency (ms)", 1),
    "latency_p95_ms": Label("p95 latency (ms)", 1),
    "throughput_batch8_ips": Label("Batch of 8 (photos/s)", 1),
    "peak_rss_mb": Label("Peak memory (MB)", 0),
    "foreground": Label("Foreground (%)", 1, help="Share of the photo's pixels in the mask."),
    "iou": Label("IoU", _SCORE, help="Butterfly intersection over union with the ground truth."),
    "dice": Label("Dice", _SCORE, help="Butterfly Dice coefficient (F1) with the ground truth."),
    "accuracy": Label("Pixel accuracy", _SCORE, help="Share of all pixels, butterfly and background, right."),
    "mean_iou": Label("Mean IoU (2 classes)", _SCORE, help="Mean of butterfly IoU and background IoU."),
    "boundary_iou": Label(
        "Boundary IoU", _SCORE, help="IoU of the thin bands along each mask's outline: how well the edges agree."
    ),
    "iou_per_image": Label("IoU (mean per photo)", _SCORE, help="Mean of each photo's butterfly IoU."),
    # Per-butterfly measurements (seg_core.outputs.annotations.MEASUREMENT_FIELDS).
    "butterfly": Label("Butterfly", help="Connected region of the mask, numbered from the top of the photo."),
    "area_px": Label("Area (px)", grouped=True),
    "bbox_x": Label("Box left (px)"),
    "bbox_y": Label("Box top (px)"),
    "bbox_width": Label("Box width (px)"),
    "bbox_height": Label("Box height (px)"),
    "wingspan_px": Label("Wingspan (px)", 1, help="Extent along the region's principal axis, edge to edge."),
    "area_mm2": Label("Area (mm²)", 1),
    "wingspan_mm": Label("Wingspan (mm)", 1, help="Extent along the region's principal axis, edge to edge."),
}


def label(name: str) -> Label:
    """The label of column ``name`` (a plain one made from the name when the table lacks it)."""
    return LABELS.get(name) or Label(name.replace("_", " ").capitalize())


def text(name: str) -> str:
    """The header text of column ``name``."""
    return label(name).text


def fmt(name: str, value: object) -> str:
    """``value`` of column ``name`` as shown everywhere (e.g. ``fmt("iou", 0.95123) == "0.9512"``)."""
    return label(name).format(value)


def headers(names: list[str]) -> dict[str, str]:
    """Column -> header text, in the order given (for :func:`seg_core.evaluation.evaluate.format_table`)."""
    return {name: text(name) for name in names}


def decimals(names: list[str]) -> dict[str, int]:
    """Column -> decimals, for the columns of ``names`` that are rounded numbers."""
    return {name: label(name).decimals for name in names if label(name).decimals is not None}
