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

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from seg_core.core.config import BlendConfig
from seg_core.core.imaging import preprocess
from seg_core.core.paths import MODELS_DIR
from seg_core.runtime.checks import check_path, read_checks
from seg_core.runtime.export import OPENVINO_XML, folder_digest, openvino_export
from seg_core.runtime.int8 import META_FILE, QuantizeError, int8_folder
from seg_core.runtime.predictor import UNetPredictor


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
    if isinstance(predictor.config, BlendConfig):
        # OpenVINO reads the blend's whole graph wrongly (see runtime.engines.BlendRuntime).
        raise QuantizeError(f"{name} is a blend of two networks; quantise its members instead")
    size = predictor.config.input_size
    digest = folder_digest(directory)
    export = openvino_export(name, digest, size, lambda: predictor.model)
    model = ov.Core().read_model(str(export / OPENVINO_XML))
    floats = kept_float(model)
    samples = [preprocess(photo, size, predictor.config.resample)[None] for photo in calibration]
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
    checks = read_checks(models_dir)
    stale = (checks["model"] == name) & (checks["precision"] == "int8")
    if stale.any():
        checks[~stale].to_csv(check_path(models_dir), index=False)
