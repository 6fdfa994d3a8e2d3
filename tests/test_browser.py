"""The real app in a real Chromium: deep links, the photo source round trip, uploads, charts, a phone.

Each test starts ``streamlit run`` on a free port, drives it with Playwright,
saves screenshots to ``test-artifacts/`` and always stops the server.
"""

import os
import time
from pathlib import Path

import numpy as np
import pytest
from collection_cases import folder_zip, garden
from PIL import Image

import ui_common
from benchmarks import soak
from seg_core.core.paths import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
SAMPLES = sorted((REPO_ROOT / "samples" / "images").glob("*.jpg"))
START_TIMEOUT_S = 90
PAGE_TIMEOUT_MS = 90_000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1400, "height": 1000}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
def server_url():
    """A fresh ``streamlit run`` (so the first request of a test is the server's first)."""
    ARTIFACTS.mkdir(exist_ok=True)
    # The environment of a plain `streamlit run`: the app itself must keep TensorFlow's notices out of the log.
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    with soak.streamlit_server(ARTIFACTS / "streamlit-server.log", env, START_TIMEOUT_S) as (url, _pid):
        yield url


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            chromium.close()


def wait_idle(page) -> None:
    """Wait until Streamlit has finished running the page script."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=PAGE_TIMEOUT_MS)


def open_page(browser, url: str, viewport: dict = DESKTOP):
    page = browser.new_page(viewport=viewport)
    page.goto(url, timeout=PAGE_TIMEOUT_MS)
    page.locator('[data-testid="stMainBlockContainer"]').wait_for(timeout=PAGE_TIMEOUT_MS)
    wait_idle(page)
    return page


def combobox(page, label: str):
    """The selectbox whose label starts with ``label``."""
    return page.get_by_role("combobox", name=label)


def choose(page, label: str, option: str) -> None:
    """Pick the first option containing ``option`` in the selectbox labelled ``label``."""
    combobox(page, label).click()
    page.get_by_role("option").filter(has_text=option).first.click()
    wait_idle(page)


def click_radio(page, option: str) -> None:
    page.locator('[data-testid="stRadio"] label', has_text=option).click()


def result_heading(page):
    """The subheader above the first result: the name of the photo that was segmented."""
    return page.locator('[data-testid="stMain"] [data-testid="stHeading"] h3').first


def upload_and_time(page, photo: Path, shown: int) -> float:
    """Add ``photo`` to the uploader; seconds until its four pictures are on screen."""
    uploader = page.locator('[data-testid="stFileUploader"]').first.locator('input[type="file"]')
    started = time.perf_counter()
    uploader.set_input_files(str(photo))
    page.locator('[data-testid="stHeading"]', has_text=photo.name).wait_for(timeout=PAGE_TIMEOUT_MS)
    images = page.locator('[data-testid="stImage"] img')
    images.nth(4 * shown + 3).wait_for(timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=\"stImage\"] img')].filter(i => i.complete).length >= n",
        arg=4 * (shown + 1),
        timeout=PAGE_TIMEOUT_MS,
    )
    return time.perf_counter() - started


def test_a_deep_link_as_the_first_request_gets_the_app_navigation(server_url, browser):
    page = open_page(browser, f"{server_url}/segment")
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_text("Compare models").wait_for(timeout=PAGE_TIMEOUT_MS)
    # Streamlit's legacy pages/ mode would list "streamlit app" and the file names instead.
    links = nav.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()
    assert [text.split("\n")[-1] for text in links] == [spec.title for spec in ui_common.PAGES]
    page.get_by_role("heading", name="Segment photos").wait_for(timeout=PAGE_TIMEOUT_MS)
    assert page.title() == "Wingmask"
    # The wide layout of the entry point's page settings, not the centred default.
    assert page.locator('[data-testid="stMainBlockContainer"]').bounding_box()["width"] > 900
    page.screenshot(path=str(ARTIFACTS / "deep-link-segment.png"))
    log = (ARTIFACTS / "streamlit-server.log").read_text()
    # TensorFlow loaded for the sample; its start-up notices are not for the operator.
    assert "oneDNN" not in log and "absl::InitializeLog" not in log, log


def test_photo_source_round_trip_keeps_the_chosen_sample(server_url, browser):
    from playwright.sync_api import expect

    page = open_page(browser, f"{server_url}/segment")
    heading = result_heading(page)
    iou = page.locator('[data-testid="stMetric"]', has_text="IoU")
    expect(heading).to_have_text(SAMPLES[0].name, timeout=PAGE_TIMEOUT_MS)
    other = SAMPLES[4].stem
    choose(page, "Sample photo", other)
    expect(heading).to_have_text(f"{other}.jpg", timeout=PAGE_TIMEOUT_MS)
    expect(iou).to_have_count(1, timeout=PAGE_TIMEOUT_MS)
    page.get_by_text("Score against its ground-truth mask").click()
    expect(iou).to_have_count(0, timeout=PAGE_TIMEOUT_MS)
    click_radio(page, "Upload")
    expect(page.locator('[data-testid="stFileUploader"]').first).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    click_radio(page, "Sample photo")
    expect(heading).to_have_text(f"{other}.jpg", timeout=PAGE_TIMEOUT_MS)
    wait_idle(page)
    # The widgets show the state that produced the result under them.
    assert combobox(page, "Sample photo").input_value().startswith(other)
    assert heading.inner_text() == f"{other}.jpg"
    assert not page.get_by_role("checkbox", name="Score against its ground-truth mask").is_checked()
    assert iou.count() == 0
    page.screenshot(path=str(ARTIFACTS / "segment-round-trip.png"))


def test_upload_shows_mask_and_validation_shows_charts(server_url, browser):
    page = open_page(browser, f"{server_url}/segment", {"width": 1400, "height": 2000})
    click_radio(page, "Upload")
    first = upload_and_time(page, SAMPLES[0], shown=0)
    wait_idle(page)
    assert page.locator('[data-testid="stImage"] img').count() == 4
    assert page.get_by_text("Foreground").count() >= 1
    page.screenshot(path=str(ARTIFACTS / "segment.png"), full_page=True)
    second = upload_and_time(page, SAMPLES[1], shown=1)
    wait_idle(page)
    print(f"\nupload to mask on screen: first photo {first:.2f} s, second photo {second:.2f} s")
    page.screenshot(path=str(ARTIFACTS / "segment-batch.png"), full_page=True)

    console = []
    page.on("console", lambda message: console.append(message.text))
    page.goto(f"{server_url}/validation", timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("heading", name="Validation metrics").wait_for(timeout=PAGE_TIMEOUT_MS)
    wait_idle(page)
    page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "validation.png"), full_page=True)
    assert not [m for m in console if "Infinite extent" in m], console


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_segment_settings_and_pictures_fit_the_screen(server_url, browser, viewport):
    page = open_page(browser, f"{server_url}/segment", viewport)
    result_heading(page).wait_for(timeout=PAGE_TIMEOUT_MS)
    page.locator('[data-testid="stImage"] img').nth(3).wait_for(timeout=PAGE_TIMEOUT_MS)
    wait_idle(page)
    box = combobox(page, "Model").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    widths = [img.bounding_box()["width"] for img in page.locator('[data-testid="stImage"] img').all()]
    # Two pictures to a row on a wide screen, one on a phone: never thumbnails.
    assert len(widths) == 4 and min(widths) > min(300, viewport["width"] * 0.8), widths
    page.set_viewport_size({"width": viewport["width"], "height": 3000})
    page.screenshot(path=str(ARTIFACTS / f"segment-{viewport['width']}px.png"))


CORNER_IS_GREEN = """() => {
    const img = document.querySelectorAll('[data-testid="stImage"] img')[3];
    if (!img || !img.complete || !img.naturalWidth) return false;
    const canvas = document.createElement("canvas");
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const context = canvas.getContext("2d");
    context.drawImage(img, 0, 0);
    const [red, green, blue] = context.getImageData(0, 0, 1, 1).data;
    return red < 10 && green > 245 && blue < 10;
}"""


def test_soft_edges_on_a_colour_give_a_cut_out_download(server_url, browser):
    from playwright.sync_api import expect

    page = open_page(browser, f"{server_url}/segment", {"width": 1400, "height": 2000})
    expect(result_heading(page)).to_have_text(SAMPLES[0].name, timeout=PAGE_TIMEOUT_MS)
    page.get_by_role("tab", name="Cut-out").click()
    page.get_by_text("Soft edges", exact=True).click()
    wait_idle(page)
    click_radio(page, "Colour")
    wait_idle(page)
    page.locator('[data-testid="stColorPicker"] [data-testid="stColorPickerBlock"]').click()
    # The picker's hex field, found by the default colour it shows.
    page.locator('input[value="#FFFFFF" i]').first.fill("#00FF00")
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    # The cut-out on screen (the fourth picture) turns green once the page has rerun with the new colour.
    page.wait_for_function(CORNER_IS_GREEN, timeout=PAGE_TIMEOUT_MS)
    wait_idle(page)
    button = page.locator('[data-testid="stDownloadButton"]', has_text="Cut-out PNG")
    expect(button).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "segment-soft-edges-colour.png"), full_page=True)
    with page.expect_download(timeout=PAGE_TIMEOUT_MS) as download:
        button.click()
    picture = np.asarray(Image.open(download.value.path()))
    assert download.value.suggested_filename == f"{SAMPLES[0].stem}_cutout.png"
    assert picture.shape == (*Image.open(SAMPLES[0]).size[::-1], 3)
    assert picture[0, 0].tolist() == [0, 255, 0]
    # Soft edges: along the butterfly's outline, colours between the photo's and the background's.
    assert len(np.unique(picture.reshape(-1, 3), axis=0)) > 1000


def test_an_uploaded_collection_zip_is_evaluated_and_its_scores_shown(browser, tmp_path):
    from playwright.sync_api import expect

    archive = tmp_path / "meadow.zip"
    archive.write_bytes(folder_zip(garden(tmp_path / "meadow"), "meadow/"))
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    env["WINGMASK_COLLECTIONS"] = str(tmp_path / "collections")
    ARTIFACTS.mkdir(exist_ok=True)
    with soak.streamlit_server(ARTIFACTS / "streamlit-collection.log", env, START_TIMEOUT_S) as (url, _pid):
        page = open_page(browser, f"{url}/validation", {"width": 1400, "height": 2000})
        choose(page, "Collection", "Upload a new collection")
        page.get_by_role("heading", name="Evaluate your own photos").wait_for(timeout=PAGE_TIMEOUT_MS)
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(archive))
        wait_idle(page)
        # Only the fast baseline, so the test does not wait for every network: clear the models, then pick Otsu.
        models = page.locator('[data-testid="stMultiSelect"]', has_text="Models").locator("input")
        models.click()
        for _ in ui_common.catalogue()["model"]:
            page.keyboard.press("Backspace")
        models.fill("otsu")
        page.keyboard.press("Enter")
        page.keyboard.press("Escape")
        wait_idle(page)
        page.get_by_role("button", name="Evaluate", exact=True).click()
        page.get_by_text("3 photos of the collection meadow").wait_for(timeout=PAGE_TIMEOUT_MS)
        wait_idle(page)
        assert combobox(page, "Collection").input_value() == "meadow"
        expect(page.get_by_role("heading", name="Scores at threshold 0.50 (per-image)")).to_be_visible()
        expect(page.get_by_text("2 file(s) left out")).to_be_visible()
        page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=PAGE_TIMEOUT_MS)
        page.screenshot(path=str(ARTIFACTS / "validation-own-collection.png"), full_page=True)
    assert (tmp_path / "collections" / "meadow" / "eval_meadow.csv").is_file()
