"""python -m seg_core.serve: the HTTP API under uvicorn (see :mod:`seg_core.service.api`)."""

from __future__ import annotations

import argparse
import logging
import sys

from seg_core.runtime.registry import available_predictors, trained_models
from seg_core.service.admission import AdmissionSettingError, max_jobs
from seg_core.service.api import ALL_MODELS, create_app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m seg_core.serve",
        description="Serve the Wingmask HTTP API (documentation at /docs once it runs).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--preload",
        nargs="+",
        default=[ALL_MODELS],
        help="models to load before /health turns 200 (default: all trained U-Nets); others load on first use",
    )
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=None,
        help="photos processed at once (default: the WINGMASK_MAX_JOBS setting, else 2)",
    )
    parser.add_argument("--max-queue", type=int, default=32, help="requests that may wait for a slot (default 32)")
    parser.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    args = parser.parse_args(argv)
    preload = trained_models() if args.preload == [ALL_MODELS] else args.preload
    unknown = [name for name in preload if name not in available_predictors()]
    if unknown:
        parser.error(f"unknown model {unknown[0]!r}; available: {', '.join(available_predictors())}")
    try:
        max_concurrent = max_jobs() if args.max_concurrent is None else args.max_concurrent
    except AdmissionSettingError as exc:
        parser.error(str(exc))
    if max_concurrent < 1 or args.max_queue < 0:
        parser.error("--max-concurrent must be at least 1 and --max-queue at least 0")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(preload, max_concurrent, args.max_queue)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
