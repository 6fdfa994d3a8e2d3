"""One table of column labels and number formats for the app and the command-line summaries."""

import math

import numpy as np
import pandas as pd

from seg_core.core import labels
from seg_core.core.metrics import METRICS
from seg_core.evaluation.evaluate import SUMMARY_LABELS, format_table


def test_values_are_rounded_the_same_everywhere():
    assert labels.fmt("iou", 0.951234) == "0.9512"
    assert labels.fmt("iou", np.float32(0.5)) == "0.5000"
    assert labels.fmt("threshold", 0.5) == "0.50"
    assert labels.fmt("parameters", 1945521) == "1,945,521"
    assert labels.fmt("peak_rss_mb", 1014.3) == "1014"
    assert labels.fmt("photos", np.int64(112)) == "112"
    assert labels.fmt("model", "unet-best") == "unet-best"
    assert labels.fmt("iou", math.nan) == "" and labels.fmt("dice", None) == ""


def test_streamlit_formats_follow_the_decimals():
    assert labels.label("iou").number_format == "%.4f"
    assert labels.label("parameters").number_format == "localized"
    assert labels.label("model").number_format is None


def test_every_metric_has_a_label_and_an_unknown_column_gets_a_readable_one():
    assert all(name in labels.LABELS for name in ("accuracy", "dice", "iou", "mean_iou"))
    assert set(METRICS) <= set(labels.LABELS)
    assert labels.text("edge_f1") == "Edge f1"


def test_command_line_tables_use_the_same_labels():
    table = pd.DataFrame({"model": ["a"], "iou": [0.95123], "parameters": [1200], "median_ms": [41.74]})
    text = format_table(table, ["model", "iou", "parameters", "median_ms"], markdown=True)
    header, rule, row = text.splitlines()
    assert [c.strip() for c in header.strip("|").split("|")] == ["Model", "IoU", "Parameters", "Median model time (ms)"]
    assert [c.strip() for c in row.strip("|").split("|")] == ["a", "0.9512", "1,200", "41.7"]
    assert rule.count(":") == 3
    assert SUMMARY_LABELS["iou"] == labels.text("iou")
