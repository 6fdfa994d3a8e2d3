"""The HTTP API as users run it: one real uvicorn process on a free port, and a bounded load test.

``python -m pytest tests/test_serve_live.py -s`` prints the load test's latencies.
"""

import io
import socket
import subprocess
import sys
import threading
import time

import httpx2 as httpx
import numpy as np
import pytest
from bad_inputs import NOT_A_PHOTO
from PIL import Image

from seg_core.core.metrics import confusion, iou
from seg_core.core.paths import REPO_ROOT
from seg_core.runtime.base import DEFAULT_MODEL
from seg_core.runtime.registry import load_predictor, segment

PHOTO = REPO_ROOT / "samples" / "images" / "0010010.jpg"
CLIENTS, REQUESTS_PER_CLIENT = 8, 25
START_TIMEOUT_S, REQUEST_TIMEOUT_S = 180, 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Base URL of a running ``python -m seg_core.serve``; the process is stopped afterwards."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("serve") / "server.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "seg_core.serve", "--host", "127.0.0.1", "--port", str(port)]
            + ["--preload", DEFAULT_MODEL, "--log-level", "warning"],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            assert process.poll() is None, f"the server exited: {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready after {START_TIMEOUT_S} s: {log_path.read_text()[-3000:]}"
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def segment_request(client: httpx.Client, url: str, data: bytes, name: str = "photo.jpg") -> httpx.Response:
    return client.post(f"{url}/v1/segment", files={"file": (name, data, "image/jpeg")}, timeout=REQUEST_TIMEOUT_S)


def test_real_server_mask_equals_the_library_mask(server):
    url, _ = server
    with httpx.Client() as client:
        answer = segment_request(client, url, PHOTO.read_bytes())
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    mask = np.asarray(Image.open(io.BytesIO(answer.content))) > 0
    _, expected = segment(PHOTO, load_predictor(DEFAULT_MODEL))
    assert mask.shape == expected.shape and iou(confusion(mask, expected)) >= 0.999


def test_real_server_refuses_a_text_file_with_json(server):
    url, _ = server
    with httpx.Client() as client:
        answer = segment_request(client, url, NOT_A_PHOTO, "notes.jpg")
    assert answer.status_code == 422 and answer.headers["content-type"] == "application/json"
    assert answer.json() == {"detail": "not a readable image (unrecognised file format)"}


def test_concurrent_clients_get_every_mask_and_the_server_survives(server):
    url, process = server
    data = PHOTO.read_bytes()
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def client_loop() -> None:
        with httpx.Client() as client:
            for _ in range(REQUESTS_PER_CLIENT):
                started = time.perf_counter()
                try:
                    answer = segment_request(client, url, data)
                    ok = answer.status_code == 200 and answer.content.startswith(b"\x89PNG")
                    problem = None if ok else f"{answer.status_code}: {answer.text[:200]}"
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if problem:
                        failures.append(problem)

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUESTS_PER_CLIENT * REQUEST_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert len(latencies) == CLIENTS * REQUESTS_PER_CLIENT
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    print(
        f"\nload test: {CLIENTS} clients x {REQUESTS_PER_CLIENT} requests, {PHOTO.name}, 0 errors; "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, {len(latencies) / elapsed:.1f} requests/s"
    )
    assert process.poll() is None
    with httpx.Client() as client:
        assert client.get(f"{url}/health", timeout=10).status_code == 200
