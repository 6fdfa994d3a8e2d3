"""The blend family: a U-Net and a U²-Net in one graph, made from two model folders."""

import json

import numpy as np
import pandas as pd
import pytest
from tiny_leeds import tiny_dataset

from seg_core.core.config import (
    NOTICE_FILE,
    WEIGHTS_FILE,
    BlendConfig,
    U2NetConfig,
    UNetConfig,
    load_config,
    save_config,
)
from seg_core.evaluation import generalisation as gen
from seg_core.models import __main__ as models_cli
from seg_core.models.blend import BlendError, assemble
from seg_core.models.registry import build_model
from seg_core.runtime import blend
from seg_core.runtime.engines import BlendRuntime, PrecisionRefusedError
from seg_core.runtime.registry import load_predictor

UNET = UNetConfig(base_filters=4, depth=2, input_size=32)
U2NET = U2NetConfig(input_size=24, minmax_output=False, resample="bilinear", second_look=True)
SPECIES = [f"{k:03d}" for k in range(1, 11)]


def _folder(path, config, arch, seed, notice=""):
    """A model folder of ``config`` with random weights (seeded), as training leaves one."""
    import keras

    keras.utils.set_random_seed(seed)
    path.mkdir(parents=True)
    build_model(config, arch).save_weights(path / WEIGHTS_FILE)
    save_config(config, arch, path)
    if notice:
        (path / NOTICE_FILE).write_text(notice)
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    unet = _folder(root / "u", UNET, "unet8", 1)
    u2net = _folder(root / "g", U2NET, "u2netp_seg", 2, notice="Apache-2.0 notice of the pretrained weights\n")
    return unet, u2net


def test_a_blend_config_survives_its_json():
    config = BlendConfig(UNET, U2NET, 0.2, 0.4, 0.2, 0.9, 32)
    assert BlendConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_the_blend_returns_both_members_maps(members):
    config, model = assemble(*members, u2net_weight=0.25)
    assert (config.input_size, config.u2net_weight) == (32, 0.25)
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    maps = model.predict(x, verbose=0)
    assert np.allclose(maps[..., :1], model.get_layer("unet").predict(x, verbose=0), atol=1e-6)
    # The U²-Net member sees the input at its own 24 px and its map is brought back to 32 px.
    import keras

    small = keras.layers.Resizing(24, 24, interpolation="bilinear")(x)
    inner = model.get_layer("u2net").predict(small, verbose=0)
    assert np.allclose(maps[..., 1:], keras.layers.Resizing(32, 32, interpolation="bilinear")(inner), atol=1e-5)


def _maps(unet_area: int, u2net_area: int, doubt: int = 0) -> np.ndarray:
    """One photo's two maps (1, 10, 10, 2): each member certain on its first ``area`` pixels.

    The U-Net is unsure (probability 0.3) on the ``doubt`` pixels after its own.
    """
    maps = np.zeros((1, 10, 10, 2), np.float32)
    maps[0, ..., 0].flat[:unet_area] = 1.0
    maps[0, ..., 0].flat[unet_area : unet_area + doubt] = 0.3
    maps[0, ..., 1].flat[:u2net_area] = 1.0
    return maps


def test_the_unet_decides_alone_where_it_is_sure():
    config = BlendConfig(unsure_ratio=0.15, u2net_weight=0.5, gate_ratio=0.3, gate_weight=0.8)
    sure = _maps(40, 90, doubt=5)  # 5 unsure pixels, under 0.15 of its 40
    assert blend.unsure(sure[..., 0], config).tolist() == [False]
    assert np.array_equal(blend.combine(sure, config), sure[..., 0])


def test_where_the_unet_is_unsure_the_rule_is_a_mean_leaning_on_the_u2net_where_the_unet_sees_little():
    config = BlendConfig(unsure_ratio=0.15, u2net_weight=0.5, gate_ratio=0.3, gate_weight=0.8)
    # Unsure (7 of 40), and the two roughly agree: the mean; a pixel only the U²-Net marks sits at 0.5.
    assert blend.combine(_maps(40, 50, doubt=7), config)[0].flat[48] == pytest.approx(0.5)
    # The U-Net finds under 30% of the U²-Net's area: the U²-Net's share is 0.8.
    shares = blend.u2net_shares(np.concatenate([_maps(14, 50, doubt=3), _maps(16, 50, doubt=3)]), config)
    assert shares.tolist() == pytest.approx([0.8, 0.5])
    # An empty U-Net mask with any doubt is unsure; one without any is sure (and the map empty).
    assert blend.combine(_maps(0, 50, doubt=1), config)[0].flat[30] == pytest.approx(0.8)
    assert blend.combine(_maps(0, 50), config).max() == 0.0


def test_only_a_unet_and_a_fine_tuned_u2net_blend(members, tmp_path):
    unet, u2net = members
    with pytest.raises(BlendError, match="not a U-Net"):
        assemble(u2net, u2net)
    zero_shot = _folder(tmp_path / "z", U2NetConfig(input_size=24), "u2netp", 3)
    with pytest.raises(BlendError, match="plain probabilities"):
        assemble(unet, zero_shot)


def test_the_command_writes_a_model_every_tool_loads(members, tmp_path, capsys):
    unet, u2net = members
    argv = ["--blend", unet.name, u2net.name, "--u2net-weight", "0.6", "--name", "b", "--models-dir", str(unet.parent)]
    models_cli.main([*argv, "--out-dir", str(tmp_path)])
    assert "wrote" in capsys.readouterr().out
    arch, config = load_config(tmp_path / "b")
    assert arch == "unet_u2netp_blend" and config == BlendConfig(UNET, U2NET, u2net_weight=0.6, input_size=32)
    card = json.loads((tmp_path / "b" / "card.json").read_text())
    assert [(m["role"], m["name"]) for m in card["members"]] == [("unet", "u"), ("u2net", "g")]
    assert card["rule"] == {
        k: getattr(config, k) for k in ("unsure_ratio", "u2net_weight", "gate_ratio", "gate_weight")
    }
    # The pretrained weights' licence travels with every model made from them.
    notice = (tmp_path / "b" / NOTICE_FILE).read_text()
    assert notice.startswith("Apache-2.0 notice") and "blended by Wingmask with the U-Net u" in notice
    predictor = load_predictor("b", models_dir=tmp_path, runtime="keras")
    prob = predictor.predict_proba(np.zeros((40, 50, 3), np.uint8))
    assert prob.shape == (40, 50) and prob.dtype == np.float32


class _Engine:
    """An engine answering with ``answer(batch)``."""

    name, precision = "fake", "fp32"

    def __init__(self, answer):
        self.answer = answer

    def __call__(self, batch):
        return self.answer(batch)


def test_the_blend_engine_asks_the_u2net_only_about_photos_the_unet_is_unsure_of():
    config = BlendConfig(unsure_ratio=0.15)
    batch = np.stack([np.full((10, 10, 3), k, np.float32) for k in range(3)])
    unet_maps = np.concatenate([_maps(40, 0), _maps(40, 0, doubt=10), _maps(0, 0)])[..., :1]
    seen = []

    def u2net(photos):
        seen.append(photos[:, 0, 0, 0].tolist())
        return np.full((len(photos), 10, 10, 1), 0.9, np.float32)

    engine = BlendRuntime(_Engine(lambda photos: unet_maps), _Engine(u2net), lambda maps: blend.unsure(maps, config))
    maps = engine(batch)
    assert seen == [[1.0]] and maps.shape == (3, 10, 10, 2)
    # Where it was not asked, the U²-Net's channel repeats the U-Net's map, which the rule ignores there.
    assert np.array_equal(maps[[0, 2], ..., 1], unet_maps[[0, 2], ..., 0]) and (maps[1, ..., 1] == 0.9).all()


def test_warming_a_blend_engine_runs_both_members_on_photos_the_unet_is_sure_of():
    seen = []

    def member(key):
        return _Engine(lambda photos: seen.append((key, len(photos))) or np.zeros((*photos.shape[:3], 1), np.float32))

    engine = BlendRuntime(member("unet"), member("u2net"), lambda maps: np.zeros(len(maps), bool))
    engine(np.zeros((2, 10, 10, 3), np.float32))
    assert seen == [("unet", 2)]
    engine.warm(np.zeros((4, 10, 10, 3), np.float32))
    assert seen[1:] == [("unet", 4), ("u2net", 4)]


def test_openvino_runs_a_blend_as_keras_does(members, tmp_path):
    pytest.importorskip("openvino")
    unet, u2net = members
    models_cli.main(
        ["--blend", unet.name, u2net.name, "--name", "b", "--models-dir", str(unet.parent), "--out-dir", str(tmp_path)]
    )
    photo = np.random.default_rng(3).integers(0, 255, (45, 60, 3), dtype=np.uint8)
    keras_map = load_predictor("b", models_dir=tmp_path, runtime="keras").predict_proba(photo)
    # OpenVINO's converter gets the two-network graph wrong; one engine per member does not.
    openvino = load_predictor("b", models_dir=tmp_path, runtime="openvino", precision="fp32")
    assert np.abs(openvino.predict_proba(photo) - keras_map).max() < 1e-4
    assert openvino.info()["parameters"] == load_predictor("b", models_dir=tmp_path, runtime="keras").parameters
    with pytest.raises(PrecisionRefusedError):
        load_predictor("b", models_dir=tmp_path, runtime="openvino", precision="int8")


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--u2net-weight", "1.5"], "between 0 and 1"), (["--models-dir", "/nonexistent"], "no trained model")],
)
def test_the_command_refuses_bad_blends_with_a_message(members, tmp_path, extra, message):
    unet, u2net = members
    argv = ["--blend", unet.name, u2net.name, "--models-dir", str(unet.parent), "--out-dir", str(tmp_path), *extra]
    with pytest.raises(SystemExit, match=message):
        models_cli.main(argv)
    assert not (tmp_path / "u2netp").exists()


def test_a_blend_recipe_is_told_from_a_training_recipe(tmp_path):
    (tmp_path / "b.toml").write_text('blend = ["a", "g"]\nu2net_weight = 0.3\ngate_ratio = 0.2\n')
    (tmp_path / "t.toml").write_text('model = "unet8"\n')
    (tmp_path / "bad.toml").write_text('blend = ["a"]\n')
    (tmp_path / "typo.toml").write_text('blend = ["a", "g"]\nu2net_wieght = 0.3\n')
    assert gen.read_blend_recipe(tmp_path / "b.toml") == gen.BlendRecipe(
        ("a", "g"), {"u2net_weight": 0.3, "gate_ratio": 0.2}
    )
    assert gen.read_blend_recipe(tmp_path / "t.toml") is None
    with pytest.raises(ValueError, match="names two recipes"):
        gen.read_blend_recipe(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="u2net_wieght"):
        gen.read_blend_recipe(tmp_path / "typo.toml")


def test_a_blend_recipe_scores_each_fold_from_its_members_fold_models(members, tmp_path):
    split_file = tiny_dataset(tmp_path / "data")
    folds = gen.species_folds(SPECIES, 2)
    recipe = gen.BlendRecipe(("u", "g"), {})
    work = tmp_path / "work"
    with pytest.raises(FileNotFoundError, match="same --work-dir"):
        gen.run_blend(recipe, "b", folds, work, tmp_path / "data", split_file, progress=False)
    for fold in range(2):
        for folder in members:
            _folder(work / f"{folder.name}-fold{fold}" / "model", *load_config(folder)[::-1], seed=fold)
    rows = pd.DataFrame(gen.run_blend(recipe, "b", folds, work, tmp_path / "data", split_file, progress=False))
    assert sorted(rows["species"]) == SPECIES and set(rows["recipe"]) == {"b"}
    assert (rows[["tp", "fp", "fn", "tn"]].sum(axis=1) == rows["height"] * rows["width"]).all()
