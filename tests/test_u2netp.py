"""The U²-Net family: our Keras U²-Netp, its import from rembg's ONNX file, and the committed zero-shot model."""

import json
from pathlib import Path

import numpy as np
import pytest

from seg_core.core.config import U2NetConfig, load_config, save_config
from seg_core.core.imaging import load_image
from seg_core.core.paths import MODELS_DIR, REPO_ROOT, SAMPLES_DIR
from seg_core.models.registry import build_model, create_model, model_config
from seg_core.models.u2net import IMAGENET_MEAN, IMAGENET_STD, MinMaxRescale, RembgNormalise
from seg_core.runtime.registry import load_predictor

ONNX = REPO_ROOT.parent / "shared" / "pretrained" / "u2netp" / "u2netp.onnx"
PHOTOS = sorted((SAMPLES_DIR / "images").glob("*.jpg"))
needs_onnx = pytest.mark.skipif(not ONNX.is_file(), reason="rembg's u2netp.onnx is not in ../shared")


def test_rembg_normalise_divides_by_the_photos_maximum_then_standardises():
    x = np.zeros((1, 2, 2, 3), np.float32)
    x[0, 0, 0] = (0.5, 0.25, 0.0)
    out = np.asarray(RembgNormalise()(x))
    expected = (np.array([1.0, 0.5, 0.0]) - IMAGENET_MEAN) / IMAGENET_STD
    assert np.allclose(out[0, 0, 0], expected, atol=1e-6)
    assert np.allclose(out[0, 1, 1], -np.asarray(IMAGENET_MEAN) / IMAGENET_STD, atol=1e-6)


def test_min_max_rescale_spans_zero_to_one_per_photo_and_keeps_a_flat_map_finite():
    x = np.stack([np.full((3, 3, 1), 0.2, np.float32), np.linspace(0.3, 0.6, 9, dtype=np.float32).reshape(3, 3, 1)])
    out = np.asarray(MinMaxRescale()(x))
    assert np.allclose(out[0], 0.0)
    assert out[1].min() == pytest.approx(0.0) and out[1].max() == pytest.approx(1.0)


def test_u2netp_config_round_trips_through_config_json(tmp_path):
    config = model_config("u2netp", input_size=64, minmax_output=False)
    save_config(config, "u2netp", tmp_path)
    assert load_config(tmp_path) == ("u2netp", config)
    assert json.loads((tmp_path / "config.json").read_text())["u2net"]["resample"] == "lanczos"
    with pytest.raises(ValueError, match="unknown U²-Net config keys"):
        U2NetConfig.from_dict({"depth": 3})


def test_u2netp_has_the_papers_size_and_any_input_side():
    assert create_model("u2netp", input_size=64).count_params() == 1_125_485
    # Odd sides go through the ceil-mode pooling and the resizes back.
    assert create_model("u2netp", input_size=97).output_shape == (None, 97, 97, 1)


@needs_onnx
def test_the_port_matches_rembgs_onnx_graph():
    from seg_core.models.onnx_import import load_onnx_weights, max_differences

    model = build_model(model_config("u2netp", minmax_output=False), "u2netp")
    load_onnx_weights(model, ONNX)
    assert max(max_differences(model, ONNX, [load_image(p) for p in PHOTOS[:2]])) < 1e-3


@needs_onnx
def test_a_graph_of_another_shape_is_refused():
    from seg_core.models.onnx_import import ConversionError, load_onnx_weights

    with pytest.raises(ConversionError):
        load_onnx_weights(create_model("unet8", input_size=64), ONNX)


def test_the_committed_zero_shot_model_carries_its_source_and_licence():
    folder = MODELS_DIR / "u2netp"
    card = json.loads((folder / "card.json").read_text())
    assert card["source"]["licence"] == "Apache-2.0" and card["source"]["md5"] == "8e83ca70e441ab06c318d82300c84806"
    assert max(card["check"]["max_abs_difference"]) < 1e-3
    assert "Apache License, Version 2.0" in (folder / "NOTICE").read_text()
    arch, config = load_config(folder)
    assert arch == "u2netp" and config.minmax_output and not config.second_look


@needs_onnx
def test_the_committed_model_gives_rembgs_masks():
    """rembg's own pipeline (LANCZOS in, min-max, 8-bit LANCZOS out) against ours on a sample photo."""
    from PIL import Image

    from seg_core.models.onnx_import import onnx_reference, rembg_input

    photo = load_image(PHOTOS[0])
    ours = load_predictor("u2netp", runtime="keras").predict_proba(photo) >= 0.5
    ref = onnx_reference(ONNX, [rembg_input(photo, 320)])[0]
    ref = (ref - ref.min()) / (ref.max() - ref.min())
    height, width = photo.shape[:2]
    theirs = Image.fromarray((ref * 255).astype(np.uint8)).resize((width, height), Image.Resampling.LANCZOS)
    assert ((np.asarray(theirs) / 255 >= 0.5) == ours).mean() > 0.995


def test_the_zero_shot_model_never_takes_a_second_look(monkeypatch):
    predictor = load_predictor("u2netp", runtime="keras")
    calls = []
    monkeypatch.setattr(
        predictor,
        "predict_batch",
        lambda images, tta=False: calls.append(len(images)) or [np.zeros(i.shape[:2], np.float32) for i in images],
    )
    predictor.predict_proba(np.zeros((40, 60, 3), np.uint8))
    assert calls == [1]


def test_onnx_import_writes_a_loadable_folder(tmp_path):
    if not ONNX.is_file():
        pytest.skip("rembg's u2netp.onnx is not in ../shared")
    from seg_core.models.__main__ import main

    main(
        [
            "--import-onnx",
            str(ONNX),
            "--out-dir",
            str(tmp_path),
            "--name",
            "mine",
            "--check-photos",
            str(Path(PHOTOS[0]).parent),
        ]
    )
    assert {p.name for p in (tmp_path / "mine").iterdir()} == {"config.json", "model.weights.h5", "card.json", "NOTICE"}
    assert (
        load_predictor("mine", models_dir=tmp_path, runtime="keras").predict_proba(load_image(PHOTOS[0])).shape
        == (load_image(PHOTOS[0]).shape[:2])
    )
