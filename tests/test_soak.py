"""The soak benchmark's pieces, and one tiny real run (1 session, a small photo) in Chromium."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image

from benchmarks import soak
from benchmarks.soak import Session, SoakReport, Wave, WaveReport, check_loopback, failed_bars, parse_wave
from seg_core.core.paths import REPO_ROOT

SAMPLES = sorted((REPO_ROOT / "samples" / "images").glob("*.jpg"))


def test_waves_are_parsed_and_bounded():
    assert parse_wave("6x48") == Wave(6, 48.0)
    assert parse_wave("10X12.5") == Wave(10, 12.5)
    for bad in ("6", "x48", "six x 48", "0x12", "33x12", "2x51", "2x0"):
        with pytest.raises(ValueError):
            parse_wave(bad)


def test_only_loopback_urls_are_driven():
    assert check_loopback("http://127.0.0.1:8501/") == "http://127.0.0.1:8501"
    assert check_loopback("http://localhost:8600") == "http://localhost:8600"
    for bad in ("http://example.com:8501", "http://10.0.0.5:8501", "https://127.0.0.1:8501", "http://127.0.0.1"):
        with pytest.raises(ValueError, match="this machine"):
            check_loopback(bad)


def test_photos_have_the_asked_size_and_differ_per_session(tmp_path):
    first = soak.make_photo(SAMPLES[0], 2.0, 0, tmp_path / "a.jpg")
    second = soak.make_photo(SAMPLES[0], 2.0, 1, tmp_path / "b.jpg")
    with Image.open(first) as photo, Image.open(SAMPLES[0]) as source:
        assert abs(photo.width * photo.height - 2e6) < 5e3
        assert abs(photo.width / photo.height - source.width / source.height) < 0.01
    assert hashlib.sha256(first.read_bytes()).digest() != hashlib.sha256(second.read_bytes()).digest()


def test_a_photo_over_the_apps_limits_is_refused():
    with pytest.raises(ValueError, match="limits"):
        soak.photo_size((100, 1000), 48)  # 10:1 at 48 MP is 21,900 px wide


def test_tree_rss_counts_children():
    child = subprocess.Popen([sys.executable, "-c", "b = bytearray(60_000_000); import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 30
        while (soak.tree_rss_mb(child.pid) or 0) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
        alone = soak.tree_rss_mb(child.pid)
        own = psutil.Process().memory_info().rss / 1e6
        assert alone >= 60 and soak.tree_rss_mb(os.getpid()) > own + alone - 10
    finally:
        child.kill()
        child.wait()
    assert soak.tree_rss_mb(child.pid) is None


def test_failed_bars_name_every_missed_bar():
    served = WaveReport("1 sessions x 1 MP", [Session("a.jpg", 3.0)], 900.0)
    report = SoakReport([served], 800.0, 1200.0, 900.0)
    assert failed_bars(report, 2000, 8) == []
    assert failed_bars(report, 1000, 2) == [
        "server peak 1200 MB is over 1000 MB",
        "slowest session 3.0 s is over 2 s",
    ]
    report.waves.append(WaveReport("1 sessions x 1 MP", [Session("b.jpg", error="no mask within 5 s")]))
    assert failed_bars(report, None, None) == ["not every session got its mask"]


@pytest.mark.browser
@pytest.mark.skipif(not soak.CHROMIUM.exists(), reason=f"{soak.CHROMIUM} is not installed")
def test_one_session_soak_gets_its_mask_and_reports_memory(tmp_path: Path):
    out = tmp_path / "soak.json"
    assert soak.main(["--wave", "1x0.5", "--settle-s", "0", "--timeout-s", "60", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    (wave,) = report["waves"]
    assert wave["served"] == 1 and wave["sessions"][0]["error"] is None and wave["slowest_s"] > 0
    assert 0 < report["before_rss_mb"] <= report["peak_rss_mb"]
