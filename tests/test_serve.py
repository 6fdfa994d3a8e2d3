"""The HTTP API through FastAPI's TestClient: every route, every row of the bad-input matrix, limits, errors."""

import io
import subprocess
import sys
import threading
import time
import tomllib

import numpy as np
import pytest
from bad_inputs import NOT_A_PHOTO, cases, large_case
from fastapi.testclient import TestClient
from PIL import Image

from seg_core import serve as serve_cli
from seg_core.core.imaging import load_image, load_mask
from seg_core.core.metrics import confusion, iou
from seg_core.core.paths import REPO_ROOT
from seg_core.outputs import annotations
from seg_core.runtime.base import DEFAULT_MODEL, ModelLoadError
from seg_core.runtime.engines import RUNTIME_PRECISIONS
from seg_core.runtime.registry import available_predictors, load_predictor, segment, trained_models
from seg_core.service import api as serve

PHOTO = REPO_ROOT / "samples" / "images" / "0010010.jpg"
TRUTH = REPO_ROOT / "samples" / "masks" / "0010010_seg0.png"
MATRIX_MODEL = "unet-light"  # the model the library's bad-input tests use, with the same IoU bars
GOOD = [c for c in cases() if c.valid]
BAD = [c for c in cases() if not c.valid]


def wait_ready(client: TestClient, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/health").status_code != 200:
        assert time.monotonic() < deadline, client.get("/health").json()
        time.sleep(0.1)


@pytest.fixture(scope="module")
def client():
    with TestClient(serve.create_app(), raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


def post(client: TestClient, data: bytes, name: str = "photo.jpg", **params):
    return client.post("/v1/segment", params=params, files={"file": (name, data, "application/octet-stream")})


def png(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def refused(response, status: int) -> str:
    """The message of a refusal: a JSON body {"detail": ...} without a traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert "Traceback" not in response.text
    return response.json()["detail"]


def test_health_is_ok_once_the_models_are_loaded(client):
    answer = client.get("/health")
    assert answer.status_code == 200 and answer.json() == {"status": "ok", "models": [DEFAULT_MODEL]}


def test_health_says_loading_until_the_models_are_ready(monkeypatch):
    release = threading.Event()
    monkeypatch.setattr(serve, "cached_predictor", lambda name: release.wait(60) and load_predictor("otsu"))
    with TestClient(serve.create_app(preload=["otsu"])) as client:
        assert client.get("/health").status_code == 503
        assert client.get("/health").json()["status"] == "loading"
        release.set()
        wait_ready(client, 30)


def test_health_reports_a_model_that_does_not_load(monkeypatch):
    def broken(name):
        raise ModelLoadError(f"model {name!r}: model.weights.h5 is missing")

    monkeypatch.setattr(serve, "cached_predictor", broken)
    with TestClient(serve.create_app(preload=["unet-bce"])) as client:
        deadline = time.monotonic() + 30
        while client.get("/health").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = client.get("/health")
        assert answer.status_code == 503
        assert answer.json() == {"status": "error", "detail": "model 'unet-bce': model.weights.h5 is missing"}


def test_models_lists_every_model_with_scores_latency_and_runtime(client):
    models = client.get("/v1/models").json()
    assert [m["name"] for m in models] == available_predictors()
    best = next(m for m in models if m["name"] == DEFAULT_MODEL)
    assert best["default"] and best["kind"] == "unet" and best["recipe"]
    assert 0.9 < best["test_iou"] <= 1 and 0.9 < best["test_dice"] <= 1 and best["median_latency_ms"] > 0
    runtime, precision = best["runtime"].split()
    assert best["loaded"] and precision in RUNTIME_PRECISIONS[runtime]
    otsu = next(m for m in models if m["name"] == "otsu")
    assert otsu["kind"] == "baseline" and not otsu["default"] and otsu["runtime"].startswith("opencv ")
    assert sum(m["default"] for m in models) == 1


def test_mask_equals_the_library_mask(client):
    mask = png(post(client, PHOTO.read_bytes())) > 0
    _, expected = segment(PHOTO, load_predictor(DEFAULT_MODEL))
    assert mask.shape == expected.shape
    assert iou(confusion(mask, expected)) >= 0.999
    assert iou(confusion(mask, load_mask(TRUTH))) > 0.8


def test_cutout_is_the_photo_with_the_mask_as_alpha(client):
    rgba = png(post(client, PHOTO.read_bytes(), output="cutout"))
    mask = png(post(client, PHOTO.read_bytes())) > 0
    assert rgba.shape == (*mask.shape, 4)
    assert np.array_equal(rgba[..., 3] == 255, mask) and set(np.unique(rgba[..., 3])) <= {0, 255}
    assert np.array_equal(rgba[..., :3], load_image(PHOTO))


def test_json_has_a_coco_rle_and_measurements_per_butterfly(client):
    mask = png(post(client, PHOTO.read_bytes())) > 0
    answer = post(client, PHOTO.read_bytes(), output="json", pixels_per_mm=2)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert (body["model"], body["threshold"], body["height"], body["width"]) == (DEFAULT_MODEL, 0.5, *mask.shape)
    assert body["category"]["name"] == "butterfly" and body["butterflies"]
    union = np.zeros_like(mask)
    for number, butterfly in enumerate(body["butterflies"], start=1):
        region = annotations.decode_segmentation(butterfly["segmentation"], *mask.shape)
        assert butterfly["id"] == number and butterfly["area"] == region.sum()
        x, y, width, height = butterfly["bbox"]
        assert region[y : y + height, x : x + width].sum() == region.sum()
        assert 0.5 <= butterfly["score"] <= 1 and butterfly["wingspan_px"] > 0
        assert butterfly["wingspan_mm"] == pytest.approx(butterfly["wingspan_px"] / 2, abs=0.01)
        assert butterfly["area_mm2"] == pytest.approx(butterfly["area"] / 4, abs=1e-3)
        union |= region
    assert np.array_equal(union, mask)
    assert set(body["timings"]) == {"decode_ms", "inference_ms", "total_ms"}


def test_json_without_a_scale_has_no_millimetres(client):
    body = post(client, PHOTO.read_bytes(), output="json").json()
    assert all(b["area_mm2"] is None and b["wingspan_mm"] is None for b in body["butterflies"])


def test_threshold_moves_the_mask(client):
    loose = png(post(client, PHOTO.read_bytes(), threshold=0.05)) > 0
    strict = png(post(client, PHOTO.read_bytes(), threshold=0.95)) > 0
    assert strict.sum() < loose.sum()


def test_response_carries_timings_and_model(client):
    answer = post(client, PHOTO.read_bytes(), model="otsu")
    assert answer.headers["x-model"] == "otsu"
    assert [part.split(";")[0] for part in answer.headers["server-timing"].split(", ")] == [
        "decode",
        "inference",
        "total",
    ]


@pytest.mark.parametrize("model", [name for name in available_predictors() if name != DEFAULT_MODEL])
def test_every_model_answers(client, model):
    mask = png(post(client, PHOTO.read_bytes(), model=model)) > 0
    truth = load_mask(TRUTH)
    assert mask.shape == truth.shape
    if model in trained_models():
        assert iou(confusion(mask, truth)) > 0.8


@pytest.mark.parametrize("bad", BAD, ids=lambda c: c.name)
def test_bad_upload_gets_a_4xx_with_the_library_message(client, bad):
    detail = refused(post(client, bad.data, bad.filename, model=MATRIX_MODEL), 422)
    assert bad.error in detail


@pytest.mark.parametrize("good", [*GOOD, large_case()], ids=lambda c: c.name)
def test_awkward_upload_gets_a_correct_mask(client, good):
    mask = png(post(client, good.data, good.filename, model=MATRIX_MODEL)) > 0
    assert mask.shape == good.shape
    if good.truth is not None:
        assert iou(confusion(mask, good.truth)) >= good.min_iou


def test_unknown_model_is_404_with_the_names(client):
    detail = refused(post(client, PHOTO.read_bytes(), model="no-such-model"), 404)
    assert detail.startswith("unknown model 'no-such-model'; available: ")
    assert all(name in detail for name in available_predictors())


@pytest.mark.parametrize(
    "params",
    [{"threshold": 1.5}, {"threshold": "high"}, {"output": "gif"}, {"output": "json", "pixels_per_mm": 0}],
    ids=["threshold", "not_a_number", "output", "scale"],
)
def test_invalid_query_is_422(client, params):
    assert refused(post(client, PHOTO.read_bytes(), **params), 422)


def test_missing_file_is_422(client):
    detail = refused(client.post("/v1/segment"), 422)
    assert detail[0]["loc"] == ["body", "file"]


def test_upload_over_the_limit_is_413_by_declared_length(client):
    detail = refused(post(client, b"\0" * (serve.MAX_UPLOAD_BYTES + 1)), 413)
    assert f"larger than {serve.MAX_UPLOAD_MB} MB" in detail


def test_upload_over_the_limit_is_413_when_streamed(client):
    def chunks():
        for _ in range(serve.MAX_UPLOAD_MB + 2):
            yield b"\0" * 2**20

    headers = {"content-type": "multipart/form-data; boundary=wingmask"}
    assert refused(client.post("/v1/segment", content=chunks(), headers=headers), 413)


def test_upload_limit_matches_the_dashboard():
    config = tomllib.loads((REPO_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["maxUploadSize"] == serve.MAX_UPLOAD_MB


def test_a_model_that_fails_to_load_is_503(client, monkeypatch):
    def broken(name):
        raise ModelLoadError(f"model {name!r} could not be loaded: bad weights")

    monkeypatch.setattr(serve, "cached_predictor", broken)
    assert refused(post(client, PHOTO.read_bytes()), 503) == f"model {DEFAULT_MODEL!r} could not be loaded: bad weights"


def test_a_bug_is_a_json_500_without_traceback(client, monkeypatch):
    def bug(*args):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(serve, "_segment", bug)
    detail = refused(post(client, PHOTO.read_bytes()), 500)
    assert "RuntimeError" in detail and "secret internals" not in detail


def test_requests_over_the_queue_are_503_and_the_rest_complete(monkeypatch):
    release, started = threading.Event(), threading.Event()

    def slow(*args):
        started.set()
        release.wait(30)
        return serve.Response(b"done", media_type="text/plain")

    monkeypatch.setattr(serve, "_segment", slow)
    with TestClient(serve.create_app(preload=["otsu"], max_concurrent=1, max_queue=0)) as client:
        first = {}
        worker = threading.Thread(target=lambda: first.update(answer=post(client, NOT_A_PHOTO)))
        worker.start()
        assert started.wait(30)
        busy = post(client, NOT_A_PHOTO)
        release.set()
        worker.join(30)
    assert refused(busy, 503) == "the server is busy; try again shortly" and busy.headers["retry-after"] == "1"
    assert first["answer"].status_code == 200 and first["answer"].content == b"done"


def test_docs_and_openapi_describe_the_routes(client):
    assert client.get("/docs").status_code == 200
    schema = client.get("/openapi.json").json()
    assert {"/health", "/v1/models", "/v1/segment"} <= set(schema["paths"])
    params = {p["name"] for p in schema["paths"]["/v1/segment"]["post"]["parameters"]}
    assert {"model", "threshold", "output"} <= params
    assert client.get("/", follow_redirects=False).headers["location"] == "/docs"


def test_cli_refuses_an_unknown_preload_model(capsys):
    with pytest.raises(SystemExit) as stopped:
        serve_cli.main(["--preload", "no-such-model"])
    assert stopped.value.code == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_help_runs_as_a_module():
    done = subprocess.run(
        [sys.executable, "-m", "seg_core.serve", "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert done.returncode == 0 and "python -m seg_core.serve" in done.stdout and "--preload" in done.stdout
