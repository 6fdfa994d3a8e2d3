"""Concurrent users: one shared model, many threads, the same masks as one at a time."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import test_browser as browser_helpers
from PIL import Image

import ui_common
from seg_core.core.metrics import confusion, iou
from seg_core.core.paths import REPO_ROOT
from seg_core.runtime.registry import load_predictor, segment

# The dashboard helper's fixture that starts `streamlit run` on a free port, shared rather than copied.
server_url = browser_helpers.server_url
PHOTOS = sorted((REPO_ROOT / "samples" / "images").glob("*.jpg"))
USERS = 5
ROUNDS = 3


@pytest.fixture(scope="module")
def predictor():
    return load_predictor("unet-light")


def test_threads_sharing_a_predictor_get_the_single_threaded_masks(predictor):
    uploads = [p.read_bytes() for p in PHOTOS]
    expected = [segment(data, predictor)[1] for data in uploads]
    start = threading.Barrier(USERS)

    def user(index: int) -> list[tuple[int, object]]:
        start.wait()
        # Each user walks the photos from a different place, so threads overlap on different inputs.
        order = [(index * 2 + step) % len(uploads) for step in range(ROUNDS)]
        return [(k, segment(uploads[k], predictor)[1]) for k in order]

    with ThreadPoolExecutor(USERS) as pool:
        results = [r for batch in pool.map(user, range(USERS)) for r in batch]
    assert len(results) == USERS * ROUNDS
    for k, mask in results:
        assert mask.shape == expected[k].shape
        assert iou(confusion(mask, expected[k])) > 0.999, PHOTOS[k].name


def test_the_dashboard_loads_a_model_once_for_concurrent_sessions(monkeypatch):
    loads = []
    model = object()

    def slow_load(name):
        loads.append(name)
        time.sleep(0.2)  # long enough for every thread to ask while the first load runs
        return model

    monkeypatch.setattr(ui_common, "load_warm", slow_load)
    name = "concurrency-test-model"
    with ThreadPoolExecutor(USERS) as pool:
        got = list(pool.map(lambda _: ui_common.get_predictor(name), range(USERS)))
    assert loads == [name]
    assert all(g is model for g in got)


def test_loading_a_model_exempts_the_objects_alive_then_from_garbage_collection(monkeypatch):
    # Streamlit collects garbage after every script run; frozen objects are skipped.
    frozen = []
    monkeypatch.setattr(ui_common, "load_warm", lambda name: object())
    monkeypatch.setattr(ui_common.gc, "freeze", lambda: frozen.append(True))
    ui_common.get_predictor("freeze-test-model")
    ui_common.get_predictor("freeze-test-model")  # cached: loaded and frozen once
    assert frozen == [True]


@pytest.mark.browser
@pytest.mark.skipif(not browser_helpers.CHROMIUM.exists(), reason=f"{browser_helpers.CHROMIUM} is not installed")
def test_five_browsers_upload_at_once_and_all_get_masks(server_url):
    from playwright.sync_api import sync_playwright

    photos = PHOTOS[:USERS]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(browser_helpers.CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            # One context per user: separate cookies, so five separate Streamlit sessions.
            pages = [browser.new_context(viewport={"width": 1400, "height": 1000}).new_page() for _ in photos]
            inputs = [page.locator('[data-testid="stFileUploader"] input[type="file"]').first for page in pages]
            for page, file_input in zip(pages, inputs, strict=True):
                page.goto(f"{server_url}/segment", timeout=browser_helpers.PAGE_TIMEOUT_MS)
                browser_helpers.wait_idle(page)
                browser_helpers.click_radio(page, "Upload")  # the page opens on a sample photo
                file_input.wait_for(state="attached", timeout=browser_helpers.PAGE_TIMEOUT_MS)
                browser_helpers.wait_idle(page)
            # Hand every page its file before waiting on any, so the five sessions run together.
            started = time.perf_counter()
            for file_input, photo in zip(inputs, photos, strict=True):
                file_input.set_input_files(str(photo))
            for index, (page, photo) in enumerate(zip(pages, photos, strict=True)):
                heading = page.locator('[data-testid="stHeading"]', has_text=photo.name)
                heading.wait_for(timeout=browser_helpers.PAGE_TIMEOUT_MS)
                page.locator('[data-testid="stImageCaption"]', has_text="Mask").first.wait_for(
                    timeout=browser_helpers.PAGE_TIMEOUT_MS
                )
                browser_helpers.wait_idle(page)
                width, height = Image.open(photo).size
                assert page.get_by_text(f"{width}x{height}", exact=True).count() == 1
                assert page.locator('[data-testid="stImage"] img').count() == 4
                assert page.locator('[data-testid="stException"]').count() == 0
                page.screenshot(path=str(browser_helpers.ARTIFACTS / f"concurrent-{index}.png"), full_page=True)
            print(f"\n{USERS} simultaneous uploads: all masks on screen after {time.perf_counter() - started:.1f} s")
        finally:
            browser.close()
