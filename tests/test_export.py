"""Exports: the CLI's formats, and the library's OpenVINO cache (named by the weights, written atomically)."""

from pathlib import Path

import numpy as np
import pytest

from seg_core import export as export_cli
from seg_core.core.config import WEIGHTS_FILE, save_config
from seg_core.models.registry import model_config
from seg_core.models.unet import build_unet
from seg_core.runtime import export
from seg_core.runtime.engines import openvino_available
from seg_core.runtime.predictor import UNetPredictor

requires_openvino = pytest.mark.skipif(not openvino_available(), reason="openvino is not installed")
TINY_ARCH = "unet8"
TINY_SIZE = 64


def make_tiny_model(models_dir: Path, name: str = "tiny", seed: int = 0) -> Path:
    """A trained-model folder holding a random 64-pixel U-Net (weights drawn from ``seed``)."""
    import keras

    keras.utils.set_random_seed(seed)
    config = model_config(TINY_ARCH, input_size=TINY_SIZE)
    directory = models_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    save_config(config, TINY_ARCH, directory)
    build_unet(config, name=TINY_ARCH).save_weights(directory / WEIGHTS_FILE)
    return directory


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(export.CACHE_ENV, str(root))
    return root


def exports_in(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


@requires_openvino
def test_export_is_cached_by_weights_and_a_stale_one_is_rebuilt(tmp_path, cache):
    directory = make_tiny_model(tmp_path / "models")
    batch = np.random.default_rng(0).random((2, TINY_SIZE, TINY_SIZE, 3), dtype=np.float32)
    first = UNetPredictor(directory, "openvino", "fp32")
    assert first.info()["runtime"] == "openvino"
    (folder,) = exports_in(cache)
    assert folder == f"tiny-{export.folder_digest(directory)}-{TINY_SIZE}"
    assert export.read_meta(cache / folder)["parameters"] == first.model.count_params()

    # Same weights: the cached export is used as it is (its files are not rewritten).
    stamp = (cache / folder / export.OPENVINO_XML).stat().st_mtime_ns
    UNetPredictor(directory, "openvino", "fp32")
    assert exports_in(cache) == [folder] and (cache / folder / export.OPENVINO_XML).stat().st_mtime_ns == stamp

    # Retrained weights: a new export, and its predictions follow the new weights.
    make_tiny_model(tmp_path / "models", seed=1)
    retrained = UNetPredictor(directory, "openvino", "fp32")
    assert len(exports_in(cache)) == 2
    keras_out = UNetPredictor(directory, "keras", "fp32")._forward(batch)
    np.testing.assert_allclose(retrained._forward(batch), keras_out, atol=1e-4)
    assert not np.allclose(first._forward(batch), keras_out, atol=1e-3)


@requires_openvino
def test_an_export_finished_first_by_another_process_wins_the_race(tmp_path, cache):
    model = build_unet(model_config(TINY_ARCH, input_size=TINY_SIZE))
    digest = export.model_digest(model)
    other = []

    def build_while_another_process_finishes():
        # The other process starts after this one, exports faster and renames its folder into place first.
        other.append(export.openvino_export("tiny", digest, TINY_SIZE, lambda: model))
        return model

    folder = export.openvino_export("tiny", digest, TINY_SIZE, build_while_another_process_finishes)
    assert other == [folder]
    assert exports_in(cache) == [folder.name]  # this process's staging folder is gone
    assert {p.name for p in folder.iterdir()} == {export.OPENVINO_XML, "model.bin", export.META_FILE}


@requires_openvino
def test_a_half_written_export_is_replaced(tmp_path, cache):
    model = build_unet(model_config(TINY_ARCH, input_size=TINY_SIZE))
    digest = export.model_digest(model)
    broken = cache / f"tiny-{digest}-{TINY_SIZE}"
    broken.mkdir(parents=True)
    (broken / export.OPENVINO_XML).write_text("<net")
    folder = export.openvino_export("tiny", digest, TINY_SIZE, lambda: model)
    assert folder == broken and (folder / "model.bin").is_file()


def test_unwritable_cache_is_an_export_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(export.CACHE_ENV, str(blocker / "cache"))
    model = build_unet(model_config(TINY_ARCH, input_size=TINY_SIZE))
    with pytest.raises(export.ExportError, match="cannot write"):
        export.openvino_export("tiny", "0" * 16, TINY_SIZE, lambda: model)


@requires_openvino
def test_cli_writes_openvino_and_refuses_to_overwrite(tmp_path, capsys):
    models_dir = tmp_path / "models"
    make_tiny_model(models_dir)
    out = tmp_path / "out"
    argv = ["--model", "tiny", "--format", "openvino", "--out", str(out), "--models-dir", str(models_dir)]
    export_cli.main(argv)
    assert (out / "model.xml").is_file() and (out / "model.bin").is_file()
    with pytest.raises(SystemExit) as exc:
        export_cli.main(argv)
    assert exc.value.code == 2 and "already exists" in capsys.readouterr().err


def test_cli_refuses_an_unknown_model_and_reports_a_missing_exporter(tmp_path, monkeypatch, capsys):
    models_dir = tmp_path / "models"
    make_tiny_model(models_dir)
    with pytest.raises(SystemExit) as exc:
        export_cli.main(["--model", "nope", "--format", "onnx", "--models-dir", str(models_dir)])
    assert exc.value.code == 2 and "unknown model 'nope'" in capsys.readouterr().err

    def no_exporter(self, *args, **kwargs):
        raise ImportError("No module named 'tf2onnx'")

    import keras

    monkeypatch.setattr(keras.Model, "export", no_exporter)
    argv = ["--model", "tiny", "--format", "onnx", "--out", str(tmp_path / "o"), "--models-dir", str(models_dir)]
    with pytest.raises(SystemExit) as exc:
        export_cli.main(argv)
    assert exc.value.code == 2 and "needs a package that is not installed: No module named 'tf2onnx'" in (
        capsys.readouterr().err
    )


def test_cli_help():
    with pytest.raises(SystemExit) as exc:
        export_cli.main(["--help"])
    assert exc.value.code == 0
