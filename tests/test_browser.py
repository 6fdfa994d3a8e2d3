"""The real app in a real Chromium: upload a photo, see its mask, see a chart.

Starts ``streamlit run`` on a free port, drives it with Playwright, saves
screenshots to ``test-artifacts/`` and always stops the server.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from seg_core.data import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts"
SAMPLES = sorted((REPO_ROOT / "samples" / "images").glob("*.jpg"))
START_TIMEOUT_S = 90
PAGE_TIMEOUT_MS = 90_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"streamlit did not become healthy within {START_TIMEOUT_S} s")


@pytest.fixture
def server_url():
    port = free_port()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "streamlit-server.log").open("w")
    server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def wait_idle(page) -> None:
    """Wait until Streamlit has finished running the page script."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=PAGE_TIMEOUT_MS)


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


def test_upload_shows_mask_and_validation_shows_charts(server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(f"{server_url}/segment", timeout=PAGE_TIMEOUT_MS)
            page.locator('[data-testid="stFileUploader"]').first.wait_for(timeout=PAGE_TIMEOUT_MS)
            wait_idle(page)
            first = upload_and_time(page, SAMPLES[0], shown=0)
            wait_idle(page)
            assert page.locator('[data-testid="stImage"] img').count() == 4
            assert page.get_by_text("Foreground").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "segment.png"), full_page=True)
            second = upload_and_time(page, SAMPLES[1], shown=1)
            wait_idle(page)
            print(f"\nupload to mask on screen: first photo {first:.2f} s, second photo {second:.2f} s")
            page.screenshot(path=str(ARTIFACTS / "segment-batch.png"), full_page=True)

            page.goto(f"{server_url}/validation", timeout=PAGE_TIMEOUT_MS)
            page.get_by_role("heading", name="Validation metrics").wait_for(timeout=PAGE_TIMEOUT_MS)
            wait_idle(page)
            page.locator(".vega-embed canvas, .vega-embed svg").first.wait_for(timeout=PAGE_TIMEOUT_MS)
            page.screenshot(path=str(ARTIFACTS / "validation.png"), full_page=True)
        finally:
            browser.close()
