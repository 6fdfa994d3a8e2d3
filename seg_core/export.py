"""python -m seg_core.export: write a trained U-Net in another runtime's format (see :mod:`seg_core.runtime.export`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from seg_core.core.config import BlendConfig
from seg_core.core.paths import MODELS_DIR
from seg_core.runtime.base import ModelLoadError
from seg_core.runtime.export import FORMATS, ExportError, export_model
from seg_core.runtime.predictor import UNetPredictor
from seg_core.runtime.registry import trained_models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.export",
        description="Export a trained U-Net through Keras' Model.export (batch size left dynamic). "
        "The library's own OpenVINO copies are cached automatically; this is for deploying elsewhere. "
        "onnx needs the tf2onnx and onnx packages.",
    )
    parser.add_argument("--model", required=True, help="trained model name (a folder of --models-dir)")
    parser.add_argument("--format", required=True, choices=list(FORMATS), help="export format")
    parser.add_argument("--out", type=Path, help="output folder (default: exports/<model>-<format>)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="folder of trained U-Nets")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.model not in trained_models(args.models_dir):
        parser.error(f"unknown model {args.model!r}; trained models: {', '.join(trained_models(args.models_dir))}")
    out = args.out or Path("exports") / f"{args.model}-{args.format}"
    target = out / FORMATS[args.format][0]
    if target.exists():
        parser.exit(2, f"error: {target} already exists\n")
    try:
        predictor = UNetPredictor(args.models_dir / args.model, runtime="keras")
        if isinstance(predictor.config, BlendConfig):
            # Its graph returns the members' two maps; the rule that makes them one runs outside it.
            raise ExportError(f"{args.model} is a blend: export its two members (its card names them)")
        out.mkdir(parents=True, exist_ok=True)
        export_model(predictor.model, args.format, target)
    except (ModelLoadError, ExportError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":
    main()
