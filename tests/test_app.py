"""Every dashboard page through Streamlit's AppTest (no browser).

Streamlit caches are process-wide, so models loaded by one test are reused by
the next; the whole module loads each committed model once.
"""

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import ui_common
from seg_core import app_support, results
from seg_core.data import REPO_ROOT
from seg_core.inference import ModelLoadError

APP = str(REPO_ROOT / "streamlit_app.py")
SAMPLE = app_support.sample_photos()[0]
TIMEOUT = 120


def open_page(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page:
        at.switch_page(page)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def png(size: tuple[int, int], value: int = 255) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size, value).save(buffer, format="PNG")
    return buffer.getvalue()


def use_sample(at: AppTest) -> AppTest:
    at.radio(key="seg_source").set_value(ui_common.SAMPLE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def all_text(at: AppTest) -> str:
    parts = [e.value for kind in ("error", "warning", "info", "markdown") for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", [None, "pages/segment.py", "pages/compare.py", "pages/validation.py"])
def test_page_renders(page):
    at = open_page(page)
    assert at.title


def test_home_lists_every_model():
    at = open_page()
    table = at.dataframe[0].value
    assert {"unet-best", "unet-bce", "unet-light"} <= set(table["model"])
    assert table["parameters"].notna().all()


def test_segment_sample_gives_mask_and_downloads():
    at = use_sample(open_page("pages/segment.py"))
    captions = [c for image in at.image for c in image.captions]
    assert captions == ["Original", "Mask", "Overlay", "Cut-out"]
    labels = [b.label for b in at.get("download_button")]
    assert labels == ["Mask PNG", "Cut-out PNG"]
    assert metric(at, "Size") == f"{Image.open(SAMPLE.image_path).width}x{Image.open(SAMPLE.image_path).height}"
    assert float(metric(at, "IoU")) > 0.8


def test_threshold_moves_the_mask_without_running_the_model(monkeypatch):
    calls = []
    original = app_support.analyse

    def counting(source, predictor):
        calls.append(predictor.name)
        return original(source, predictor)

    monkeypatch.setattr(app_support, "analyse", counting)
    ui_common.cached_analysis.clear()
    at = use_sample(open_page("pages/segment.py"))
    assert len(calls) == 1
    before = metric(at, "Foreground")
    at.slider(key="seg_threshold").set_value(0.95).run()
    after = metric(at, "Foreground")
    at.checkbox(key="seg_holes").check().run()
    assert not at.exception
    assert len(calls) == 1
    assert float(after.rstrip("%")) < float(before.rstrip("%"))


def test_bad_upload_gets_its_own_error_and_good_ones_still_work():
    at = open_page("pages/segment.py")
    uploader = at.file_uploader(key="seg_upload")
    uploader.upload("notes.jpg", b"this is not a photo", "image/jpeg")
    uploader.upload("readme.txt", b"plain text", "text/plain")
    uploader.upload("empty.png", b"", "image/png")
    uploader.upload(SAMPLE.image_path.name, SAMPLE.image_path.read_bytes(), "image/jpeg")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert len(errors) == 3
    assert "notes.jpg" in errors[0] and "not a readable image" in errors[0]
    assert "readme.txt" in errors[1] and "empty.png" in errors[2]
    assert [c for image in at.image for c in image.captions] == ["Original", "Mask", "Overlay", "Cut-out"]
    assert "1 of 4 photos segmented" in all_text(at)
    assert [b.label for b in at.get("download_button")][0] == "Download all masks and cut-outs (ZIP)"


def test_batch_and_ground_truth_upload():
    at = open_page("pages/segment.py")
    photo = SAMPLE.image_path.read_bytes()
    at.file_uploader(key="seg_upload").set_value([("a.jpg", photo, "image/jpeg"), ("b.jpg", photo, "image/jpeg")])
    width, height = Image.open(SAMPLE.image_path).size
    at.file_uploader(key="seg_truth").set_value(
        [("a_seg0.png", SAMPLE.mask_path.read_bytes(), "image/png"), ("b.png", png((7, 5)), "image/png")]
    )
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.image) == 8
    assert float(metric(at, "IoU")) > 0.8
    warnings = [w.value for w in at.warning]
    assert len(warnings) == 1 and "7x5" in warnings[0] and f"{width}x{height}" in warnings[0]
    assert "2 of 2 photos segmented" in all_text(at)
    assert [b.label for b in at.get("download_button")] == [
        "Download all masks and cut-outs (ZIP)",
        *["Mask PNG", "Cut-out PNG"] * 2,
    ]


def test_too_large_image_states_the_limit():
    buffer = io.BytesIO()
    Image.new("L", (13_000, 8), 0).save(buffer, format="PNG")
    at = open_page("pages/segment.py")
    at.file_uploader(key="seg_upload").upload("wide.png", buffer.getvalue(), "image/png")
    at.run()
    assert not at.exception
    assert "too large" in at.error[0].value and "12000 pixels a side" in at.error[0].value


def test_model_load_error_is_shown(monkeypatch):
    def broken(name):
        raise ModelLoadError(f"model {name!r}: model.weights.h5 is missing")

    monkeypatch.setattr(ui_common, "get_predictor", broken)
    at = open_page("pages/segment.py")
    assert "could not be loaded" in at.error[0].value and "model.weights.h5" in at.error[0].value


def test_compare_scores_every_model_on_a_sample():
    at = open_page("pages/compare.py")
    table = at.dataframe[0].value
    assert list(table["model"]) == at.multiselect(key="cmp_models").value
    assert table["iou"].notna().all()
    best = table.set_index("model").loc["unet-best", "iou"]
    at.slider(key="cmp_thr_unet-best").set_value(0.05).run()
    assert not at.exception
    assert at.dataframe[0].value.set_index("model").loc["unet-best", "iou"] != best
    # One overlay per model plus the vote map.
    assert len(at.image) == len(table) + 1


@pytest.fixture
def fake_results(tmp_path, monkeypatch):
    """A small made-up evaluation file (tests only), so the page's charts run on known data."""
    rng = np.random.default_rng(0)
    rows = []
    for model in ("net-a", "net-b"):
        for image_id in ("0010001", "0020001", "0030001"):
            for threshold in (0.25, 0.5, 0.75):
                tp, fp, fn = (int(v) for v in rng.integers(1, 50, 3))
                rows.append(
                    [
                        model,
                        "unet",
                        image_id,
                        image_id[:3],
                        "test",
                        10,
                        20,
                        threshold,
                        tp,
                        fp,
                        fn,
                        200 - tp - fp - fn,
                        3.0,
                    ]
                )
    rows.append(["flat", "baseline", "0010001", "001", "test", 10, 20, "", 50, 10, 10, 130, 1.0])
    eval_path = tmp_path / "eval_test.csv"
    pd.DataFrame(rows, columns=results.EVAL_COLUMNS).to_csv(eval_path, index=False)
    bench = pd.DataFrame([dict.fromkeys(results.BENCH_COLUMNS, 1.0)]).assign(model="net-a", kind="unet", machine="test")
    bench_path = tmp_path / "bench.csv"
    bench.to_csv(bench_path, index=False)
    monkeypatch.setattr(results, "EVAL_TEST_FILE", eval_path)
    monkeypatch.setattr(results, "BENCH_FILE", bench_path)
    monkeypatch.setattr("seg_core.data.dataset_available", lambda *a: None)
    return eval_path


def test_validation_charts_follow_the_threshold(fake_results):
    at = open_page("pages/validation.py")
    charts = at.get("vega_lite_chart")
    assert len(charts) == 5
    summary = at.dataframe[0].value.set_index("model")
    assert set(summary.index) == {"net-a", "net-b", "flat"}
    at.select_slider(key="val_threshold").set_value(0.75).run()
    moved = at.dataframe[0].value.set_index("model")
    assert moved.loc["net-a", "iou"] != summary.loc["net-a", "iou"]
    assert moved.loc["flat", "iou"] == summary.loc["flat", "iou"]
    at.radio(key="val_mode").set_value(results.WHOLE_SET).run()
    assert not at.exception
    assert at.dataframe[0].value.set_index("model").loc["flat", "iou"] == pytest.approx(50 / 70)


def test_missing_results_show_a_message(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "EVAL_TEST_FILE", tmp_path / "eval_test.csv")
    monkeypatch.setattr(results, "BENCH_FILE", tmp_path / "bench.csv")
    for page in (None, "pages/validation.py"):
        at = open_page(page)
        text = all_text(at)
        assert "Results file missing" in text and "eval_test.csv" in text and "bench.csv" in text


def test_compare_reports_a_bad_upload():
    at = open_page("pages/compare.py")
    at.radio(key="cmp_source").set_value(ui_common.UPLOAD).run()
    at.file_uploader(key="cmp_upload").upload("broken.png", b"\x89PNG\r\n\x1a\n truncated", "image/png").run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "broken.png" in at.error[0].value
    assert not at.image


def test_match_truth_pairs_masks_by_file_name():
    photos = ["a.jpg", "b.jpeg", "c.png", "dir/d.jpg"]
    masks = ["a_seg0.png", "b_mask.png", "x.png", "d.png"]
    assert app_support.match_truth(photos, masks) == {
        "a.jpg": "a_seg0.png",
        "b.jpeg": "b_mask.png",
        "dir/d.jpg": "d.png",
    }


def test_output_names_are_unique_in_a_batch():
    names = app_support.output_names(["a.jpg", "a.png", "a-2.jpg", "noext"])
    assert [mask for mask, _ in names] == ["a_mask.png", "a-2_mask.png", "a-2-2_mask.png", "noext_mask.png"]
    assert names[0][1] == "a_cutout.png"


def test_zip_files_round_trip():
    import zipfile

    data = app_support.zip_files([("a_mask.png", b"1"), ("a_cutout.png", b"22")])
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["a_mask.png", "a_cutout.png"] and archive.read("a_cutout.png") == b"22"


def test_catalogue_reads_cards_without_loading_weights():
    table = app_support.model_catalogue().set_index("model")
    assert table.loc["unet-best", "kind"] == "unet" and table.loc["unet-best", "parameters"] > 0
    assert table.loc["unet-best", "recipe"] and table.loc["unet-best", "file_mb"] > 0
    assert (table["kind"] == "baseline").any()


def test_analysis_is_read_only():
    class Half:
        name = "half"

        def predict_proba(self, image):
            return np.full(image.shape[:2], 0.5, np.float32)

    result = app_support.analyse(SAMPLE.image_path.read_bytes(), Half())
    assert result.prob.shape == result.image.shape[:2] and result.infer_ms >= 0
    with pytest.raises(ValueError):
        result.prob[0, 0] = 1.0
