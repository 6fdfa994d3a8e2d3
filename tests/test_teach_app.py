"""The Segment page's mask correction and the Teach page, through Streamlit's AppTest (no browser)."""

import threading

import numpy as np
import pytest
from PIL import Image
from test_app import all_text, open_page, rerun

from seg_core.data.collections import COLLECTIONS_ENV, read_folder
from seg_core.data.teaching import MIN_PAIRS
from seg_core.runtime.catalogue import sample_photos
from seg_core.service import jobs, teach

SAMPLE = sample_photos()[0]


@pytest.fixture
def collections_root(tmp_path, monkeypatch):
    """An empty collections folder for the app."""
    monkeypatch.setenv(COLLECTIONS_ENV, str(tmp_path))
    return tmp_path


def open_correction() -> tuple:
    """The Segment page on the first sample with its correction section open; the photo's (height, width)."""
    at = open_page("pages/segment.py")
    at.session_state["seg_fix_0"] = True
    rerun(at)
    return at, Image.open(SAMPLE.image_path).size[::-1]


def drag(at, start: tuple[int, int], end: tuple[int, int], shown: tuple[int, int], when: int) -> None:
    """What the click component reports for a press at ``start`` released at ``end`` on a picture ``shown`` wide."""
    event = {"x1": start[0], "y1": start[1], "x2": end[0], "y2": end[1], "unix_time": when}
    at.session_state["seg_fix_click_0"] = event | {"width": shown[0], "height": shown[1]}
    rerun(at)


def test_a_brush_stroke_corrects_the_mask_undo_takes_it_back_and_save_keeps_it(collections_root):
    at, (height, width) = open_correction()
    assert at.button(key="seg_fix_undo_0").disabled and at.button(key="seg_fix_save_0").disabled
    at.radio(key="seg_fix_tool_0").set_value("brush")
    rerun(at)
    at.slider(key="seg_fix_radius_0").set_value(2)
    rerun(at)
    # The picture is shown at half size: a stroke along its top edge paints the photo's top rows.
    drag(at, (0, 0), (width // 4, 0), (width // 2, height // 2), when=1)
    assert "1 edit(s) so far" in all_text(at)
    rerun(at)
    assert "1 edit(s) so far" in all_text(at), "a click is applied once, not on every rerun"
    at.button(key="seg_fix_undo_0").click()
    rerun(at)
    assert "0 edit(s) so far" in all_text(at)
    drag(at, (0, 0), (width // 4, 0), (width // 2, height // 2), when=2)
    at.text_input(key="seg_fix_collection").input("../outside")
    rerun(at)
    at.button(key="seg_fix_save_0").click()
    rerun(at)
    assert "not a usable collection name" in all_text(at) and not list(collections_root.iterdir())
    at.text_input(key="seg_fix_collection").input("my-moths")
    rerun(at)
    at.button(key="seg_fix_save_0").click()
    rerun(at)
    assert "Saved to the collection **my-moths** (1 of at most" in at.success[0].value
    (pair,) = read_folder(collections_root / "my-moths").pairs
    mask = pair.load().mask
    assert mask.shape == (height, width) and mask[0, : width // 2 - 2].all()


def test_a_grow_click_takes_the_clicked_region(collections_root):
    at, (height, width) = open_correction()
    at.radio(key="seg_fix_mode_0").set_value("Remove")
    rerun(at)
    # A click in the middle of the butterfly removes the region the network rates no surer than there.
    drag(at, (width // 2, height // 2), (width // 2, height // 2), (width, height), when=3)
    assert "1 edit(s) so far" in all_text(at)
    at.button(key="seg_fix_reset_0").click()
    rerun(at)
    assert "0 edit(s) so far" in all_text(at)


def make_collection(root, name: str, photos: int) -> None:
    rng = np.random.default_rng(0)
    for k in range(photos):
        image = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
        mask = np.zeros((24, 32), bool)
        mask[4:20, 8:24] = True
        teach.save_to_collection(root, name, f"p{k}.png", image, mask)


def test_teach_page_without_collections_explains_where_they_come_from(collections_root):
    at = open_page("pages/teach.py")
    assert at.title[0].value == "Teach Wingmask your species"
    assert f"No collection yet in {collections_root}" in all_text(at)
    assert at.button(key="teach_start").disabled


@pytest.fixture
def fake_fine_tune(monkeypatch):
    """start_adaptation replaced by a job that reports progress until it is cancelled; its calls recorded."""
    calls, started = [], threading.Event()

    def work(context: jobs.JobContext) -> None:
        context.log("epoch 1: collection IoU 0.8000")
        while True:
            context.progress(30, 600, "epoch 1: collection IoU 0.8000")
            started.set()
            context.check()
            threading.Event().wait(0.05)

    real_name_check = teach.check_new_model_name

    def fake_start(base, collection, name, minutes, models_dir, root):
        real_name_check(name, models_dir)
        calls.append((base, collection, name, minutes))
        return jobs.process_jobs().start(f"Teaching {name}", work)

    monkeypatch.setattr(teach, "start_adaptation", fake_start)
    yield calls, started
    running = jobs.process_jobs().running()
    if running is not None:
        jobs.process_jobs().cancel(running.id)
        jobs.process_jobs().wait(running.id, timeout=10)


def test_teach_page_starts_one_fine_tune_shows_its_progress_and_cancels_it(collections_root, fake_fine_tune):
    calls, started = fake_fine_tune
    make_collection(collections_root, "moths", MIN_PAIRS + 1)
    make_collection(collections_root, "few", 2)
    at = open_page("pages/teach.py")
    assert at.selectbox(key="teach_collection").options == ["few (2 photos)", "moths (9 photos)"]
    at.selectbox(key="teach_collection").set_value("few")
    rerun(at)
    assert at.button(key="teach_start").disabled and f"a fine-tune needs {MIN_PAIRS}" in all_text(at)
    at.selectbox(key="teach_collection").set_value("moths")
    at.text_input(key="teach_name").input("../escape")
    rerun(at)
    at.button(key="teach_start").click()
    rerun(at)
    assert "not a usable model name" in all_text(at), "names are checked before a job starts"
    at.text_input(key="teach_name").input("")
    at.button(key="teach_start").click()
    rerun(at)
    assert calls == [("unet-colour", "moths", "moths-unet-colour", 10)]
    assert started.wait(10)
    rerun(at)
    assert at.button(key="teach_start").disabled, "one fine-tune at a time"
    assert "epoch 1: collection IoU 0.8000" in at.get("progress")[0].proto.text
    job_id = at.session_state["teach_job"]["id"]
    at.button(key="teach_cancel").click()
    rerun(at)
    status = jobs.process_jobs().wait(job_id, timeout=10)
    assert status.state == jobs.CANCELLED
    rerun(at)
    assert "was cancelled; nothing was kept" in all_text(at)
    assert not at.button(key="teach_start").disabled


def test_a_finished_fine_tune_links_to_the_comparison_on_the_held_out_photos(collections_root):
    card = {
        "name": "moths-v1",
        "base_model": {"name": "unet-best"},
        "best_epoch": 7,
        "epochs_run": 9,
        "total_seconds": 570.0,
        "validation": {
            "measured_on": "held-out collection photos",
            "metric": "mean per-photo IoU at 256 px, threshold 0.5",
            "before": {"collection_iou": 0.81, "leeds_iou": 0.95, "adapt_score": 0.81},
            "after": {"collection_iou": 0.91, "leeds_iou": 0.949, "adapt_score": 0.91},
        },
        "comparison": {
            "photos": 22,
            "iou_per_photo": {"unet-best": 0.82, "moths-v1": 0.9},
            "evaluation": "moths-v1-heldout",
        },
    }
    at = open_page("pages/teach.py")
    at.session_state["teach_done"] = {"state": jobs.DONE, "name": "moths-v1", "card": card, "log": ()}
    rerun(at)
    assert "**moths-v1** is ready" in at.success[0].value
    table = at.dataframe[0].value.set_index("photos")
    assert table.loc["collection", "after"] == 0.91 and table.loc["leeds", "before"] == 0.95
    at.button(key="teach_compare").click()
    rerun(at)
    # The Validation page opened, asked to select the held-out evaluation (there is none in this test).
    assert at.title[0].value == "Validation metrics"
