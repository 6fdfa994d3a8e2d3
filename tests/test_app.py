"""Every dashboard page through Streamlit's AppTest (no browser).

Streamlit caches are process-wide, so models loaded by one test are reused by
the next; the whole module loads each committed model once.
"""

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import ui_common
from seg_core import results
from seg_core.catalogue import sample_photos
from seg_core.data import REPO_ROOT
from seg_core.inference import InferenceOptions, ModelLoadError, available_predictors, baseline_names

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
    files += sorted((REPO_ROOT / "pages").glob("*.py")) + sorted((REPO_ROOT / "seg_core").glob("*.py"))
    internal = re.compile(r"^\s*(from|import)\s+streamlit\.(runtime|web|proto|elements)\b", re.MULTILINE)
    assert [f.name for f in files if internal.search(f.read_text())] == []


def test_every_page_is_in_the_app_navigation():
    assert [spec.path for spec in ui_common.PAGES][0] == "pages/home.py"
    for spec in ui_common.PAGES:
        assert (REPO_ROOT / spec.path).is_file()


def test_home_links_every_page_and_lists_every_model():
    at = open_page()
    assert at.title[0].value == "Wingmask"
    assert [link.value for link in at.page_link] == ["**Segment**", "**Compare models**", "**Validation metrics**"]
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
    assert [b.label for b in at.get("download_button")] == ["Mask PNG", "Cut-out PNG"]
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
    original = ui_common.analyse

    def counting(source, predictor, options):
        calls.append((predictor.name, options))
        return original(source, predictor, options)

    monkeypatch.setattr(ui_common, "analyse", counting)
    ui_common.cached_analysis.clear()
    at = open_page("pages/segment.py")
    assert calls == [("unet-best", InferenceOptions())]
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
    original = ui_common.analyse

    def spying(source, predictor, options):
        seen.append(options)
        return original(source, predictor, options)

    monkeypatch.setattr(ui_common, "analyse", spying)
    ui_common.cached_analysis.clear()
    at = open_page("pages/segment.py")
    assert at.toggle(key="seg_second_look").value and not at.toggle(key="seg_tta").value
    at.toggle(key="seg_second_look").set_value(False)
    at.toggle(key="seg_tta").set_value(True)
    rerun(at)
    assert seen[-1] == InferenceOptions(second_look=False, tta=True)
    assert "(preprocessing, network, TTA, resizing to full size)" in all_text(at)


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
    monkeypatch.setattr("seg_core.data.dataset_available", lambda *a: None)
    return eval_path


def test_validation_charts_follow_the_threshold(fake_results):
    at = open_page("pages/validation.py")
    assert len(at.get("vega_lite_chart")) == 5
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
