"""Every dashboard page through Streamlit's AppTest (no browser).

Streamlit caches are process-wide, so models loaded by one test are reused by
the next; the whole module loads each committed model once.
"""

import contextlib
import io
import json
import re
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import streamlit as st
from collection_cases import GARDEN_LEFT_OUT, folder_zip, garden, zip_of
from PIL import Image
from streamlit.testing.v1 import AppTest

import ui_common
from seg_core.core.paths import REPO_ROOT
from seg_core.data.collections import COLLECTIONS_ENV, read_folder
from seg_core.evaluation import generalisation, results, robustness
from seg_core.evaluation.evaluate import evaluate_collection
from seg_core.outputs import annotations
from seg_core.outputs.compact import compact
from seg_core.outputs.cutout import crop_box
from seg_core.outputs.matting import soft_matte
from seg_core.runtime.base import DEFAULT_MODEL, InferenceOptions, ModelLoadError
from seg_core.runtime.catalogue import sample_photos
from seg_core.runtime.registry import available_predictors, baseline_names, segment
from seg_core.service import analysis as analysis_module
from seg_core.service.budget import process_cache

APP = str(REPO_ROOT / "streamlit_app.py")
SAMPLES = sample_photos()
SAMPLE = SAMPLES[0]
OTHER = SAMPLES[4]
TIMEOUT = 180


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def rerun(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def labels_of(at: AppTest) -> list[str]:
    return [m.label for m in at.metric]


def captions(at: AppTest) -> list[str]:
    return [c for image in at.image for c in image.captions]


def png(size: tuple[int, int], value: int = 255) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, value).save(buffer, format="PNG")
    return buffer.getvalue()


def use_upload(at: AppTest, prefix: str = "seg") -> AppTest:
    at.radio(key=f"{prefix}_source").set_value(ui_common.UPLOAD)
    return rerun(at)


def all_text(at: AppTest) -> str:
    parts = [e.value for kind in ("error", "warning", "info", "markdown", "caption") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def test_no_project_code_imports_streamlit_internals():
    files = [REPO_ROOT / "streamlit_app.py", REPO_ROOT / "ui_common.py"]
    files += sorted((REPO_ROOT / "pages").glob("*.py")) + sorted((REPO_ROOT / "seg_core").rglob("*.py"))
    internal = re.compile(r"^\s*(from|import)\s+streamlit\.(runtime|web|proto|elements)\b", re.MULTILINE)
    assert [f.name for f in files if internal.search(f.read_text())] == []


def test_every_page_is_in_the_app_navigation():
    assert [spec.path for spec in ui_common.PAGES][0] == "pages/home.py"
    for spec in ui_common.PAGES:
        assert (REPO_ROOT / spec.path).is_file()


def test_home_links_every_page_and_lists_every_model():
    at = open_page()
    assert at.title[0].value == "Wingmask"
    assert [link.value for link in at.page_link] == [
        "**Segment**",
        "**Compare models**",
        "**Validation metrics**",
        "Per species, and recoloured photos",
    ]
    table = at.dataframe[0].value.set_index("model")
    assert list(table.index) == available_predictors()
    assert table["parameters"].notna().all()
    assert table.loc["unet-best", "iou"] > 0.9 and "latency_median_ms" in table.columns
    recipes = " ".join(m.value for m in at.markdown)
    assert all(f"**{name}**" in recipes for name in table.index)


def test_segment_opens_with_a_sample_result_and_downloads():
    at = open_page("pages/segment.py")
    assert at.title[0].value == "Segment photos"
    assert at.radio(key="seg_source").value == ui_common.SAMPLE
    assert at.subheader[0].value == SAMPLE.image_path.name
    assert captions(at) == ["Original", "Mask", "Overlay", "Cut-out"]
    assert [b.label for b in at.get("download_button")] == ["COCO annotations (JSON)", "Mask PNG", "Cut-out PNG"]
    width, height = Image.open(SAMPLE.image_path).size
    assert metric(at, "Size") == f"{width}x{height}"
    assert float(metric(at, "IoU")) > 0.8 and float(metric(at, "Dice")) > 0.9


def test_sample_round_trip_through_upload_keeps_the_widgets_and_the_result_in_step():
    at = open_page("pages/segment.py")
    at.selectbox(key="seg_sample").set_value(OTHER.id)
    at.checkbox(key="seg_sample_truth").uncheck()
    rerun(at)
    assert at.subheader[0].value == OTHER.image_path.name and "IoU" not in labels_of(at)
    use_upload(at)
    assert not at.subheader and at.file_uploader(key="seg_upload") is not None
    at.radio(key="seg_source").set_value(ui_common.SAMPLE)
    rerun(at)
    assert at.selectbox(key="seg_sample").value == OTHER.id
    assert at.checkbox(key="seg_sample_truth").value is False
    assert at.subheader[0].value == OTHER.image_path.name
    assert "IoU" not in labels_of(at)


def test_compare_settings_survive_a_switch_to_upload():
    at = open_page("pages/compare.py")
    kept = [m for m in available_predictors() if m != "otsu"]
    at.multiselect(key="cmp_models").set_value(kept)
    at.slider(key="cmp_thr_unet-light").set_value(0.8)
    rerun(at)
    use_upload(at, "cmp")
    at.file_uploader(key="cmp_upload").upload(OTHER.image_path.name, OTHER.image_path.read_bytes(), "image/jpeg")
    rerun(at)
    assert at.multiselect(key="cmp_models").value == kept
    assert [s.key for s in at.slider] == [f"cmp_thr_{m}" for m in kept]
    assert at.slider(key="cmp_thr_unet-light").value == pytest.approx(0.8)
    table = at.dataframe[0].value.set_index("model")
    assert list(table.index) == kept and table.loc["unet-light", "threshold"] == "0.80"


def test_threshold_is_disabled_for_yes_no_models_on_segment():
    at = open_page("pages/segment.py")
    assert not at.slider(key="seg_threshold").disabled
    at.selectbox(key="seg_model").set_value(baseline_names()[0])
    rerun(at)
    assert at.slider(key="seg_threshold").disabled
    assert "yes/no" in at.slider(key="seg_threshold").help


def test_threshold_moves_the_mask_without_running_the_model_again_and_says_the_time_is_cached(monkeypatch):
    calls = []
    original = ui_common.analyse_compact

    def counting(source, predictor, options):
        calls.append((predictor.name, options))
        return original(source, predictor, options)

    monkeypatch.setattr(ui_common, "analyse_compact", counting)
    process_cache().clear()
    at = open_page("pages/segment.py")
    assert calls == [(DEFAULT_MODEL, InferenceOptions())]
    assert metric(at, "Model time").endswith(" ms")
    assert "measured just now" in all_text(at)
    before = metric(at, "Foreground")
    at.slider(key="seg_threshold").set_value(0.95)
    at.checkbox(key="seg_holes").check()
    rerun(at)
    assert len(calls) == 1
    assert float(metric(at, "Foreground").rstrip("%")) < float(before.rstrip("%"))
    assert metric(at, "Model time").endswith("ms (cached)")
    assert re.search(r"; cached result, measured \d+ s ago\.", all_text(at))


def test_inference_switches_reach_the_model(monkeypatch):
    seen = []
    original = ui_common.analyse_compact

    def spying(source, predictor, options):
        seen.append(options)
        return original(source, predictor, options)

    monkeypatch.setattr(ui_common, "analyse_compact", spying)
    process_cache().clear()
    at = open_page("pages/segment.py")
    assert at.toggle(key="seg_second_look").value and not at.toggle(key="seg_tta").value
    at.toggle(key="seg_second_look").set_value(False)
    at.toggle(key="seg_tta").set_value(True)
    rerun(at)
    assert seen[-1] == InferenceOptions(second_look=False, tta=True)
    assert "on this photo (preprocessing, network, TTA, resizing to the photo)" in all_text(at)


def test_bad_upload_gets_its_own_error_and_good_ones_still_work():
    at = use_upload(open_page("pages/segment.py"))
    uploader = at.file_uploader(key="seg_upload")
    uploader.upload("notes.jpg", b"this is not a photo", "image/jpeg")
    uploader.upload("readme.txt", b"plain text", "text/plain")
    uploader.upload("empty.png", b"", "image/png")
    uploader.upload(SAMPLE.image_path.name, SAMPLE.image_path.read_bytes(), "image/jpeg")
    rerun(at)
    errors = [e.value for e in at.error]
    assert len(errors) == 3
    assert "notes.jpg" in errors[0] and "not a readable image" in errors[0]
    assert "readme.txt" in errors[1] and "empty.png" in errors[2]
    assert captions(at) == ["Original", "Mask", "Overlay", "Cut-out"]
    assert "1 of 4 photos segmented" in all_text(at)
    assert [b.label for b in at.get("download_button")][0] == "Download all masks and cut-outs (ZIP)"


def test_batch_and_ground_truth_upload():
    at = use_upload(open_page("pages/segment.py"))
    photo = SAMPLE.image_path.read_bytes()
    at.file_uploader(key="seg_upload").set_value([("a.jpg", photo, "image/jpeg"), ("b.jpg", photo, "image/jpeg")])
    width, height = Image.open(SAMPLE.image_path).size
    at.file_uploader(key="seg_truth").set_value(
        [("a_seg0.png", SAMPLE.mask_path.read_bytes(), "image/png"), ("b.png", png((7, 5)), "image/png")]
    )
    rerun(at)
    assert len(at.image) == 8
    assert float(metric(at, "IoU")) > 0.8
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "7x5" in warnings[0] and f"{width}x{height}" in warnings[0]
    assert "2 of 2 photos segmented" in all_text(at)
    assert [b.label for b in at.get("download_button")] == [
        "Download all masks and cut-outs (ZIP)",
        "COCO annotations (JSON)",
        *["Mask PNG", "Cut-out PNG"] * 2,
    ]


def test_a_mask_that_matches_no_photo_is_reported():
    at = use_upload(open_page("pages/segment.py"))
    at.file_uploader(key="seg_upload").upload("a.jpg", SAMPLE.image_path.read_bytes(), "image/jpeg")
    at.file_uploader(key="seg_truth").set_value(
        [("a_seg0.png", SAMPLE.mask_path.read_bytes(), "image/png"), ("zebra.png", png((4, 4)), "image/png")]
    )
    rerun(at)
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "zebra.png" in warnings[0] and "matches no photo" in warnings[0]
    assert float(metric(at, "IoU")) > 0.8


def test_too_large_image_states_the_limit():
    buffer = io.BytesIO()
    Image.new("L", (13_000, 8), 0).save(buffer, format="PNG")
    at = use_upload(open_page("pages/segment.py"))
    at.file_uploader(key="seg_upload").upload("wide.png", buffer.getvalue(), "image/png")
    rerun(at)
    assert "too large" in at.error[0].value and "12000 pixels a side" in at.error[0].value


def test_model_load_error_is_shown(monkeypatch):
    def broken(name):
        raise ModelLoadError(f"model {name!r}: model.weights.h5 is missing")

    monkeypatch.setattr(ui_common, "get_predictor", broken)
    at = open_page("pages/segment.py")
    assert "could not be loaded" in at.error[0].value and "model.weights.h5" in at.error[0].value
    assert not at.image


def test_compare_scores_every_model_and_shows_agreement():
    at = open_page("pages/compare.py")
    table = at.dataframe[0].value
    assert list(table["model"]) == at.multiselect(key="cmp_models").value == available_predictors()
    assert table["iou"].notna().all()
    assert all(m == "just now" or re.fullmatch(r"\d+ s ago \(cached\)", m) for m in table["measured"])
    best = table.set_index("model").loc["unet-best", "iou"]
    at.slider(key="cmp_thr_unet-best").set_value(0.05)
    rerun(at)
    assert at.dataframe[0].value.set_index("model").loc["unet-best", "iou"] != best
    # One overlay per model plus the vote map; a heat map of pairwise IoU.
    assert len(at.image) == len(table) + 1
    assert len(at.get("vega_lite_chart")) == 1
    networks = [m for m in available_predictors() if m not in baseline_names()]
    assert f"Voters: {', '.join(networks)}" in all_text(at)
    disputed = float(metric(at, "Pixels in dispute").rstrip("%"))
    at.toggle(key="cmp_vote_baselines").set_value(True)
    rerun(at)
    assert f"Voters: {', '.join(available_predictors())}" in all_text(at)
    assert float(metric(at, "Pixels in dispute").rstrip("%")) > disputed


def test_compare_reports_a_bad_upload():
    at = use_upload(open_page("pages/compare.py"), "cmp")
    at.file_uploader(key="cmp_upload").upload("broken.png", b"\x89PNG\r\n\x1a\n truncated", "image/png")
    rerun(at)
    assert len(at.error) == 1 and "broken.png" in at.error[0].value
    assert not at.image


@pytest.fixture
def fake_results(tmp_path, monkeypatch):
    """A small made-up evaluation file (tests only), so the page's charts run on known data."""
    rng = np.random.default_rng(0)
    rows = []
    base = {"kind": "unet", "split": "test", "height": 10, "width": 20, "infer_ms": 3.0}
    for model in ("net-a", "net-b"):
        for image_id in ("0010001", "0020001", "0030001"):
            for threshold in (0.25, 0.5, 0.75):
                tp, fp, fn = (int(v) for v in rng.integers(1, 50, 3))
                photo = {"model": model, "image_id": image_id, "species": image_id[:3], "threshold": threshold}
                rows.append(base | photo | {"tp": tp, "fp": fp, "fn": fn, "tn": 200 - tp - fp - fn})
    flat = {"model": "flat", "kind": "baseline", "image_id": "0010001", "species": "001", "threshold": ""}
    rows.append(base | flat | {"tp": 50, "fp": 10, "fn": 10, "tn": 130, "infer_ms": 1.0})
    # Columns added to the format later (e.g. boundary counts) get zeros.
    eval_path = tmp_path / "eval_test.csv"
    pd.DataFrame(rows).reindex(columns=results.EVAL_COLUMNS, fill_value=0).to_csv(eval_path, index=False)
    bench = pd.DataFrame([dict.fromkeys(results.BENCH_COLUMNS, 1.0)]).assign(model="net-a", kind="unet", machine="test")
    bench_path = tmp_path / "bench.csv"
    bench.to_csv(bench_path, index=False)
    monkeypatch.setattr(results, "EVAL_TEST_FILE", eval_path)
    monkeypatch.setattr(results, "BENCH_FILE", bench_path)
    monkeypatch.setattr("seg_core.data.leeds.dataset_available", lambda *a: None)
    return eval_path


def test_validation_charts_follow_the_threshold(fake_results):
    at = open_page("pages/validation.py")
    # Threshold curves, two distributions, model against model, per species, latency.
    assert len(at.get("vega_lite_chart")) == 6
    summary = at.dataframe[0].value.set_index("model")
    assert set(summary.index) == {"net-a", "net-b", "flat"}
    at.select_slider(key="val_threshold").set_value(0.75)
    rerun(at)
    moved = at.dataframe[0].value.set_index("model")
    assert moved.loc["net-a", "iou"] != summary.loc["net-a", "iou"]
    assert moved.loc["flat", "iou"] == summary.loc["flat", "iou"]
    at.radio(key="val_mode").set_value(results.WHOLE_SET)
    rerun(at)
    assert at.dataframe[0].value.set_index("model").loc["flat", "iou"] == pytest.approx(50 / 70)


def test_validation_without_models_still_shows_latency(fake_results):
    at = open_page("pages/validation.py")
    at.multiselect(key="val_models").set_value([])
    rerun(at)
    assert "Choose at least one model" in all_text(at)
    assert [s.value for s in at.subheader] == ["Latency"]
    assert len(at.get("vega_lite_chart")) == 1 and list(at.dataframe[0].value["model"]) == ["net-a"]


# --- Your own collections on the Validation page ----------------------------------------------------


@pytest.fixture
def own_collections(tmp_path, monkeypatch):
    """Collections "garden" (3 photos, 2 files left out) and "woods" (with species), evaluated by two baselines."""
    root = tmp_path / "collections"
    for name, species in (("garden", None), ("woods", ["Monarch", "Monarch", "Painted Lady"])):
        folder = garden(root / name, species=species)
        evaluate_collection(read_folder(folder), folder, ["otsu", "grabcut"], progress=False)
    monkeypatch.setenv(COLLECTIONS_ENV, str(root))
    return root


def subheaders(at: AppTest) -> list[str]:
    return [s.value for s in at.subheader]


def test_validation_picker_shows_a_collection_and_keeps_each_ones_settings(fake_results, own_collections):
    at = open_page("pages/validation.py")
    picker = at.selectbox(key="val_collection")
    assert picker.options == ["Leeds test split", "garden", "woods", "Upload a new collection..."]
    assert set(at.dataframe[0].value["model"]) == {"net-a", "net-b", "flat"}
    at.multiselect(key="val_models").set_value(["net-a", "net-b"])
    picker.set_value("garden")
    rerun(at)
    table = at.dataframe[0].value.set_index("model")
    assert set(table.index) == {"otsu", "grabcut"} and table.loc["otsu", "iou"] == 1.0
    assert (table["photos"] == 3).all()
    text = all_text(at)
    assert "3 photos of the collection garden" in text and "Masks read as: 0/255 (3 photos)." in text
    assert at.expander[0].label == "2 file(s) left out"
    assert all(file in text and reason in text for file, reason in GARDEN_LEFT_OUT.items())
    assert "Per species" not in subheaders(at) and "Model against model" in subheaders(at)
    assert sorted(captions(at)) == [f"photo{n}: IoU 1.0000, Dice 1.0000" for n in range(3)]
    at.selectbox(key="val_collection").set_value("woods")
    rerun(at)
    assert "Per species" in subheaders(at) and at.selectbox(key="val_collection").value == "woods"
    at.selectbox(key="val_collection").set_value(":leeds-test")
    rerun(at)
    assert at.multiselect(key="val_models").value == ["net-a", "net-b"]
    assert set(at.dataframe[0].value["model"]) == {"net-a", "net-b"} and "Per species" in subheaders(at)


def upload_page(monkeypatch) -> AppTest:
    """The Validation page with "Upload a new collection" chosen.

    AppTest starts every run in Streamlit's legacy pages mode, in which the page
    reruns itself through the app's navigation (ui_common.require_app_navigation);
    that rerun would swallow a button's click, so it is skipped here.
    """
    monkeypatch.setattr(ui_common, "require_app_navigation", lambda: None)
    at = open_page("pages/validation.py")
    at.selectbox(key="val_collection").set_value(":upload")
    return rerun(at)


def finish_job(at: AppTest) -> AppTest:
    """Rerun the page (as the progress fragment's timer would) until the background job has finished."""
    for _ in range(200):
        if "val_job" not in at.session_state:
            return at
        time.sleep(0.1)
        rerun(at)
    raise AssertionError("the evaluation did not finish")


def test_an_uploaded_zip_is_evaluated_in_the_background_then_shown(
    fake_results, own_collections, monkeypatch, tmp_path
):
    at = upload_page(monkeypatch)
    assert subheaders(at)[0] == "Evaluate your own photos"
    data = folder_zip(garden(tmp_path / "upload"), "meadow/")
    at.file_uploader(key="val_upload_zip").upload("meadow.zip", data, "application/zip")
    at.multiselect(key="val_upload_models").set_value(["otsu"])
    rerun(at)
    at.button(key="val_upload_start").click()
    finish_job(rerun(at))
    assert at.selectbox(key="val_collection").value == "meadow"
    assert at.dataframe[0].value.set_index("model").loc["otsu", ["photos", "iou"]].tolist() == [3, 1.0]
    assert at.expander[0].label == "2 file(s) left out"
    assert (own_collections / "meadow" / "eval_meadow.csv").is_file()


def test_bad_uploads_get_a_clear_error(fake_results, own_collections, monkeypatch):
    at = upload_page(monkeypatch)
    at.file_uploader(key="val_upload_zip").upload("notes.zip", b"these are notes", "application/zip")
    rerun(at)
    at.button(key="val_upload_start").click()
    rerun(at)
    assert "not a ZIP archive" in at.error[0].value
    lonely = zip_of({"images/a.png": png((8, 8), 30), "masks/readme.txt": b"no masks yet"})
    at.file_uploader(key="val_upload_zip").set_value([("garden.zip", lonely, "application/zip")])
    rerun(at)
    at.button(key="val_upload_start").click()
    rerun(at)
    assert "exists already" in at.error[0].value, "the name comes from the file and garden is taken"
    at.text_input(key="val_upload_name").input("lonely")
    rerun(at)
    at.button(key="val_upload_start").click()
    finish_job(rerun(at))
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and "no usable photo-and-mask pair" in errors[0] and "images/a.png" in errors[0]
    assert at.selectbox(key="val_collection").value == ":upload" and not (own_collections / "lonely").exists()


def test_missing_results_show_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "EVAL_TEST_FILE", tmp_path / "eval_test.csv")
    monkeypatch.setattr(results, "BENCH_FILE", tmp_path / "bench.csv")
    for page in (None, "pages/validation.py"):
        at = open_page(page)
        text = all_text(at)
        assert "Results file missing" in text and "eval_test.csv" in text and "bench.csv" in text


def test_pages_keep_their_settings_across_a_page_switch():
    at = open_page("pages/segment.py")
    at.selectbox(key="seg_model").set_value("unet-light")
    at.slider(key="seg_threshold").set_value(0.7)
    rerun(at)
    at.switch_page("pages/home.py")
    rerun(at)
    at.switch_page("pages/segment.py")
    rerun(at)
    assert at.selectbox(key="seg_model").value == "unet-light"
    assert at.slider(key="seg_threshold").value == pytest.approx(0.7)
    assert Path(at.subheader[0].value).stem == SAMPLE.id


def test_home_names_the_runtime_and_validation_times_every_runtime(tmp_path, monkeypatch):
    rows = [("keras", "fp32", False, 80.0), ("openvino", "bf16", True, 30.0), ("openvino", "fp32", False, 40.0)]
    bench = pd.DataFrame(rows, columns=["runtime", "precision", "default", "latency_median_ms"])
    bench = bench.assign(model="unet-best", kind="unet", machine="test", reference=False)
    bench_path = tmp_path / "bench.csv"
    bench.reindex(columns=results.BENCH_COLUMNS, fill_value=1.0).to_csv(bench_path, index=False)
    monkeypatch.setattr(results, "BENCH_FILE", bench_path)
    at = open_page()
    table = at.dataframe[0].value.set_index("model")
    assert list(table.index) == available_predictors()
    assert table.loc["unet-best", ["runtime", "precision", "latency_median_ms"]].tolist() == ["openvino", "bf16", 30.0]
    at.switch_page("pages/validation.py")
    rerun(at)
    latency = at.dataframe[-1].value
    assert sorted(zip(latency["runtime"], latency["precision"], strict=True)) == sorted((r, p) for r, p, *_ in rows)
    charted = pa.ipc.open_stream(at.get("vega_lite_chart")[-1].proto.datasets[0].data.data).read_pandas()
    assert sorted(charted["model"].unique()) == [
        "unet-best · keras fp32",
        "unet-best · openvino bf16 (in use)",
        "unet-best · openvino fp32",
    ]


# --- Output options of the Segment page -------------------------------------------------------------


def drawn_analysis() -> tuple[np.ndarray, np.ndarray]:
    """A made-up photo and probability map: two butterfly-sized blobs and a short bar (a scale bar)."""
    height, width = 120, 200
    rows, cols = np.mgrid[:height, :width]
    blobs = (((rows - 50) / 30) ** 2 + ((cols - 50) / 40) ** 2 <= 1) | (
        ((rows - 50) / 28) ** 2 + ((cols - 145) / 38) ** 2 <= 1
    )
    bar = (rows >= 104) & (rows < 108) & (cols >= 20) & (cols < 45)
    shape = blobs | bar
    image = np.where(shape[..., None], np.uint8([200, 120, 40]), np.uint8([235, 235, 230])).astype(np.uint8)
    prob = shape.astype(np.float32) * 0.9 + 0.05
    return image, prob


@pytest.fixture
def drawn(monkeypatch):
    """Every photo's analysis is :func:`drawn_analysis` (no network); the caches are cleared around the test."""
    image, prob = drawn_analysis()
    image.flags.writeable = prob.flags.writeable = False

    def fake(source, predictor, options):
        return compact(image, prob, 1.0, time.time(), options)

    monkeypatch.setattr(ui_common, "analyse_compact", fake)
    # The downloads decode the photo again at full size: the drawn one, too.
    monkeypatch.setattr(ui_common, "photo_image", lambda photo: image)
    process_cache().clear()
    yield image
    process_cache().clear()


@pytest.fixture
def downloads(monkeypatch):
    """Label -> (data, keyword arguments) of every download button drawn, so a test can open the files."""
    seen = {}
    original = st.download_button

    def spy(label, data=None, *args, **kwargs):
        seen[label] = (data, kwargs)
        return original(label, data, *args, **kwargs)

    monkeypatch.setattr(st, "download_button", spy)
    return seen


def fetch(downloads: dict, label: str) -> bytes:
    data = downloads[label][0]
    return data() if callable(data) else data


def decoded(downloads: dict, label: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(fetch(downloads, label))))


def segment_without_truth(measurements: bool = False) -> AppTest:
    """The Segment page on the first sample without its ground truth, the measurements opened if asked."""
    at = open_page("pages/segment.py")
    assert not at.dataframe, "measurements are made only when asked for"
    at.checkbox(key="seg_sample_truth").uncheck()
    at.session_state["seg_measure_0"] = measurements
    return rerun(at)


def test_tidy_keeps_both_butterflies_drops_the_bar_and_says_so(drawn, downloads):
    at = segment_without_truth(measurements=True)
    assert at.radio(key="seg_cleanup").value == "tidy"
    mask = decoded(downloads, "Mask PNG") > 0
    assert len(annotations.regions(mask)) == 2 and not mask[104:108, 20:45].any()
    assert len(at.dataframe[0].value) == 2
    bar_share = 4 * 25 / mask.size
    assert f"The clean-up removed {bar_share:.2%} of the photo's pixels" in all_text(at)
    for cleanup, regions in (("largest", 1), ("none", 3)):
        at.radio(key="seg_cleanup").set_value(cleanup)
        rerun(at)
        mask = decoded(downloads, "Mask PNG") > 0
        assert len(annotations.regions(mask)) == len(at.dataframe[0].value) == regions


def test_measurements_have_a_row_per_butterfly_and_millimetres_with_a_scale(drawn, downloads):
    at = segment_without_truth(measurements=True)
    table = at.dataframe[0].value
    assert "area_mm2" not in table.columns and table["area_px"].min() > 2000
    at.number_input(key="seg_ppmm").set_value(4.0)
    rerun(at)
    table = at.dataframe[0].value
    mask = decoded(downloads, "Mask PNG") > 0
    assert len(table) == len(annotations.regions(mask))
    assert table["area_mm2"].tolist() == pytest.approx((table["area_px"] / 16).tolist(), abs=1e-3)
    assert table["wingspan_mm"].tolist() == pytest.approx((table["wingspan_px"] / 4).tolist(), abs=1e-3)


def test_soft_edges_on_a_colour_give_intermediate_alpha_and_that_colour(downloads, monkeypatch):
    calls = []
    monkeypatch.setattr(ui_common, "soft_matte", lambda *a: calls.append(1) or soft_matte(*a))
    process_cache().clear()
    at = segment_without_truth()
    assert calls == [] and decoded(downloads, "Cut-out PNG").shape[2] == 4
    at.toggle(key="seg_soft").set_value(True)
    rerun(at)
    assert calls == [1]
    mask = decoded(downloads, "Mask PNG") > 0
    alpha = decoded(downloads, "Cut-out PNG")[..., 3]
    assert ((alpha > 0) & (alpha < 255)).sum() > 100
    # The matting band reaches at most a few band widths (about 2 px each on this photo) from the mask's edge.
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5) > 12
    assert alpha[0, 0] == 0 and inside.sum() > 1000 and (alpha[inside] == 255).all()
    at.radio(key="seg_background").set_value("colour")
    rerun(at)
    at.color_picker(key="seg_bg_colour").set_value("#00FF00")
    rerun(at)
    assert calls == [1], "a new background must not solve the matte again"
    picture = decoded(downloads, "Cut-out PNG")
    assert picture.shape == (*mask.shape, 3) and picture[0, 0].tolist() == [0, 255, 0]
    assert at.color_picker(key="seg_bg_colour").value == "#00FF00"


def test_crop_square_and_webp(drawn, downloads):
    at = segment_without_truth()
    at.toggle(key="seg_crop").set_value(True)
    at.radio(key="seg_format").set_value("webp")
    rerun(at)
    mask = decoded(downloads, "Mask PNG") > 0
    box = crop_box(mask)
    data, kwargs = downloads["Cut-out WEBP"]
    assert kwargs["file_name"].endswith("_cutout.webp") and kwargs["mime"] == "image/webp"
    assert Image.open(io.BytesIO(data())).size == (box.width, box.height)
    at.checkbox(key="seg_square").check()
    rerun(at)
    width, height = Image.open(io.BytesIO(fetch(downloads, "Cut-out WEBP"))).size
    assert width == height == max(box.width, box.height)


def test_refine_runs_only_when_on_and_once_per_threshold(drawn, downloads, monkeypatch):
    calls = []
    original = analysis_module.refine_edges
    monkeypatch.setattr(analysis_module, "refine_edges", lambda *a: calls.append(1) or original(*a))
    process_cache().clear()
    at = segment_without_truth(measurements=True)
    assert calls == []
    at.toggle(key="seg_refine").set_value(True)
    rerun(at)
    at.radio(key="seg_cleanup").set_value("none")
    rerun(at)
    assert calls == [1]
    assert len(at.dataframe[0].value) == len(annotations.regions(decoded(downloads, "Mask PNG") > 0))


def test_a_bad_background_image_is_reported_and_the_cut_out_stays_transparent(drawn, downloads):
    at = segment_without_truth()
    at.radio(key="seg_background").set_value("image")
    rerun(at)
    assert "until then the cut-out stays transparent" in all_text(at)
    at.file_uploader(key="seg_bg_image").upload("wall.png", b"not an image", "image/png")
    rerun(at)
    assert "wall.png" in at.error[0].value and "cannot be used as a background" in at.error[0].value
    assert decoded(downloads, "Cut-out PNG").shape[2] == 4
    at.file_uploader(key="seg_bg_image").set_value([("wall.png", png((8, 8), 90), "image/png")])
    rerun(at)
    assert not at.error and decoded(downloads, "Cut-out PNG")[0, 0].tolist() == [90, 90, 90]


def test_coco_download_describes_every_photo_and_loads_in_pycocotools(drawn, downloads, tmp_path):
    from pycocotools.coco import COCO

    at = use_upload(open_page("pages/segment.py"))
    photo = SAMPLE.image_path.read_bytes()
    at.file_uploader(key="seg_upload").set_value([("a.jpg", photo, "image/jpeg"), ("b.jpg", photo, "image/jpeg")])
    rerun(at)
    path = tmp_path / "annotations.json"
    path.write_bytes(fetch(downloads, "COCO annotations (JSON)").encode())
    coco = COCO(str(path))
    assert [image["file_name"] for image in coco.loadImgs(coco.getImgIds())] == ["a.jpg", "b.jpg"]
    mask = decoded(downloads, "Mask PNG") > 0
    for image_id in coco.getImgIds():
        found = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(found) == 2 and all(0 < a["score"] <= 1 for a in found)
        assert (np.any([coco.annToMask(a) for a in found], axis=0) == mask).all()
        assert [a["area"] for a in found] == [r.area for r in annotations.regions(mask)]
    with zipfile.ZipFile(io.BytesIO(fetch(downloads, "Download all masks and cut-outs (ZIP)"))) as archive:
        assert sorted(archive.namelist()) == ["a_cutout.png", "a_mask.png", "b_cutout.png", "b_mask.png"]
    at.checkbox(key="seg_polygons").check()
    rerun(at)
    polygons = json.loads(fetch(downloads, "COCO annotations (JSON)"))["annotations"]
    assert all(isinstance(a["segmentation"], list) for a in polygons)
    drawn_back = np.any([annotations.decode_segmentation(a["segmentation"], *mask.shape) for a in polygons[:2]], 0)
    assert (drawn_back & mask).sum() / (drawn_back | mask).sum() >= 0.99


def test_before_after_opens_on_demand_and_follows_the_slider(drawn):
    at = segment_without_truth()
    assert "Before / after" not in captions(at) and not at.slider(key="seg_threshold").disabled
    at.session_state["seg_before_after_0"] = True
    rerun(at)
    assert captions(at)[-1] == "Before / after" and at.slider(key="seg_split_0").value == 50
    at.slider(key="seg_split_0").set_value(100)
    rerun(at)
    assert at.slider(key="seg_split_0").value == 100 and captions(at)[-1] == "Before / after"


def test_full_size_mask_download_equals_the_library_mask(downloads):
    """A photo larger than the screen: shown shrunk, yet the mask download is the library's own full-size mask."""
    photo = Image.open(SAMPLE.image_path).convert("RGB")
    big = photo.resize((2600, round(2600 * photo.height / photo.width)))
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    data = buffer.getvalue()
    at = use_upload(open_page("pages/segment.py"))
    at.radio(key="seg_cleanup").set_value("none")
    at.slider(key="seg_threshold").set_value(0.37)
    at.file_uploader(key="seg_upload").set_value([("big.png", data, "image/png")])
    rerun(at)
    assert "Shown at 1460x" in all_text(at) and metric(at, "Size") == f"{big.width}x{big.height}"
    assert "on a screen-size copy of this photo" in all_text(at)
    _, expected = segment(data, ui_common.get_predictor(DEFAULT_MODEL), 0.37)
    downloaded = decoded(downloads, "Mask PNG") > 0
    assert downloaded.shape == expected.shape == (big.height, big.width)
    assert expected.any() and np.array_equal(downloaded, expected)


def test_a_queued_session_is_told_how_many_are_ahead(monkeypatch):
    """While the admission gate is full, the page shows "n ahead" each time the queue moves."""
    shown = []
    original = ui_common.waiting_text

    class Queued:
        """A gate that keeps every caller waiting behind two others, then one, then admits it."""

        @contextlib.contextmanager
        def slot(self, cost=1, timeout=None, on_wait=None, poll_s=0.25):
            for ahead in (2, 1, 0):
                on_wait(ahead)
            yield

    monkeypatch.setattr(ui_common, "waiting_text", lambda ahead: shown.append(ahead) or original(ahead))
    monkeypatch.setattr(ui_common, "process_admission", Queued)
    process_cache().clear()
    at = open_page("pages/segment.py")
    # Twice: the analysis, then the full-size scoring against the sample's ground truth.
    assert shown == [2, 1, 0] * 2 and metric(at, "Model time").endswith(" ms")
    assert original(2) == "Waiting for the server: 2 ahead of you..."
    assert not [e for e in at.get("info") if "Waiting" in str(e.value)], "the status goes once the photo is done"


def test_robustness_page_charts_every_condition_for_the_chosen_models(tmp_path, monkeypatch):
    monkeypatch.setattr(generalisation, "GENERALISATION_FILE", tmp_path / "generalisation.csv")
    at = open_page("pages/robustness.py")
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == 1
    table = at.dataframe[0].value
    networks = [DEFAULT_MODEL, "u2netp", "u2netp-butterfly", "unet-bce", "unet-best", "unet-colour", "unet-light"]
    assert len(table) == len(robustness.CONDITIONS) and list(table.columns) == networks
    assert sorted(captions(at)) == sorted(c.label for c in robustness.CONDITIONS.values())
    at.multiselect(key="rob_models").set_value(["grabcut"])
    rerun(at)
    assert list(at.dataframe[0].value.columns) == ["grabcut"]
    at.multiselect(key="rob_models").set_value([])
    rerun(at)
    assert "Choose at least one model" in all_text(at) and not at.get("vega_lite_chart")
    assert "No leave-species-out results yet" in all_text(at)


def test_robustness_page_shows_species_never_seen(tmp_path, monkeypatch):
    rows = [
        {"recipe": recipe, "fold": 0, "held_out": "001+002", "image_id": f"{s}0001", "species": s}
        | {"height": 1, "width": 2, "tp": tp, "fp": 0, "fn": 2 - tp, "tn": 0, "infer_ms": 1.0}
        for recipe, tps in (("basic", (1, 2)), ("zero-shot:u2netp", (2, 2)))
        for s, tp in zip(("001", "002"), tps, strict=True)
    ]
    path = generalisation.write_rows(rows, tmp_path / "generalisation.csv")
    monkeypatch.setattr(generalisation, "GENERALISATION_FILE", path)
    at = open_page("pages/robustness.py")
    assert not at.exception
    summary = at.dataframe[-1].value
    assert list(summary.index) == ["zero-shot:u2netp", "basic"]
    assert summary.loc["basic", "worst species"] == "Monarch" and summary.loc["basic", "worst species IoU"] == 0.5
    assert len(at.get("vega_lite_chart")) == 2


def test_robustness_page_without_results_says_how_to_make_them(tmp_path, monkeypatch):
    monkeypatch.setattr(robustness, "ROBUSTNESS_FILE", tmp_path / "robustness_test.csv")
    at = open_page("pages/robustness.py")
    assert not at.exception and "python -m seg_core.robustness" in all_text(at)
