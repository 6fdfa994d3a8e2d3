"""INT8 models: made by NNCF beside the weights, used only while fresh and checked, refused otherwise."""

import importlib.util
import json
import sys

import numpy as np
import pytest
from test_export import make_tiny_model, requires_openvino
from test_runtimes import write_checks

from seg_core import quantize as quantize_cli
from seg_core.core.config import WEIGHTS_FILE
from seg_core.runtime import checks, export, int8, quantize
from seg_core.runtime.checks import plan
from seg_core.runtime.engines import PrecisionRefusedError
from seg_core.runtime.predictor import UNetPredictor
from seg_core.runtime.registry import load_predictor

requires_nncf = pytest.mark.skipif(importlib.util.find_spec("nncf") is None, reason="NNCF is not installed")


def photos(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (48 + 8 * k, 64, 3), dtype=np.uint8) for k in range(count)]


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """A tiny model folder with its INT8 version, and a check file that passed it."""
    root = tmp_path_factory.mktemp("q")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(export.CACHE_ENV, str(root / "cache"))
        directory = make_tiny_model(root / "models")
        digest = export.folder_digest(directory)
        write_checks(directory.parent, [("tiny", digest, "openvino", "int8", True)])
        quantize.quantize("tiny", photos(6), directory.parent)
        yield directory


@requires_openvino
@requires_nncf
def test_quantising_writes_an_int8_model_of_these_weights_and_forgets_its_old_check(quantized):
    folder = int8.int8_folder(quantized)
    meta = json.loads((folder / int8.META_FILE).read_text())
    assert meta["digest"] == export.folder_digest(quantized) and meta["calibration_photos"] == 6
    assert int8.int8_model(quantized) == folder / export.OPENVINO_XML
    assert checks.read_checks(quantized.parent).empty  # the new model must pass the check again


@requires_openvino
@requires_nncf
def test_the_int8_predictor_keeps_the_photo_size_and_range(quantized, monkeypatch, tmp_path):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "cache"))
    predictor = UNetPredictor(quantized, "openvino", "int8")
    assert predictor.info()["precision"] == "int8"
    photo = photos(1, seed=3)[0]
    prob = predictor.predict_proba(photo)
    float_prob = UNetPredictor(quantized, "openvino", "fp32").predict_proba(photo)
    assert prob.shape == photo.shape[:2] and prob.dtype == np.float32
    assert prob.min() >= 0.0 and prob.max() <= 1.0
    assert np.abs(prob - float_prob).mean() < 0.05  # a quantised copy of the same network, not another one


@requires_openvino
@requires_nncf
def test_auto_picks_int8_only_once_checked_and_while_fresh(quantized, monkeypatch, tmp_path):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "cache"))
    models_dir, digest = quantized.parent, export.folder_digest(quantized)
    assert plan("tiny", digest, "openvino", "auto", models_dir) == [("openvino", "fp32")]
    write_checks(models_dir, [("tiny", digest, "openvino", "int8", True)])
    assert plan("tiny", digest, "auto", "auto", models_dir)[0] == ("openvino", "int8")
    assert load_predictor("tiny", models_dir).info()["precision"] == "int8"
    # New weights: the INT8 model is stale, so neither auto nor an explicit request uses it.
    weights = quantized / WEIGHTS_FILE
    original = weights.read_bytes()
    try:
        weights.write_bytes(original + b"\0")
        new = export.folder_digest(quantized)
        write_checks(models_dir, [("tiny", new, "openvino", "int8", True)])
        assert not int8.has_int8(quantized)
        assert plan("tiny", new, "openvino", "auto", models_dir) == [("openvino", "fp32")]
        with pytest.raises(int8.QuantizeError, match="made from other weights"):
            int8.int8_model(quantized)
    finally:
        weights.write_bytes(original)
        checks.check_path(models_dir).unlink()


def test_a_model_without_an_int8_version_is_refused_int8(tmp_path, monkeypatch):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "cache"))
    directory = make_tiny_model(tmp_path / "models")
    assert not int8.has_int8(directory)
    with pytest.raises(int8.QuantizeError, match="has no INT8 version; run `python -m seg_core.quantize"):
        int8.int8_model(directory)
    with pytest.raises(PrecisionRefusedError, match="keras runtime runs fp32"):
        UNetPredictor(directory, "keras", "int8")


def test_quantising_needs_nncf_and_calibration_photos(tmp_path, monkeypatch):
    directory = make_tiny_model(tmp_path / "models")
    with pytest.raises(int8.QuantizeError, match="no calibration photos"):
        quantize.quantize("tiny", [], directory.parent)
    monkeypatch.setitem(sys.modules, "nncf", None)
    with pytest.raises(int8.QuantizeError, match="needs NNCF"):
        quantize.quantize("tiny", photos(2), directory.parent)


def test_cli_help():
    with pytest.raises(SystemExit) as exc:
        quantize_cli.main(["--help"])
    assert exc.value.code == 0
