"""Aggregation of evaluation rows on tiny hand-made tables."""

import math

import numpy as np
import pandas as pd
import pytest

from seg_core.core.metrics import Confusion, dice, iou
from seg_core.evaluation import results

SPECIES = {"001": {"latin": "Danaus plexippus", "common": "Monarch"}, "002": {"latin": "H. c.", "common": "Zebra"}}


def row(model, image_id, threshold, tp, fp, fn, tn, kind="unet", boundary=(1, 2)):
    return {
        "model": model,
        "kind": kind,
        "image_id": image_id,
        "species": image_id[:3],
        "split": "test",
        "height": 1,
        "width": tp + fp + fn + tn,
        "threshold": threshold,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "boundary_intersection": boundary[0],
        "boundary_union": boundary[1],
        "infer_ms": 1.0,
    }


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        [
            row("net", "0010001", 0.3, 8, 2, 0, 10, boundary=(4, 8)),
            row("net", "0010001", 0.5, 6, 0, 2, 12, boundary=(3, 4)),
            row("net", "0020001", 0.3, 1, 1, 0, 18, boundary=(1, 2)),
            row("net", "0020001", 0.5, 1, 0, 0, 19, boundary=(0, 0)),
            row("otsu", "0010001", np.nan, 4, 4, 4, 8, kind="baseline", boundary=(2, 10)),
            row("otsu", "0020001", np.nan, 0, 0, 1, 19, kind="baseline", boundary=(0, 1)),
        ]
    )


def test_thresholds_ignore_binary_rows(table):
    assert results.thresholds(table) == [0.3, 0.5]


def test_binary_models(table):
    assert results.binary_models(table) == {"otsu"}


def test_at_threshold_keeps_binary_rows(table):
    rows = results.at_threshold(table, 0.5)
    assert sorted(zip(rows["model"], rows["image_id"], strict=True)) == [
        ("net", "0010001"),
        ("net", "0020001"),
        ("otsu", "0010001"),
        ("otsu", "0020001"),
    ]


def test_with_metrics_uses_the_metrics_module(table):
    scored = results.with_metrics(table)
    first = scored.iloc[0]
    assert first["iou"] == pytest.approx(iou(Confusion(8, 2, 0, 10)))
    assert first["dice"] == pytest.approx(dice(Confusion(8, 2, 0, 10)))
    assert set(results.METRIC_NAMES) <= set(scored.columns)
    assert "iou" not in table.columns
    # Boundary IoU from the band counts; two empty bands (a photo with nothing to outline, missed by nobody) agree.
    assert scored["boundary_iou"].tolist() == [0.5, 0.75, 0.5, 1.0, 0.2, 0.0]


def test_boundary_iou_per_image_and_whole_set(table):
    at = results.at_threshold(table, 0.5)
    per_image = results.aggregate(at, ["model"], results.PER_IMAGE).set_index("model")
    whole = results.aggregate(at, ["model"], results.WHOLE_SET).set_index("model")
    assert per_image.loc["net", "boundary_iou"] == pytest.approx((3 / 4 + 1.0) / 2)
    assert whole.loc["net", "boundary_iou"] == pytest.approx(3 / 4)
    assert per_image.loc["otsu", "boundary_iou"] == pytest.approx(0.1)
    assert whole.loc["otsu", "boundary_iou"] == pytest.approx(2 / 11)
    curves = results.threshold_curves(table, results.WHOLE_SET).set_index(["model", "threshold"])
    assert curves.loc[("net", 0.3), "boundary_iou"] == pytest.approx(5 / 10)


def test_per_image_and_whole_set_differ(table):
    at = results.at_threshold(table, 0.5)
    per_image = results.aggregate(at, ["model"], results.PER_IMAGE).set_index("model")
    whole = results.aggregate(at, ["model"], results.WHOLE_SET).set_index("model")
    assert per_image.loc["net", "iou"] == pytest.approx((6 / 8 + 1 / 1) / 2)
    assert whole.loc["net", "iou"] == pytest.approx(7 / 9)
    assert per_image.loc["net", "photos"] == 2
    # A photo whose only butterfly pixel is missed scores 0, which drags the per-image mean down.
    assert per_image.loc["otsu", "iou"] == pytest.approx((4 / 12 + 0.0) / 2)
    assert whole.loc["otsu", "iou"] == pytest.approx(4 / 13)


def test_aggregate_rejects_unknown_mode(table):
    with pytest.raises(ValueError, match="aggregation"):
        results.aggregate(table, ["model"], "median")


def test_threshold_curves_repeat_binary_models_at_every_threshold(table):
    curves = results.threshold_curves(table, results.WHOLE_SET)
    otsu = curves[curves["model"] == "otsu"]
    assert otsu["threshold"].tolist() == [0.3, 0.5]
    assert otsu["iou"].nunique() == 1
    net = curves[curves["model"] == "net"].set_index("threshold")
    assert net.loc[0.3, "iou"] == pytest.approx(9 / 12)
    assert net.loc[0.5, "iou"] == pytest.approx(7 / 9)


def test_threshold_curves_per_image_match_aggregate(table):
    curves = results.threshold_curves(table, results.PER_IMAGE).set_index(["model", "threshold"])
    expected = results.aggregate(results.at_threshold(table, 0.3), ["model"], results.PER_IMAGE).set_index("model")
    assert curves.loc[("net", 0.3), "dice"] == pytest.approx(expected.loc["net", "dice"])


def test_species_breakdown_names_species(table):
    out = results.species_breakdown(table, 0.5, SPECIES, results.PER_IMAGE)
    net = out[out["model"] == "net"].set_index("species")
    assert net.loc["001", "species_name"] == "Monarch (001)"
    assert net.loc["001", "iou"] == pytest.approx(6 / 8)
    assert len(out) == 4


def test_worst_images_sorted_ascending(table):
    worst = results.worst_images(table, "net", 0.5, n=1)
    assert worst["image_id"].tolist() == ["0010001"]
    assert results.worst_images(table, "otsu", 0.3, n=5)["image_id"].tolist() == ["0020001", "0010001"]
    with pytest.raises(ValueError):
        results.worst_images(table, "net", 0.5, metric="f2")


def test_latency_long():
    bench = pd.DataFrame(
        {"model": ["a"], "kind": ["unet"], "reference": [False], "latency_median_ms": [10.0], "latency_p95_ms": [12.0]}
    )
    long = results.latency_long(bench)
    assert sorted(zip(long["statistic"], long["ms"], strict=True)) == [("median", 10.0), ("p95", 12.0)]


def test_model_table_joins_scores_and_latency(table):
    catalogue = pd.DataFrame({"model": ["net", "otsu", "new"], "kind": ["unet", "baseline", "unet"]})
    bench = pd.DataFrame({"model": ["net"], "latency_median_ms": [5.0]})
    out = results.model_table(catalogue, table, bench, threshold=0.5).set_index("model")
    assert out.loc["net", "iou"] == pytest.approx((6 / 8 + 1) / 2)
    assert out.loc["net", "latency_median_ms"] == 5.0
    assert math.isnan(out.loc["new", "iou"]) and math.isnan(out.loc["otsu", "latency_median_ms"])
    empty = results.model_table(catalogue, None, None)
    assert empty["iou"].isna().all() and empty["latency_median_ms"].isna().all()


def test_model_table_takes_each_models_default_runtime(table):
    catalogue = pd.DataFrame({"model": ["net", "otsu"], "kind": ["unet", "baseline"]})
    bench = pd.DataFrame(
        {
            "model": ["net", "net", "otsu"],
            "runtime": ["keras", "openvino", "opencv"],
            "precision": ["fp32", "bf16", "-"],
            "default": [False, True, True],
            "latency_median_ms": [9.0, 3.0, 0.2],
        }
    )
    out = results.model_table(catalogue, table, bench)
    assert out["model"].tolist() == ["net", "otsu"]
    assert out.set_index("model").loc["net", ["runtime", "precision", "latency_median_ms"]].tolist() == [
        "openvino",
        "bf16",
        3.0,
    ]


def test_load_eval_round_trip(tmp_path, table):
    path = tmp_path / "eval.csv"
    table.to_csv(path, index=False)
    loaded = results.load_eval(path)
    assert loaded["image_id"].iloc[0] == "0010001" and loaded["species"].iloc[0] == "001"
    assert loaded["threshold"].isna().sum() == 2


def test_load_eval_pads_ids_read_as_numbers(tmp_path, table):
    path = tmp_path / "eval.csv"
    table.assign(image_id=table["image_id"].astype(int), species=table["species"].astype(int)).to_csv(path, index=False)
    loaded = results.load_eval(path)
    assert loaded["image_id"].iloc[0] == "0010001" and loaded["species"].iloc[0] == "001"


def test_load_eval_errors(tmp_path, table):
    with pytest.raises(results.ResultsMissingError, match="missing"):
        results.load_eval(tmp_path / "absent.csv")
    broken = tmp_path / "broken.csv"
    table.drop(columns=["tn"]).to_csv(broken, index=False)
    with pytest.raises(results.ResultsFormatError, match="tn"):
        results.load_eval(broken)
    wrong = tmp_path / "wrong.csv"
    table.assign(tn=0).to_csv(wrong, index=False)
    with pytest.raises(results.ResultsFormatError, match="height"):
        results.load_eval(wrong)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(results.ResultsFormatError):
        results.load_eval(empty)


def test_load_eval_asks_for_a_new_evaluation_when_boundary_counts_are_missing(tmp_path, table):
    old = tmp_path / "old.csv"
    table.drop(columns=results.BOUNDARY_COLUMNS).to_csv(old, index=False)
    with pytest.raises(results.ResultsFormatError) as exc:
        results.load_eval(old)
    assert "['boundary_intersection', 'boundary_union']" in str(exc.value)
    assert "rerun `python -m seg_core.evaluate`" in str(exc.value)
    blank = tmp_path / "blank.csv"
    table.assign(boundary_union=np.nan).to_csv(blank, index=False)
    with pytest.raises(results.ResultsFormatError, match="non-numeric"):
        results.load_eval(blank)
    crossed = tmp_path / "crossed.csv"
    table.assign(boundary_intersection=3, boundary_union=2).to_csv(crossed, index=False)
    with pytest.raises(results.ResultsFormatError, match="intersection <= union"):
        results.load_eval(crossed)


def test_load_bench(tmp_path):
    path = tmp_path / "bench.csv"
    frame = pd.DataFrame([dict.fromkeys(results.BENCH_COLUMNS, 1)]).assign(model="a", reference="True")
    frame.to_csv(path, index=False)
    assert results.load_bench(path)["reference"].tolist() == [True]
    with pytest.raises(results.ResultsMissingError):
        results.load_bench(tmp_path / "none.csv")
