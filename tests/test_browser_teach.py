"""Correcting a mask in a real Chromium and saving it to a collection (the click component, offline)."""

import os

import numpy as np
import pytest
from test_browser import ARTIFACTS, CHROMIUM, PAGE_TIMEOUT_MS, START_TIMEOUT_S, browser, open_page, wait_idle  # noqa: F401

from benchmarks import soak
from seg_core.data.collections import COLLECTIONS_ENV, read_folder

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


@pytest.fixture
def server_with_collections(tmp_path):
    """A fresh ``streamlit run`` that keeps collections in a temporary folder: (url, collections folder)."""
    ARTIFACTS.mkdir(exist_ok=True)
    env = os.environ | {COLLECTIONS_ENV: str(tmp_path)}
    with soak.streamlit_server(ARTIFACTS / "streamlit-server-teach.log", env, START_TIMEOUT_S) as (url, _pid):
        yield url, tmp_path


def test_a_brush_stroke_corrects_the_mask_and_the_photo_is_saved_to_a_collection(server_with_collections, browser):  # noqa: F811
    from playwright.sync_api import expect

    url, collections = server_with_collections
    page = open_page(browser, f"{url}/segment", {"width": 1400, "height": 2400})
    page.get_by_text("Correct the mask and save it to a collection").click()
    wait_idle(page)
    page.locator('[data-testid="stRadio"] label', has_text="Drag: brush").click()
    wait_idle(page)
    frame = page.locator('iframe[title*="streamlit_image_coordinates"]')
    frame.wait_for(timeout=PAGE_TIMEOUT_MS)
    picture = page.frame_locator('iframe[title*="streamlit_image_coordinates"]').locator("img")
    expect(picture).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const f = document.querySelector('iframe[title*=\"streamlit_image_coordinates\"]');"
        " return f && f.getBoundingClientRect().height > 100; }",
        timeout=PAGE_TIMEOUT_MS,
    )
    frame.scroll_into_view_if_needed()
    box = frame.bounding_box()
    # A stroke across the top of the photo, where there is only background: it becomes butterfly.
    y = box["y"] + box["height"] * 0.05
    page.mouse.move(box["x"] + box["width"] * 0.1, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.3, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.up()
    expect(page.get_by_text("1 edit(s) so far.", exact=False)).to_be_visible(timeout=PAGE_TIMEOUT_MS)
    wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "segment-correction.png"), full_page=True)
    name = page.get_by_label("Collection", exact=True)
    name.fill("browser-moths")
    name.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Save to collection").click()
    expect(page.get_by_text("Saved to the collection browser-moths")).to_be_visible(timeout=PAGE_TIMEOUT_MS)

    (pair,) = read_folder(collections / "browser-moths").pairs
    mask = pair.load().mask
    height, width = mask.shape
    row = round(height * 0.05)
    assert mask[row, round(width * 0.15) : round(width * 0.45)].all(), "the stroke is butterfly in the saved mask"
    assert np.mean(mask) < 0.6
