"""HTTP API: masks, cut-outs and COCO annotations for programs that have no browser.

    python -m seg_core.serve --host 127.0.0.1 --port 8000

Routes (interactive documentation at ``/docs``):

- ``GET /health``: 200 once the preloaded models are loaded and warmed up, 503 before.
- ``GET /v1/models``: every model with its kind, recipe, test IoU/Dice, median latency and runtime.
- ``POST /v1/segment``: a photo as the multipart field ``file``; query ``model``,
  ``threshold`` and ``output`` (``mask`` PNG, ``cutout`` RGBA PNG, or ``json``).

The API applies the dashboard's limits (uploads up to :data:`MAX_UPLOAD_MB` MB,
photos up to 50 megapixels and 12,000 pixels a side) and answers bad input
with a 4xx JSON body ``{"detail": message}`` carrying the library's message.
At most ``max_concurrent`` photos are processed at once (default
``WINGMASK_MAX_JOBS``, 2; a photo over 25 megapixels counts as two) and at
most ``max_queue`` more wait in arrival order (:mod:`seg_core.service.admission`);
beyond that the API answers 503 at once, so a burst of large uploads cannot
exhaust memory. Models come from the library's
process-wide cache (:func:`seg_core.runtime.predictor.cached_predictor`).
"""

from __future__ import annotations

import enum
import importlib.metadata
import logging
import math
import threading
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from seg_core.core import VERSION
from seg_core.core.imaging import MAX_PIXELS, MAX_SIDE, InvalidImageError, load_image, to_png_bytes
from seg_core.evaluation.results import (
    PER_IMAGE,
    ResultsFormatError,
    ResultsMissingError,
    load_bench,
    load_eval,
    model_table,
)
from seg_core.outputs import annotations
from seg_core.outputs.postprocess import cutout
from seg_core.runtime.base import DEFAULT_MODEL, InferenceOptions, ModelLoadError, Predictor, threshold_mask
from seg_core.runtime.catalogue import model_catalogue
from seg_core.runtime.registry import available_predictors, cached_predictor
from seg_core.service.admission import Admission, Busy, max_jobs, photo_cost

log = logging.getLogger("wingmask.serve")

#: Largest upload, in MB of 2**20 bytes: the dashboard's ``server.maxUploadSize``.
MAX_UPLOAD_MB = 50
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 2**20
#: Room for the multipart envelope (boundaries, part headers) around the file itself.
_ENVELOPE_BYTES = 64 * 1024
#: Bytes read before admission to learn a photo's size from its header (JPEG's EXIF may fill 64 KB).
_HEADER_BYTES = 128 * 1024
ALL_MODELS = "all"
TOO_LARGE = f"the file is larger than {MAX_UPLOAD_MB} MB; uploads are limited to {MAX_UPLOAD_MB} MB"
PHOTO_LIMITS = (
    f"JPEG, PNG, WebP, BMP, TIFF or GIF (first frame); at most {MAX_UPLOAD_MB} MB, "
    f"{MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE:,} pixels a side"
)


class Output(enum.StrEnum):
    """What ``POST /v1/segment`` returns."""

    mask = "mask"
    cutout = "cutout"
    json = "json"


class UploadLimit:
    """ASGI middleware that refuses request bodies over a byte limit with 413, before they are stored.

    A declared ``Content-Length`` over the limit is refused without reading;
    a body sent in chunks is counted as it arrives.
    """

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": TOO_LARGE}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # FastAPI passes an HTTPException raised while reading the body on unchanged.
                raise HTTPException(413, TOO_LARGE)
            return message

        await self.app(scope, counted, send)


@dataclass
class ServerState:
    """What the routes share: readiness, and the gate that bounds concurrent work."""

    preload: list[str]
    gate: Admission
    ready: threading.Event = field(default_factory=threading.Event)
    load_error: str | None = None
    loaded: dict[str, Predictor] = field(default_factory=dict)

    def predictor(self, name: str) -> Predictor:
        """The shared instance of a model, remembered so ``/v1/models`` can say how it runs."""
        self.loaded[name] = cached_predictor(name)
        return self.loaded[name]

    def load_models(self) -> None:
        """Load and warm up the preloaded models (runs in a thread at start-up)."""
        try:
            for name in self.preload:
                started = time.perf_counter()
                # One small photo traces the network's graph, so the first request is not slow.
                self.predictor(name).predict_proba(np.zeros((32, 32, 3), dtype=np.uint8))
                log.info("model %s ready in %.1f s", name, time.perf_counter() - started)
        except ModelLoadError as exc:
            self.load_error = str(exc)
            log.error("model could not be loaded: %s", exc)
            return
        self.ready.set()


def _runtime(kind: str, predictor: Predictor | None) -> str | None:
    """How a model runs here: the loaded U-Net's runtime and precision; OpenCV for the baselines."""
    if kind != "unet":
        return f"opencv {importlib.metadata.version('opencv-python-headless')}"
    if predictor is None:
        return None
    info = predictor.info()
    return f"{info.get('runtime', 'keras')} {info.get('precision', 'fp32')}"


def _optional(value) -> float | int | str | None:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def model_list(loaded: dict[str, Predictor]) -> list[dict]:
    """Every model with kind, recipe, size, test IoU/Dice at 0.5, median latency and runtime.

    Scores and latencies come from the committed results files; a missing or
    unreadable file leaves those fields null instead of failing the route.
    ``runtime`` (e.g. ``"keras fp32"``) is known for baselines and for the
    U-Nets in ``loaded``; it is null for a U-Net not loaded yet.
    """
    results = []
    for reader in (load_eval, load_bench):
        try:
            results.append(reader())
        except (ResultsMissingError, ResultsFormatError) as exc:
            log.warning("results unavailable: %s", exc)
            results.append(None)
    evaluation, bench = results
    if bench is not None:
        # One latency per model: that of the runtime and precision load_predictor picks.
        bench = bench[bench["default"]]
    table = model_table(model_catalogue(), evaluation, bench, threshold=0.5, mode=PER_IMAGE)
    return [
        {
            "name": row["model"],
            "kind": row["kind"],
            "default": row["model"] == DEFAULT_MODEL,
            "recipe": row["recipe"],
            "parameters": _optional(row["parameters"]),
            "file_mb": _optional(row["file_mb"]),
            "test_iou": _optional(row["iou"]),
            "test_dice": _optional(row["dice"]),
            "median_latency_ms": _optional(row["latency_median_ms"]),
            "loaded": row["model"] in loaded,
            "runtime": _runtime(row["kind"], loaded.get(row["model"])),
        }
        for row in table.to_dict("records")
    ]


def _segment(
    data: bytes,
    predictor: Predictor,
    threshold: float,
    output: Output,
    options: InferenceOptions,
    pixels_per_mm: float | None,
) -> Response:
    """Decode, predict and encode one upload (runs in a worker thread)."""
    model = predictor.name
    started = time.perf_counter()
    image = load_image(data)
    decoded = time.perf_counter()
    prob = predictor.predict_proba(image, options)
    predicted = time.perf_counter()
    mask = threshold_mask(prob, threshold)
    timings = {"decode_ms": (decoded - started) * 1e3, "inference_ms": (predicted - decoded) * 1e3}
    if output is Output.json:
        body = {"model": model, "threshold": threshold, "width": image.shape[1], "height": image.shape[0]}
        body["category"] = annotations.CATEGORY
        body["butterflies"] = butterflies(mask, prob, pixels_per_mm)
        body["timings"] = timings | {"total_ms": (time.perf_counter() - started) * 1e3}
        return JSONResponse(body)
    png = to_png_bytes(mask if output is Output.mask else cutout(image, mask))
    timings["total_ms"] = (time.perf_counter() - started) * 1e3
    server_timing = ", ".join(f"{name.removesuffix('_ms')};dur={ms:.1f}" for name, ms in timings.items())
    return Response(png, media_type="image/png", headers={"Server-Timing": server_timing, "X-Model": model})


def butterflies(mask: np.ndarray, prob: np.ndarray, pixels_per_mm: float | None = None) -> list[dict]:
    """One entry per butterfly (connected region): its COCO annotation and its measurements.

    Each entry has ``id`` (1-based, raster order), COCO's ``segmentation``
    (compressed RLE), ``area``, ``bbox`` ([x, y, width, height]), ``iscrowd``,
    ``category_id`` and ``score`` (mean probability), then ``wingspan_px`` and,
    with a scale, ``area_mm2`` and ``wingspan_mm``.
    """
    found = zip(annotations.instances(mask, prob), annotations.measure(mask, pixels_per_mm), strict=True)
    return [
        {
            "id": size.butterfly,
            **coco,
            "wingspan_px": size.wingspan_px,
            "area_mm2": size.area_mm2,
            "wingspan_mm": size.wingspan_mm,
        }
        for coco, size in found
    ]


def create_app(
    preload: Sequence[str] = (DEFAULT_MODEL,), max_concurrent: int | None = None, max_queue: int = 32
) -> FastAPI:
    """The API as an ASGI app.

    Args:
        preload: models loaded (and warmed up) at start-up; ``/health`` turns 200
            when they are ready. Other models load on their first request.
        max_concurrent: photos processed at the same time (default: the
            ``WINGMASK_MAX_JOBS`` setting, see :func:`seg_core.service.admission.max_jobs`).
        max_queue: requests allowed to wait for a slot, served in arrival order; more get 503 at once.
    """
    gate = Admission(max_jobs() if max_concurrent is None else max_concurrent, max_waiting=max_queue)
    state = ServerState(list(preload), gate)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=state.load_models, name="wingmask-preload", daemon=True).start()
        yield

    app = FastAPI(
        title="Wingmask",
        version=VERSION,
        summary="Butterfly segmentation: masks, cut-outs and COCO annotations for photos.",
        lifespan=lifespan,
    )
    app.add_middleware(UploadLimit, max_bytes=MAX_UPLOAD_BYTES + _ENVELOPE_BYTES)

    @app.exception_handler(InvalidImageError)
    async def invalid_image(request: Request, exc: InvalidImageError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ModelLoadError)
    async def model_failed(request: Request, exc: ModelLoadError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path, exc_info=exc)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server log"}, 500)

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    @app.get("/health", summary="200 once the preloaded models are ready, 503 before")
    def health() -> JSONResponse:
        if state.ready.is_set():
            return JSONResponse({"status": "ok", "models": state.preload})
        if state.load_error:
            return JSONResponse({"status": "error", "detail": state.load_error}, 503)
        return JSONResponse({"status": "loading", "models": state.preload}, 503)

    @app.get("/v1/models", summary="Every model: kind, recipe, test IoU/Dice, median latency, runtime")
    def models() -> list[dict]:
        return model_list(state.loaded)

    @app.post(
        "/v1/segment",
        summary="Segment one photo",
        response_class=Response,
        responses={
            200: {
                "content": {"image/png": {}, "application/json": {}},
                "description": "mask or cut-out PNG at the photo's size, or JSON annotations",
            },
            404: {"description": "unknown model (the message lists the available ones)"},
            413: {"description": f"upload over {MAX_UPLOAD_MB} MB"},
            422: {"description": "not a usable photo (unreadable, too many pixels...), or an invalid query"},
            503: {"description": "busy (try again) or the model could not be loaded"},
        },
    )
    async def segment(
        file: Annotated[UploadFile, File(description=f"the photo: {PHOTO_LIMITS}")],
        model: Annotated[str, Query(description="model name, see /v1/models")] = DEFAULT_MODEL,
        threshold: Annotated[float, Query(ge=0.0, le=1.0, description="butterfly probability cut-off")] = 0.5,
        output: Annotated[Output, Query(description="mask PNG, cut-out PNG (alpha), or JSON")] = Output.mask,
        second_look: Annotated[bool, Query(description="re-run on crops around small butterflies")] = True,
        tta: Annotated[bool, Query(description="test-time augmentation: 4 passes, slower")] = False,
        pixels_per_mm: Annotated[
            float | None, Query(gt=0, description="the photo's scale, for measurements in mm (output=json)")
        ] = None,
    ) -> Response:
        if model not in available_predictors():
            raise HTTPException(404, f"unknown model {model!r}; available: {', '.join(available_predictors())}")
        # A photo over 25 megapixels takes two slots (seg_core.service.admission.photo_cost).
        cost = photo_cost(await file.read(_HEADER_BYTES))
        await file.seek(0)
        try:
            # Busy comes only from entering: nothing inside the block asks the gate again.
            async with state.gate.async_slot(cost):
                # Read inside the gate: waiting uploads stay in Starlette's spooled (on-disk) files.
                data = await file.read(MAX_UPLOAD_BYTES + 1)
                if len(data) > MAX_UPLOAD_BYTES:
                    raise HTTPException(413, TOO_LARGE)
                options = InferenceOptions(second_look=second_look, tta=tta)
                # Loading a model that is not loaded yet happens in the worker thread too.
                return await run_in_threadpool(
                    lambda: _segment(data, state.predictor(model), threshold, output, options, pixels_per_mm)
                )
        except Busy:
            raise HTTPException(503, "the server is busy; try again shortly", headers={"Retry-After": "1"}) from None

    return app
