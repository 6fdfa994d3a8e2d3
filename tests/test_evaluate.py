"""Evaluation: threshold sweeps, the results file, the summary, and the committed results."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seg_core import evaluate as evaluate_cli
from seg_core.core.metrics import BoundaryCounts, Confusion, boundary_counts, confusion, dice, iou
from seg_core.core.paths import MODELS_DIR, REPO_ROOT
from seg_core.data.leeds import dataset_available, load_pairs, load_split, scan_dataset, split_samples
from seg_core.evaluation.evaluate import (
    SUMMARY_LABELS,
    THRESHOLDS,
    eval_path,
    evaluate,
    format_table,
    summarize,
    sweep_boundary_counts,
    sweep_counts,
)
from seg_core.evaluation.results import BOUNDARY_COLUMNS, EVAL_COLUMNS, load_eval
from seg_core.runtime.base import threshold_mask
from seg_core.runtime.registry import available_predictors, load_predictor

SAMPLES = REPO_ROOT / "samples"
TINY_MODELS = ["unet-light", "grabcut", "otsu"]


def random_case(seed: int, shape=(37, 53)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    prob = rng.random(shape).astype(np.float32)
    # Values exactly on the thresholds check the ">=" convention of threshold_mask.
    prob.flat[: len(THRESHOLDS)] = np.asarray(THRESHOLDS, dtype=np.float32)
    return prob, rng.random(shape) > 0.6


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sweep_counts_match_thresholding_each_time(seed):
    prob, truth = random_case(seed)
    assert sweep_counts(prob, truth) == [confusion(threshold_mask(prob, t), truth) for t in THRESHOLDS]


def test_sweep_counts_sum_to_area_and_foreground_shrinks():
    prob, truth = random_case(3)
    counts = sweep_counts(prob, truth)
    assert len(counts) == len(THRESHOLDS)
    assert all(c.total == prob.size for c in counts)
    predicted = [c.tp + c.fp for c in counts]
    assert predicted == sorted(predicted, reverse=True) and predicted[0] > predicted[-1]
    assert all(c.tp + c.fn == truth.sum() for c in counts)


def test_sweep_counts_edge_cases():
    assert sweep_counts(np.ones((1, 1), np.float32), np.ones((1, 1), bool), (0.5,)) == [Confusion(tp=1)]
    nan = np.full((2, 2), np.nan, np.float32)
    assert sweep_counts(nan, np.zeros((2, 2), bool), (0.5,)) == [Confusion(tn=4)]
    with pytest.raises(ValueError, match="shapes differ"):
        sweep_counts(np.zeros((2, 2)), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="increasing"):
        sweep_counts(np.zeros((2, 2)), np.zeros((2, 2), bool), (0.5, 0.3))


def blob_case(shape=(60, 90)) -> tuple[np.ndarray, np.ndarray]:
    """A smooth probability hill against an ellipse: the masks at neighbouring thresholds often coincide."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    radius = np.hypot((yy - 30) / 20, (xx - 45) / 35)
    return np.clip(1.2 - radius, 0, 1).round(1).astype(np.float32), radius < 0.9


@pytest.mark.parametrize("case", [random_case(0), random_case(4, (130, 70)), blob_case()])
def test_sweep_boundary_counts_match_each_threshold(case):
    prob, truth = case
    expected = [boundary_counts(threshold_mask(prob, t), truth) for t in THRESHOLDS]
    assert sweep_boundary_counts(prob, truth) == expected
    assert all(0 <= b.intersection <= b.union <= prob.size for b in expected)


def test_sweep_boundary_counts_edge_cases():
    nan = np.full((3, 3), np.nan, np.float32)
    assert sweep_boundary_counts(nan, np.zeros((3, 3), bool), (0.5,)) == [BoundaryCounts(0, 0)]
    # A one-pixel-wide band along the frame of a full mask: the border counts as background.
    assert sweep_boundary_counts(np.ones((5, 5), np.float32), np.ones((5, 5), bool), (0.5,)) == [
        BoundaryCounts(16, 16)
    ]
    with pytest.raises(ValueError, match="shapes differ"):
        sweep_boundary_counts(np.zeros((2, 2)), np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match="increasing"):
        sweep_boundary_counts(np.zeros((2, 2)), np.zeros((2, 2), bool), (0.5, 0.5))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """Four sample photos shrunk to odd sizes, in the Leeds layout, with a split file."""
    root = tmp_path_factory.mktemp("leeds")
    for folder in ("images", "segmentations", "descriptions"):
        (root / folder).mkdir()
    photos = sorted((SAMPLES / "images").glob("*.jpg"))[:4]
    for photo, width in zip(photos, (41, 64, 33, 50), strict=True):
        image = Image.open(photo)
        height = max(1, round(image.height * width / image.width))
        image.resize((width, height)).save(root / "images" / photo.name)
        mask = Image.open(SAMPLES / "masks" / f"{photo.stem}_seg0.png").convert("L")
        mask.resize((width, height), Image.Resampling.NEAREST).save(root / "segmentations" / f"{photo.stem}_seg0.png")
        (root / "descriptions" / f"{photo.stem[:3]}.txt").write_text(
            f"Latin {photo.stem[:3]}\nCommon {photo.stem[:3]}\n"
        )
    ids = [p.stem for p in photos]
    split_file = root / "split.json"
    split_file.write_text(json.dumps({"train": [], "val": ids[:1], "test": ids[1:]}))
    return root, split_file, ids[1:]


@pytest.fixture(scope="module")
def tiny_results(tiny_dataset, tmp_path_factory):
    root, split_file, ids = tiny_dataset
    out_dir = tmp_path_factory.mktemp("results")
    path = evaluate(root, "test", split_file, TINY_MODELS, out_dir, progress=False)
    return path, ids


def test_evaluation_writes_one_row_per_model_photo_threshold(tiny_results):
    path, ids = tiny_results
    assert path == eval_path(path.parent, "test")
    results = load_eval(path)
    assert list(results.columns) == EVAL_COLUMNS
    assert len(results) == len(ids) * (len(THRESHOLDS) + 2)
    unet = results[results["model"] == "unet-light"]
    assert set(unet["kind"]) == {"unet"}
    assert sorted(unet["threshold"].unique()) == list(THRESHOLDS)
    assert unet.groupby("image_id").size().to_dict() == dict.fromkeys(ids, len(THRESHOLDS))
    for baseline in ("grabcut", "otsu"):
        rows = results[results["model"] == baseline]
        assert set(rows["kind"]) == {"baseline"} and rows["threshold"].isna().all()
        assert sorted(rows["image_id"]) == ids
    assert (results[["tp", "fp", "fn", "tn"]].sum(axis=1) == results["height"] * results["width"]).all()
    inter, union = (results[c] for c in BOUNDARY_COLUMNS)
    assert ((inter >= 0) & (inter <= union) & (union > 0)).all()
    assert (results["species"] == results["image_id"].str[:3]).all() and set(results["split"]) == {"test"}
    assert (results["infer_ms"] > 0).all()


def test_boundary_counts_are_taken_at_each_photos_own_resolution(tiny_dataset, tiny_results):
    root, split_file, _ = tiny_dataset
    results = load_eval(tiny_results[0]).set_index(["model", "image_id"])
    otsu = load_predictor("otsu")
    samples = split_samples(scan_dataset(root), load_split(split_file), "test")
    for sample, image, truth in zip(*load_pairs(samples), strict=True):
        row = results.loc[("otsu", sample.id)]
        assert (row["height"], row["width"]) == truth.shape
        expected = boundary_counts(threshold_mask(otsu.predict_proba(image)), truth)
        assert (row["boundary_intersection"], row["boundary_union"]) == (expected.intersection, expected.union)


def test_evaluation_writes_species_names(tiny_results):
    path, ids = tiny_results
    species = json.loads((path.parent / "species.json").read_text())
    assert species[ids[0][:3]] == {"latin": f"Latin {ids[0][:3]}", "common": f"Common {ids[0][:3]}"}


def test_summary_aggregates_whole_set_and_per_image(tiny_results):
    path, ids = tiny_results
    summary = summarize(load_eval(path))
    assert list(summary["model"]) == TINY_MODELS and (summary["photos"] == len(ids)).all()
    scores = ["accuracy", "dice", "iou", "mean_iou", "boundary_iou", "iou_per_image"]
    assert summary[scores].stack().between(0, 1).all()
    table = format_table(summary, SUMMARY_LABELS, markdown=True)
    lines = table.splitlines()
    assert "| Boundary IoU |" in lines[0]
    assert len(lines) == 2 + len(TINY_MODELS) and lines[1].startswith("| ---") and "---:" in lines[1]
    assert all(line.count("|") == len(SUMMARY_LABELS) + 1 for line in lines)


def test_summary_sums_counts_before_the_metric():
    rows = [
        {"model": "m", "kind": "unet", "threshold": 0.5, "tp": 1, "fp": 1, "fn": 0, "tn": 2, "infer_ms": 1.0},
        {"model": "m", "kind": "unet", "threshold": 0.5, "tp": 9, "fp": 0, "fn": 0, "tn": 0, "infer_ms": 3.0},
        {"model": "m", "kind": "unet", "threshold": 0.1, "tp": 0, "fp": 9, "fn": 9, "tn": 9, "infer_ms": 1.0},
        {"model": "b", "kind": "baseline", "threshold": math.nan, "tp": 0, "fp": 0, "fn": 4, "tn": 0, "infer_ms": 5.0},
    ]
    boundaries = [(1, 2), (3, 9), (0, 5), (0, 0)]
    rows = [r | dict(zip(BOUNDARY_COLUMNS, b, strict=True)) for r, b in zip(rows, boundaries, strict=True)]
    summary = summarize(pd.DataFrame(rows)).set_index("model")
    assert summary.loc["m", "iou"] == pytest.approx(10 / 11)
    assert summary.loc["m", "boundary_iou"] == pytest.approx(4 / 11) and summary.loc["b", "boundary_iou"] == 1.0
    assert summary.loc["m", "iou_per_image"] == pytest.approx((0.5 + 1.0) / 2)
    assert summary.loc["m", "median_ms"] == 2.0 and summary.loc["b", "iou"] == 0.0


def test_cli_prints_summary_of_existing_results(tiny_results, capsys):
    path, _ = tiny_results
    evaluate_cli.main(["--summary-only", "--out-dir", str(path.parent), "--markdown"])
    out = capsys.readouterr().out
    assert "| Model" in out and "| unet-light" in out and "| otsu" in out and "Boundary IoU" in out


def test_cli_summary_explains_results_without_boundary_counts(tiny_results, tmp_path, capsys):
    old = load_eval(tiny_results[0]).drop(columns=BOUNDARY_COLUMNS)
    old.to_csv(eval_path(tmp_path, "test"), index=False)
    with pytest.raises(SystemExit) as exc:
        evaluate_cli.main(["--summary-only", "--out-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "'boundary_intersection', 'boundary_union'" in err
    assert "rerun `python -m seg_core.evaluate`" in err


def test_cli_reports_a_missing_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate_cli.main(["--data", str(tmp_path), "--out-dir", str(tmp_path), "--no-progress"])
    assert exc.value.code == 2 and "no Leeds Butterfly Dataset" in capsys.readouterr().err


def test_committed_results_have_boundary_counts_for_every_model():
    results = load_eval(MODELS_DIR / "eval_test.csv")
    assert set(available_predictors()) <= set(results["model"])
    assert (results["boundary_union"] > 0).all()


@pytest.mark.dataset
@pytest.mark.skipif(dataset_available() is None, reason="Leeds dataset not present")
def test_committed_results_cover_every_model_and_match_a_fresh_run():
    results = load_eval(MODELS_DIR / "eval_test.csv")
    samples = split_samples(scan_dataset(dataset_available()), load_split(), "test")
    ids = {s.id for s in samples}
    for name in available_predictors():
        assert set(results.loc[results["model"] == name, "image_id"]) == ids, name
    committed = summarize(results).set_index("model").loc["unet-best"]

    predictor = load_predictor("unet-best")
    total, edges = Confusion(), BoundaryCounts()
    for sample, image, truth in zip(*load_pairs(samples), strict=True):
        assert sample.id in ids
        mask = threshold_mask(predictor.predict_proba(image), 0.5)
        total += confusion(mask, truth)
        edges += boundary_counts(mask, truth)
    assert iou(total) == pytest.approx(committed["iou"], abs=0.005)
    assert edges.iou == pytest.approx(committed["boundary_iou"], abs=0.005)
    assert dice(total) == pytest.approx(committed["dice"], abs=0.005)
