"""Browser soak benchmark: many sessions upload big photos to the dashboard at once.

Starts ``streamlit run streamlit_app.py`` on loopback (or uses a running one
with ``--url``), opens the Segment page in N real Chromium sessions, and has
them all upload a photo at the same moment; then the next wave. Photos are
made from the sample photos by upscaling to the asked size (12 MP phone
photo, 48 MP camera photo), one distinct file per session so no session gets
another's cached result. Meanwhile the server's resident memory (its process
and children) is sampled.

    python -m benchmarks.soak --wave 6x48 --wave 10x12

Reports, per wave, how many sessions got their mask and the slowest; and the
server's memory before, at its peak and after the sessions closed. Exit
status 1 when a session got no mask (or a traceback), or a ``--max-rss-mb``
/ ``--max-session-s`` bar is missed. A benchmark for a quiet machine, not a
test: it takes minutes and its figures depend on the host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from PIL import Image
from tqdm import tqdm

from seg_core.core.imaging import MAX_PIXELS, MAX_SIDE
from seg_core.core.paths import REPO_ROOT, SAMPLES_DIR

CHROMIUM = Path("/usr/bin/chromium")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DEFAULT_WAVES = ("6x48", "10x12")
#: Bounds that keep one run to minutes on a laptop.
MAX_SESSIONS = 32
MAX_WAVES = 10
START_TIMEOUT_S = 120
SAMPLE_EVERY_S = 0.2
PAGE_TIMEOUT_MS = 120_000
DESKTOP = {"width": 1400, "height": 1000}
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
IMAGES_SHOWN = (
    "n => [...document.querySelectorAll('[data-testid=\"stImage\"] img')].filter(i => i.complete).length >= n"
)


@dataclass(frozen=True)
class Wave:
    """``sessions`` browsers that each upload a ``megapixels`` photo at the same moment."""

    sessions: int
    megapixels: float

    def __str__(self) -> str:
        return f"{self.sessions} sessions x {self.megapixels:g} MP"


@dataclass
class Session:
    """What one browser session saw: seconds from upload to its four pictures, or why it failed."""

    photo: str
    seconds: float | None = None
    error: str | None = None


@dataclass
class WaveReport:
    wave: str
    sessions: list[Session]
    peak_rss_mb: float | None = None

    @property
    def served(self) -> int:
        return sum(s.error is None for s in self.sessions)

    @property
    def slowest_s(self) -> float | None:
        times = [s.seconds for s in self.sessions if s.seconds is not None]
        return max(times) if times else None

    @property
    def median_s(self) -> float | None:
        times = [s.seconds for s in self.sessions if s.seconds is not None]
        return statistics.median(times) if times else None


@dataclass
class SoakReport:
    """The whole run; memory figures are None when the server's process is unknown."""

    waves: list[WaveReport] = field(default_factory=list)
    before_rss_mb: float | None = None
    peak_rss_mb: float | None = None
    final_rss_mb: float | None = None

    @property
    def slowest_s(self) -> float | None:
        times = [w.slowest_s for w in self.waves if w.slowest_s is not None]
        return max(times) if times else None

    @property
    def all_served(self) -> bool:
        return all(w.served == len(w.sessions) for w in self.waves)

    def to_dict(self) -> dict:
        return {
            "waves": [
                {**asdict(w), "served": w.served, "slowest_s": w.slowest_s, "median_s": w.median_s}
                for w in self.waves
            ],
            "before_rss_mb": self.before_rss_mb,
            "peak_rss_mb": self.peak_rss_mb,
            "final_rss_mb": self.final_rss_mb,
            "slowest_s": self.slowest_s,
        }


def parse_wave(text: str) -> Wave:
    """``"6x48"`` -> 6 sessions uploading a 48-megapixel photo.

    Raises:
        ValueError: not ``SESSIONSxMEGAPIXELS`` within the bounds.
    """
    sessions, sep, megapixels = text.lower().partition("x")
    try:
        wave = Wave(int(sessions), float(megapixels))
    except ValueError:
        raise ValueError(f"{text!r} is not SESSIONSxMEGAPIXELS, e.g. 6x48") from None
    if not sep or not 1 <= wave.sessions <= MAX_SESSIONS:
        raise ValueError(f"{text!r}: sessions must be 1 to {MAX_SESSIONS}")
    if not 0.01 <= wave.megapixels <= MAX_PIXELS / 1e6:
        raise ValueError(f"{text!r}: megapixels must be 0.01 to {MAX_PIXELS / 1e6:g}")
    return wave


def check_loopback(url: str) -> str:
    """``url`` without a trailing slash, if it points at this machine.

    Raises:
        ValueError: not an http URL on a loopback address (the soak never loads another host).
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK or parts.port is None:
        raise ValueError(f"{url!r} is not http://127.0.0.1:PORT (the soak only drives a server on this machine)")
    return url.rstrip("/")


def photo_size(shape: tuple[int, int], megapixels: float) -> tuple[int, int]:
    """(width, height) with the aspect ratio of ``shape`` (height, width) and about ``megapixels``."""
    height, width = shape
    scale = math.sqrt(megapixels * 1e6 / (height * width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if max(size) > MAX_SIDE or size[0] * size[1] > MAX_PIXELS:
        raise ValueError(f"a {megapixels:g} MP copy of a {width}x{height} photo is over the app's limits")
    return size


def make_photo(source: Path, megapixels: float, number: int, out: Path) -> Path:
    """An upscaled JPEG copy of ``source`` with a mark in one corner, so each session's file is different."""
    with Image.open(source) as photo:
        big = photo.convert("RGB").resize(photo_size((photo.height, photo.width), megapixels), Image.BICUBIC)
    big.paste((number * 37 % 256, number * 91 % 256, number % 256), (0, 0, 8, 8))
    big.save(out, "JPEG", quality=90)
    return out


def make_photos(waves: list[Wave], samples: list[Path], folder: Path) -> list[list[Path]]:
    """One distinct photo per session of every wave, cycling through ``samples``."""
    photos, number = [], 0
    with tqdm(total=sum(w.sessions for w in waves), desc="making photos", unit="photo") as bar:
        for index, wave in enumerate(waves, start=1):
            paths = []
            for session in range(wave.sessions):
                name = f"soak-w{index}-s{session + 1:02d}-{wave.megapixels:g}mp.jpg"
                paths.append(make_photo(samples[number % len(samples)], wave.megapixels, number, folder / name))
                number += 1
                bar.update()
            photos.append(paths)
    return photos


def tree_rss_mb(pid: int) -> float | None:
    """Resident memory of a process and all its children, in MB (None once it has exited)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return None
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += process.memory_info().rss
    return total / 1e6


def listening_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` here, if this user may see it."""
    with contextlib.suppress(psutil.AccessDenied):
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
                return conn.pid
    return None


class MemorySampler:
    """Samples a process tree's resident memory in a thread; ``peak_since(t)`` reads the highest since ``t``."""

    def __init__(self, pid: int, every_s: float = SAMPLE_EVERY_S):
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss_mb(self.pid)
            if rss is not None:
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.every_s)

    def now(self) -> float | None:
        return tree_rss_mb(self.pid)

    def peak_since(self, since: float) -> float | None:
        values = [rss for at, rss in list(self.samples) if at >= since]
        return max(values) if values else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen | None, timeout_s: float = START_TIMEOUT_S) -> None:
    """Wait for Streamlit's health route.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"no answer from {url} within {timeout_s:g} s")


@contextlib.contextmanager
def streamlit_server(
    log_path: Path, env: dict[str, str] | None = None, start_timeout_s: float = START_TIMEOUT_S
) -> Iterator[tuple[str, int]]:
    """A fresh ``streamlit run`` of the app on a free loopback port: (url, pid), stopped afterwards.

    ``env`` replaces the server's environment (default: this process's).
    """
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port)]
    command += ["--server.headless", "true", "--server.address", "127.0.0.1"]
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, server, start_timeout_s)
            yield url, server.pid
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


async def _open_segment_page(browser, url: str):
    context = await browser.new_context(viewport=DESKTOP)
    page = await context.new_page()
    await page.goto(f"{url}/segment", timeout=PAGE_TIMEOUT_MS)
    await page.locator('[data-testid="stMainBlockContainer"]').wait_for(timeout=PAGE_TIMEOUT_MS)
    await page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
    return context, page


async def _pictures_shown(page, count: int, timeout_ms: float) -> None:
    await page.locator('[data-testid="stImage"] img').nth(count - 1).wait_for(timeout=timeout_ms)
    await page.wait_for_function(IMAGES_SHOWN, arg=count, timeout=timeout_ms)


async def _problem(page) -> str | None:
    """A traceback or error box on the page, if there is one."""
    for selector in ('[data-testid="stException"]', '[data-testid="stAlertContentError"]'):
        boxes = page.locator(selector)
        if await boxes.count():
            return (await boxes.first.inner_text()).strip().splitlines()[0][:200]
    return None


async def _upload(page, photo: Path, timeout_s: float) -> Session:
    session = Session(photo.name)
    uploader = page.locator('[data-testid="stFileUploader"]').first.locator('input[type="file"]')
    started = time.perf_counter()
    try:
        await uploader.set_input_files(str(photo))
        heading = page.locator('[data-testid="stHeading"]', has_text=photo.name)
        await heading.wait_for(timeout=timeout_s * 1000)
        left_ms = max(1.0, (timeout_s - (time.perf_counter() - started)) * 1000)
        await _pictures_shown(page, 4, left_ms)
        session.seconds = time.perf_counter() - started
        await page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
    except Exception as exc:  # a timeout or a closed page: the session counts as not served
        session.error = f"no mask within {timeout_s:g} s ({type(exc).__name__})"
    problem = await _problem(page)
    if problem is not None:
        session.error = problem
    return session


async def _warm_up(browser, url: str) -> None:
    """One session that opens the page and waits for the sample's result, so the models are loaded."""
    context, page = await _open_segment_page(browser, url)
    try:
        await _pictures_shown(page, 4, PAGE_TIMEOUT_MS)
    finally:
        await context.close()


async def _wave(browser, url: str, photos: list[Path], timeout_s: float) -> list[Session]:
    opened = await asyncio.gather(*(_open_segment_page(browser, url) for _ in photos))
    try:
        for _, page in opened:
            await page.locator('[data-testid="stRadio"] label', has_text="Upload").click()
        for _, page in opened:
            await page.locator('[data-testid="stFileUploader"]').first.wait_for(timeout=PAGE_TIMEOUT_MS)
            await page.wait_for_selector(IDLE, timeout=PAGE_TIMEOUT_MS)
        uploads = (_upload(page, photo, timeout_s) for (_, page), photo in zip(opened, photos, strict=True))
        return list(await asyncio.gather(*uploads))
    finally:
        for context, _ in opened:
            await context.close()


async def run_soak(
    url: str,
    waves: list[Wave],
    photos: list[list[Path]],
    sampler: MemorySampler | None,
    timeout_s: float,
    settle_s: float,
    chromium: Path = CHROMIUM,
) -> SoakReport:
    """Warm the server up, run every wave in turn, and read memory before, at the peak and after."""
    from playwright.async_api import async_playwright

    report = SoakReport()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage"],
        )
        try:
            await _warm_up(browser, url)
            started = time.monotonic()
            if sampler is not None:
                report.before_rss_mb = sampler.now()
            for wave, paths in zip(waves, photos, strict=True):
                wave_started = time.monotonic()
                sessions = await _wave(browser, url, paths, timeout_s)
                peak = sampler.peak_since(wave_started) if sampler is not None else None
                report.waves.append(WaveReport(str(wave), sessions, peak))
                print(_wave_line(report.waves[-1]), flush=True)
        finally:
            await browser.close()
    if sampler is not None:
        await asyncio.sleep(settle_s)
        report.peak_rss_mb = sampler.peak_since(started)
        report.final_rss_mb = sampler.now()
    return report


def _mb(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0f} MB"


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.1f} s"


def _wave_line(wave: WaveReport) -> str:
    line = (
        f"{wave.wave}: served {wave.served}/{len(wave.sessions)}, slowest {_seconds(wave.slowest_s)}, "
        f"median {_seconds(wave.median_s)}, server peak {_mb(wave.peak_rss_mb)}"
    )
    failures = [f"\n  {s.photo}: {s.error}" for s in wave.sessions if s.error is not None]
    return line + "".join(failures)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.soak",
        description="Soak benchmark: waves of real Chromium sessions upload big photos to the dashboard's "
        "Segment page at the same moment; reports sessions served, the slowest, and the server's resident "
        "memory (before, peak, after). Loopback only.",
    )
    parser.add_argument(
        "--wave",
        action="append",
        type=parse_wave,
        help=f"SESSIONSxMEGAPIXELS, repeatable, run in order (default: {' then '.join(DEFAULT_WAVES)}); "
        f"at most {MAX_WAVES} waves of {MAX_SESSIONS} sessions",
    )
    parser.add_argument("--url", help="use a running dashboard (http://127.0.0.1:PORT) instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, for its memory")
    parser.add_argument("--photos", type=Path, default=SAMPLES_DIR / "images", help="folder of JPEGs to upscale")
    parser.add_argument("--timeout-s", type=_positive, default=120.0, help="per session (default 120)")
    parser.add_argument("--settle-s", type=float, default=10.0, help="wait before the final memory (default 10)")
    parser.add_argument("--max-rss-mb", type=_positive, help="fail (exit 1) when the server's peak exceeds this")
    parser.add_argument("--max-session-s", type=_positive, help="fail (exit 1) when a session takes longer")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--chromium", type=Path, default=CHROMIUM, help=f"browser binary (default {CHROMIUM})")
    args = parser.parse_args(argv)
    waves = args.wave or [parse_wave(w) for w in DEFAULT_WAVES]
    if len(waves) > MAX_WAVES:
        parser.error(f"at most {MAX_WAVES} waves")
    if not args.chromium.exists():
        parser.error(f"{args.chromium} is not installed (Debian: apt-get install chromium)")
    samples = sorted(args.photos.glob("*.jpg"))
    if not samples:
        parser.error(f"no .jpg photos in {args.photos}")
    if args.pid is not None and args.url is None:
        parser.error("--pid goes with --url")
    try:
        url = check_loopback(args.url) if args.url else None
    except ValueError as exc:
        parser.error(str(exc))
    pid = args.pid
    if url is not None and pid is None:
        pid = listening_pid(urlsplit(url).port)
        if pid is None and args.max_rss_mb is not None:
            parser.error("--max-rss-mb needs the server's memory, and its process is not visible here: give --pid")

    with tempfile.TemporaryDirectory(prefix="wingmask-soak-") as folder, contextlib.ExitStack() as stack:
        photos = make_photos(waves, samples, Path(folder))
        if url is None:
            log_path = Path(folder) / "streamlit.log"
            url, pid = stack.enter_context(streamlit_server(log_path))
            print(f"started {url} (pid {pid}, log {log_path})", flush=True)
        else:
            wait_healthy(url, None, 10)
        sampler = stack.enter_context(MemorySampler(pid)) if pid is not None else None
        if sampler is None:
            print("the server's process is not visible here: memory is not reported (give --pid)", flush=True)
        report = asyncio.run(run_soak(url, waves, photos, sampler, args.timeout_s, args.settle_s, args.chromium))

    memory = f"before {_mb(report.before_rss_mb)}, peak {_mb(report.peak_rss_mb)}, final {_mb(report.final_rss_mb)}"
    print(f"server memory: {memory}")
    print(f"slowest session: {_seconds(report.slowest_s)}")
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    failures = failed_bars(report, args.max_rss_mb, args.max_session_s)
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print("OK")
    return 1 if failures else 0


def failed_bars(report: SoakReport, max_rss_mb: float | None, max_session_s: float | None) -> list[str]:
    """Why the run misses its bars (empty: it meets them): sessions not served, memory, time."""
    failures = []
    if not report.all_served:
        failures.append("not every session got its mask")
    if max_rss_mb is not None and (report.peak_rss_mb is None or report.peak_rss_mb > max_rss_mb):
        failures.append(f"server peak {_mb(report.peak_rss_mb)} is over {max_rss_mb:g} MB")
    if max_session_s is not None and (report.slowest_s is None or report.slowest_s > max_session_s):
        failures.append(f"slowest session {_seconds(report.slowest_s)} is over {max_session_s:g} s")
    return failures


if __name__ == "__main__":
    sys.exit(main())
