"""INT8 versions of the trained U-Nets, made once with NNCF and shipped beside the weights.

OpenVINO runs 8-bit convolutions with AVX512-VNNI or AMX, faster than BF16 on
such CPUs. Quantising needs calibration photos (the Leeds train split), which
a user's machine does not have, so the quantised model is made here and
committed: ``models/<name>/int8/`` holds ``model.xml``, ``model.bin`` and
``quantize.json`` (the digest of the weights it came from and how it was
made). A quantised model whose digest differs from the weights beside it is
stale and never used. NNCF is only needed to make one (``requirements-quantize.txt``)::

    python -m seg_core.quantize --models unet-best unet-light

Writing a new INT8 model drops that model's INT8 rows from
``models/precision_check.csv``: it must pass the check again
(``python -m seg_core.runtimes``) before ``auto`` picks it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from seg_core.data import DATA_ENV, DatasetNotFoundError, load_split_photos
from seg_core.export import OPENVINO_XML, folder_digest, openvino_export
from seg_core.imaging import preprocess
from seg_core.inference import MODELS_DIR, ModelLoadError, UNetPredictor, trained_models

INT8_DIR = "int8"
META_FILE = "quantize.json"


class QuantizeError(ModelLoadError):
    """A model could not be quantised, or its INT8 model is missing or stale."""


def int8_folder(directory: str | os.PathLike) -> Path:
    """Where a model folder keeps its INT8 version."""
    return Path(directory) / INT8_DIR


def int8_meta(directory: str | os.PathLike) -> dict | None:
    """The ``quantize.json`` of a model folder's INT8 version (None when there is no readable one)."""
    try:
        return json.loads((int8_folder(directory) / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def int8_model(directory: str | os.PathLike, digest: str | None = None) -> Path:
    """The INT8 ``model.xml`` made from the weights in ``directory``.

    ``digest`` is :func:`seg_core.export.folder_digest` of ``directory`` when
    the caller has it already (hashing the weights again costs a read of them).

    Raises:
        QuantizeError: there is none, or it was made from other weights.
    """
    folder = int8_folder(directory)
    name = Path(directory).name
    fix = f"run `python -m seg_core.quantize --models {name}`"
    meta = int8_meta(directory)
    if meta is None:
        raise QuantizeError(f"model {name!r} has no INT8 version; {fix}")
    current = digest if digest is not None else folder_digest(directory)
    if meta.get("digest") != current or not (folder / OPENVINO_XML).is_file():
        raise QuantizeError(f"model {name!r}: its INT8 version was made from other weights; {fix}")
    return folder / OPENVINO_XML


def has_int8(directory: str | os.PathLike, digest: str | None = None) -> bool:
    """Whether ``directory`` holds an INT8 version made from its current weights (``digest``: as :func:`int8_model`)."""
    try:
        int8_model(directory, digest)
    except (QuantizeError, OSError):
        return False
    return True


def kept_float(model) -> list[str]:
    """Names of the convolutions that stay in float: the network's first and last.

    The first sees raw pixel values and the last turns features into the
    probability map; both are cheap (3 input channels; 1 output channel).
    """
    convolutions = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"]
    if not convolutions:
        raise QuantizeError("the model has no convolution to quantise")
    return sorted({convolutions[0], convolutions[-1]}, key=convolutions.index)


def quantize(
    name: str,
    calibration: list[np.ndarray],
    models_dir: str | os.PathLike = MODELS_DIR,
) -> Path:
    """Quantise ``models/<name>`` to INT8 with NNCF and write ``models/<name>/int8/``.

    Chosen on unet-best's validation photos (masks of the default path against Keras
    FP32; the check allows 0.1% of pixels to differ): everything quantised
    but the last convolution, with NNCF's fast bias correction, changed
    0.171% of pixels; keeping the first convolution in float too, 0.137%;
    the full bias correction instead, 0.123%; both, 0.052% (300 calibration
    photos) or 0.043% (the whole train split, the default).

    Args:
        name: trained model name.
        calibration: photos (RGB uint8, any size) whose activations set the ranges.
        models_dir: folder of trained U-Nets.

    Returns:
        The INT8 folder.

    Raises:
        QuantizeError: NNCF is not installed, no calibration photo, or writing failed.
    """
    if not calibration:
        raise QuantizeError("no calibration photos")
    try:
        import nncf
        import openvino as ov
    except ImportError as exc:
        raise QuantizeError(f"quantising needs NNCF: pip install -r requirements-quantize.txt ({exc})") from exc
    directory = Path(models_dir) / name
    predictor = UNetPredictor(directory, "keras", "fp32")
    size = predictor.config.input_size
    digest = folder_digest(directory)
    export = openvino_export(name, digest, size, lambda: predictor.model)
    model = ov.Core().read_model(str(export / OPENVINO_XML))
    floats = kept_float(model)
    samples = [preprocess(photo, size)[None] for photo in calibration]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples),
        subset_size=len(samples),
        preset=nncf.QuantizationPreset.MIXED,
        fast_bias_correction=False,
        ignored_scope=nncf.IgnoredScope(names=floats),
    )
    meta = {
        "model": name,
        "digest": digest,
        "input_size": size,
        "calibration_photos": len(samples),
        "preset": "mixed",
        "bias_correction": "full",
        "kept_float": floats,
        "nncf": nncf.__version__,
        "openvino": ov.get_version(),
    }
    final = int8_folder(directory)
    staging = Path(tempfile.mkdtemp(prefix=".int8.", dir=directory))
    try:
        ov.save_model(quantized, str(staging / OPENVINO_XML), compress_to_fp16=False)
        (staging / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
        final.chmod(0o755)  # mkdtemp made it private; the folder is committed and shared
    except OSError as exc:
        raise QuantizeError(f"cannot write {final}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _forget_checks(name, Path(models_dir))
    return final


def _forget_checks(name: str, models_dir: Path) -> None:
    """Drop ``name``'s INT8 rows from the precision check file: the new model is unchecked."""
    from seg_core.runtimes import check_path, read_checks

    checks = read_checks(models_dir)
    stale = (checks["model"] == name) & (checks["precision"] == "int8")
    if stale.any():
        checks[~stale].to_csv(check_path(models_dir), index=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m seg_core.quantize",
        description="Make the INT8 version of trained U-Nets (NNCF post-training quantisation on train photos).",
    )
    parser.add_argument("--models", nargs="+", help="trained model names (default: all)")
    parser.add_argument("--data", help=f"Leeds-layout dataset folder (default: ${DATA_ENV} or ../shared)")
    parser.add_argument("--photos", type=int, help="calibrate on the train split's first N photos (default: all)")
    parser.add_argument("--models-dir", default=str(MODELS_DIR), help="folder of trained U-Nets")
    args = parser.parse_args(argv)
    try:
        names = args.models or trained_models(args.models_dir)
        _, photos, _ = load_split_photos(args.data, "train", limit=args.photos)
        if not photos:
            raise DatasetNotFoundError("no readable train photos")
        for name in names:
            folder = quantize(name, photos, args.models_dir)
            print(
                f"{name}: INT8 model in {folder} ({len(photos)} calibration photos); "
                f"check it with `python -m seg_core.runtimes --models {name}`"
            )
    except (ModelLoadError, DatasetNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
