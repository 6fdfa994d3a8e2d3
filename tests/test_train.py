"""Training: recipe files, each callback on a tiny model, and tiny end-to-end runs (a few photos, 32-64 px)."""

import csv
import json
import shlex
from pathlib import Path

import keras
import numpy as np
import pytest
from tiny_leeds import tiny_dataset

from seg_core import train as train_cli
from seg_core.core.config import CARD_FILE, CONFIG_FILE, HISTORY_FILE, WEIGHTS_FILE, load_config
from seg_core.core.imaging import load_image
from seg_core.core.paths import MODELS_DIR, RECIPES_DIR, REPO_ROOT
from seg_core.data.augment import AugmentConfig
from seg_core.data.leeds import file_sha256, load_split
from seg_core.models import training as train
from seg_core.runtime.predictor import UNetPredictor

SAMPLES = REPO_ROOT / "samples"
RECIPES = sorted(RECIPES_DIR.glob("*.toml"))
#: Options that say where this machine keeps things, not how a model is trained.
MACHINE_OPTIONS = ("config", "data", "out_dir", "workers", "multiprocessing")


def _settings(args) -> dict:
    """The training settings of parsed arguments, paths resolved, without the machine's options."""
    settings = {k: v for k, v in vars(args).items() if k not in MACHINE_OPTIONS}
    settings["init"] = settings["init"] and (REPO_ROOT / settings["init"]).resolve()
    return settings


# Recipes


STAGES = ("stage1", "stage2", "stage3")


def _model_and_stage(recipe: Path) -> tuple[str, str]:
    """("unet-best", "stage1") for unet-best-stage1.toml; ("unet-best", "") for a committed model's own recipe."""
    name, _, stage = recipe.stem.rpartition("-")
    return (name, stage) if stage in STAGES else (recipe.stem, "")


def _card_of(recipe: Path) -> dict:
    """The card of the run a recipe made: models/<name>/card.json, or models/<name>/<stage>/card.json for a stage."""
    name, stage = _model_and_stage(recipe)
    return json.loads((MODELS_DIR / name / stage / CARD_FILE).read_text())


def test_committed_recipes_are_the_trained_models_and_their_earlier_stages():
    assert [p.stem for p in RECIPES] == [
        "u2netp-butterfly-stage1",
        "u2netp-butterfly",
        "unet-bce",
        "unet-best-stage1",
        "unet-best-stage2",
        "unet-best-stage3",
        "unet-best",
        "unet-colour",
        "unet-light-stage1",
        "unet-light-stage2",
        "unet-light",
    ]


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_matches_the_command_in_its_model_card(path):
    """Retraining from the recipe uses the settings that trained the committed model, and the card says so."""
    card = _card_of(path)
    if not path.stem.endswith("stage1"):
        assert card.get("recipe_file") == f"recipes/{path.name}"
    from_card = train_cli.parse_args(shlex.split(card["command"])[3:])
    from_recipe = train_cli.parse_args(["--config", str(path)])
    assert from_recipe.name == _model_and_stage(path)[0]
    assert _settings(from_recipe) == _settings(from_card)


def test_the_augmentation_follows_the_preset_strength_and_grey_chance():
    stage4 = train_cli.parse_args(["--config", str(RECIPES_DIR / "unet-best.toml")])
    augment = train.augmentation(stage4)
    assert augment.p_grey == 0.35 and augment.p_blur == pytest.approx(0.35 * 0.6) and augment.rotate90
    assert train.augmentation(train_cli.parse_args(["--model", "unet8", "--augment", "robust"])).p_grey == 0.12
    assert train.augmentation(train_cli.parse_args(["--model", "unet8"])) == AugmentConfig()
    assert train.augmentation(train_cli.parse_args(["--model", "unet8", "--no-augment"])) is None
    recoloured = train.augmentation(train_cli.parse_args(["--model", "unet8", "--recolour", "0.4"]))
    assert recoloured == AugmentConfig(p_recolour=0.4)
    assert train_cli.parse_args(["--model", "unet8", "--multiprocessing"]).multiprocessing


def test_options_given_override_the_recipe():
    recipe = RECIPES_DIR / "unet-best-stage1.toml"
    args = train_cli.parse_args(["--config", str(recipe), "--epochs", "3", "--lr", "0.1"])
    assert (args.epochs, args.lr, args.model, args.augment, args.robust_val) == (3, 0.1, "unet16", "robust", True)
    # Paths in a recipe are read from the repository root, wherever the command runs.
    assert args.init == REPO_ROOT / "models" / "unet-best"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model = "unet8"\ndata = "/photos"\n', "unknown settings \\['data'\\]"),
        ('model = "unet8"\nrobust_val = "yes"\n', "robust_val must be true or false"),
        ("model = [unet8\n", "not valid TOML"),
    ],
)
def test_bad_recipes_are_refused_with_a_message(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(train.RecipeError, match=message):
        train.load_recipe(path)
    with pytest.raises(SystemExit) as exc:
        train_cli.parse_args(["--config", str(path)])
    assert exc.value.code == 2 and "bad.toml" in capsys.readouterr().err


def test_recipe_values_are_checked_like_options(tmp_path, capsys):
    path = tmp_path / "r.toml"
    path.write_text('model = "unet8"\nloss = "hinge"\n')
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--config", str(path)])
    assert "invalid choice: 'hinge'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.parse_args(["--config", str(tmp_path / "absent.toml")])
    assert "cannot read recipe" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train_cli.parse_args([])
    assert "--model is required" in capsys.readouterr().err


# Callbacks, one at a time, on a tiny model


def _tiny_model() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs))
    model.compile(optimizer=keras.optimizers.AdamW(0.01), loss="binary_crossentropy")
    return model


def _run_epochs(callback, logs_per_epoch, clock=None, epoch_seconds=0.0):
    """Feed ``callback`` epochs as Keras does; returns the epochs that ran before it stopped training.

    With ``clock`` (a :class:`FakeClock`), each epoch takes ``epoch_seconds``.
    """
    model = _tiny_model()
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, logs in enumerate(logs_per_epoch):
        if clock is not None:
            clock.now += epoch_seconds
        callback.on_epoch_end(epoch, dict(logs))
        if model.stop_training:
            return epoch + 1
    return len(logs_per_epoch)


def test_early_stop_fires_after_patience_epochs_without_gain():
    ious = [0.5, 0.6, 0.55, 0.6, 0.59, 0.7, 0.1, 0.2, 0.3]
    assert _run_epochs(train.EarlyStop(3), [{"val_iou": v} for v in ious]) == 5
    assert _run_epochs(train.EarlyStop(4), [{"val_iou": v} for v in ious]) == 9


def test_early_stop_follows_the_mean_of_plain_and_changed_iou():
    logs = [{"val_iou": 0.9, "val_changed_iou": 0.5}, {"val_iou": 0.8, "val_changed_iou": 0.7}]
    logs += [{"val_iou": 0.95, "val_changed_iou": 0.5}] * 2
    stop = train.EarlyStop(2, ("val_iou", "val_changed_iou"))
    assert _run_epochs(stop, logs) == 4 and stop.best_epoch == 2


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_time_limit_stops_before_an_epoch_would_pass_it():
    clock = FakeClock()
    # 30 s epochs: after 3 epochs (90 s) a 4th would end at 120 s.
    assert _run_epochs(train.TimeLimit(100, clock), [{}] * 10, clock, 30) == 3
    assert _run_epochs(train.TimeLimit(120, clock), [{}] * 10, clock, 30) == 4
    assert _run_epochs(train.TimeLimit(1000, clock), [{}] * 10, clock, 30) == 10


def test_best_checkpoint_saves_only_improvements_without_the_optimizer(tmp_path):
    model, export = _tiny_model(), _tiny_model()
    model.fit(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 1)), epochs=1, verbose=0)  # creates the Adam moments
    path = tmp_path / WEIGHTS_FILE
    best = train.BestCheckpoint(path, export)
    best.set_model(model)
    best.on_epoch_end(0, {"val_iou": 0.5})
    saved = path.stat().st_mtime_ns
    first = [w.copy() for w in model.get_weights()]
    model.set_weights([w + 1 for w in first])
    best.on_epoch_end(1, {"val_iou": 0.4})
    assert (best.best_epoch, best.best_score, path.stat().st_mtime_ns) == (1, 0.5, saved)
    check = _tiny_model()
    check.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(check.get_weights(), first, strict=True))
    best.on_epoch_end(2, {"val_iou": 0.6})
    check.load_weights(path)
    assert best.best_epoch == 3 and np.array_equal(check.get_weights()[0], first[0] + 1)
    # Saved through the optimizer-free copy: the trained model's own file would hold the Adam moments too.
    full = tmp_path / "full.weights.h5"
    model.save_weights(full)
    assert path.stat().st_size < full.stat().st_size


def test_history_csv_has_one_row_per_epoch(tmp_path):
    clock = FakeClock()
    history = train.HistoryCSV(tmp_path / HISTORY_FILE, clock)
    logs = [{"loss": 0.9, "val_iou": 0.5, "val_dice": 0.6}, {"loss": 0.7, "val_iou": 0.55, "val_dice": 0.65}]
    assert _run_epochs(history, logs, clock, 2.5) == 2
    with open(tmp_path / HISTORY_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "loss", "val_iou", "val_dice", "lr", "seconds"]
    assert [(r["epoch"], r["loss"], r["val_iou"], r["seconds"]) for r in rows] == [
        ("1", "0.9", "0.5", "2.5"),
        ("2", "0.7", "0.55", "5.0"),
    ]
    assert float(rows[0]["lr"]) == pytest.approx(0.01)


def test_validation_metrics_add_scores_to_the_logs():
    model = _tiny_model()
    x = np.random.default_rng(0).random((3, 8, 8, 3)).astype("float32")
    y = np.ones((3, 8, 8), "float32")
    y[:, :4] = 0.0
    model.layers[-1].set_weights([np.zeros((3, 3, 3, 1)), np.array([5.0])])  # everything foreground
    validation = train.ValidationMetrics(x, y, changed=(x, np.ones((3, 8, 8), "float32")))
    validation.set_model(model)
    logs = {"loss": 0.3}
    validation.on_epoch_end(0, logs)
    assert logs["loss"] == 0.3 and logs["val_iou"] == pytest.approx(0.5) and logs["val_dice"] == pytest.approx(2 / 3)
    assert logs["val_changed_iou"] == 1.0 and set(validation.epochs[0]) == set(logs) - {"loss"}


def test_validation_metrics_score_the_recoloured_set_under_its_own_name():
    model = _tiny_model()
    x = np.random.default_rng(0).random((2, 8, 8, 3)).astype("float32")
    model.layers[-1].set_weights([np.zeros((3, 3, 3, 1)), np.array([5.0])])  # everything foreground
    half = np.ones((2, 8, 8), "float32")
    half[:, :4] = 0.0
    validation = train.ValidationMetrics(x, np.ones((2, 8, 8), "float32"), recoloured=(x, half))
    validation.set_model(model)
    logs: dict[str, float] = {}
    validation.on_epoch_end(0, logs)
    assert logs["val_iou"] == 1.0 and logs["val_recoloured_iou"] == pytest.approx(0.5)
    assert not any(key.startswith("val_changed") for key in logs)


def test_recoloured_views_change_the_colours_not_the_masks():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8) for _ in range(3)]
    masks = [(rng.random((20, 30)) > 0.5).astype(np.uint8) * 255 for _ in range(3)]
    x, y = train.recoloured_views(images, masks, 16, seed=3)
    plain_x, plain_y = train.validation_view(images, masks, 16)
    again_x, _ = train.recoloured_views(images, masks, 16, seed=3)
    assert x.shape == plain_x.shape and np.array_equal(y, plain_y) and np.array_equal(x, again_x)
    assert not np.allclose(x, plain_x)


def test_epoch_line_marks_the_best_epoch(capsys):
    checkpoint = train.BestCheckpoint(Path("unused"), _tiny_model())
    checkpoint.best_epoch = 2
    line = train.EpochLine(checkpoint)
    line.on_epoch_end(0, {"loss": 0.5, "val_iou": 0.81234, "val_dice": 0.9})
    line.on_epoch_end(1, {"loss": 0.4, "val_iou": 0.9, "val_dice": 0.95, "val_changed_iou": 0.7})
    line.on_epoch_end(2, {"loss": 0.3, "val_iou": 0.9, "val_dice": 0.95, "val_recoloured_iou": 0.6})
    first, second, third = capsys.readouterr().out.splitlines()
    assert first == "epoch 1: loss 0.5000 val_iou 0.8123 val_dice 0.9000"
    assert second == "epoch 2: loss 0.4000 val_iou 0.9000 val_dice 0.9500 val_changed_iou 0.7000 *best*"
    assert third == "epoch 3: loss 0.3000 val_iou 0.9000 val_dice 0.9500 val_recoloured_iou 0.6000"


# Tiny end-to-end runs


def test_tiny_training_run_writes_a_loadable_model(tmp_path):
    split_file = tiny_dataset(tmp_path / "data")
    out = train.train(
        train_cli.parse_args(
            [
                "--model",
                "unet8",
                "--name",
                "tiny",
                "--out-dir",
                str(tmp_path / "models"),
                "--data",
                str(tmp_path / "data"),
                "--split",
                str(split_file),
                "--epochs",
                "1",
                "--size",
                "64",
                "--batch-size",
                "4",
                "--workers",
                "1",
            ]
        )
    )
    for name in (WEIGHTS_FILE, CARD_FILE, HISTORY_FILE):
        assert (out / name).is_file()
    card = json.loads((out / CARD_FILE).read_text())
    assert card["architecture"] == "unet8" and card["input_size"] == 64 and card["epochs_run"] == 1
    assert card["train_photos"] == len(load_split(split_file)["train"])
    assert set(card["validation_at_input_size"]) == {"val_accuracy", "val_dice", "val_iou", "val_mean_iou"}
    assert "recipe_file" not in card and card["initial_weights"] is None
    predictor = UNetPredictor(out)
    assert predictor.model.count_params() == card["parameters"]
    photo = load_image(next((SAMPLES / "images").glob("*.jpg")))
    prob = predictor.predict_proba(photo)
    assert prob.shape == photo.shape[:2] and prob.dtype == np.float32


def test_a_recipe_file_trains_with_overrides(tmp_path):
    """unet-light's first stage (fine-tuning, robust augmentation and validation) at 32 px on four photos."""
    split_file = tiny_dataset(tmp_path / "data")
    recipe = RECIPES_DIR / "unet-light-stage1.toml"
    args = ["--config", str(recipe), "--out-dir", str(tmp_path / "models"), "--data", str(tmp_path / "data")]
    args += ["--split", str(split_file), "--size", "32", "--limit", "4", "--epochs", "1", "--workers", "1"]
    out = train.train(train_cli.parse_args([*args, "--recolour-val"]))
    assert out == tmp_path / "models" / "unet-light"
    card = json.loads((out / CARD_FILE).read_text())
    assert card["recipe_file"] == "recipes/unet-light-stage1.toml"
    assert card["recipe"] == train.load_recipe(recipe)["recipe"]
    assert (card["architecture"], card["input_size"], card["epochs_run"], card["epochs_max"]) == ("unet8", 32, 1, 1)
    assert (card["augment_preset"], card["robust_validation"], card["time_limit_seconds"]) == ("robust", True, 1200)
    assert card["recoloured_validation"]
    assert (card["train_photos"], card["val_photos"], card["best_epoch"]) == (4, 4, 1)
    assert card["initial_weights"] == {
        "folder": "models/unet-light",
        "weights_sha256": file_sha256(MODELS_DIR / "unet-light" / WEIGHTS_FILE),
    }
    assert set(card["validation_at_input_size"]) == {
        f"{prefix}_{m}"
        for prefix in ("val", "val_changed", "val_recoloured")
        for m in ("accuracy", "dice", "iou", "mean_iou")
    }
    assert load_config(out)[0] == "unet8" and load_config(out)[1].input_size == 32
    assert (out / CONFIG_FILE).is_file()
    with open(out / HISTORY_FILE, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1 and float(rows[0]["val_changed_iou"]) == card["validation_at_input_size"]["val_changed_iou"]
    # Fine-tuned from the committed weights: same architecture, and they load into the predictor.
    assert UNetPredictor(out).model.count_params() == card["parameters"]
