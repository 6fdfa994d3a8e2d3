"""Teaching new species: a tiny fine-tune, bad collections, names, saving corrections, the background job."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from tiny_leeds import tiny_dataset

from seg_core.adapt import __main__ as adapt_cli
from seg_core.core.config import CONFIG_FILE, WEIGHTS_FILE, save_config
from seg_core.core.imaging import load_image
from seg_core.core.paths import REPO_ROOT, SAMPLES_DIR
from seg_core.data import teaching
from seg_core.data.collections import CollectionNameError, read_folder
from seg_core.models import adapt
from seg_core.models.registry import create_model, model_config
from seg_core.runtime.registry import load_predictor, trained_models
from seg_core.service import jobs, teach

SIZE = 32
HAS_NNCF = importlib.util.find_spec("nncf") is not None
#: Settings of a run that takes seconds: a small network's input, one epoch, a rate that surely moves it.
TINY = {"size": SIZE, "max_epochs": 1, "lr": 3e-3, "min_steps": 8, "workers": 1}
TINY_OPTIONS = ["--size", str(SIZE), "--max-epochs", "1", "--lr", "3e-3"]


def make_collection(folder: Path, copies: int = 3) -> Path:
    """The ten samples, flipped to make ``copies`` pairs each, as a collection folder."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    flips = [None, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.FLIP_TOP_BOTTOM][:copies]
    for image_path in sorted((SAMPLES_DIR / "images").glob("*.jpg")):
        mask = Image.open(SAMPLES_DIR / "masks" / f"{image_path.stem}_seg0.png")
        for k, flip in enumerate(flips):
            photo = Image.open(image_path)
            changed = (photo, mask) if flip is None else (photo.transpose(flip), mask.transpose(flip))
            changed[0].save(folder / "images" / f"{image_path.stem}-{k}.jpg")
            changed[1].save(folder / "masks" / f"{image_path.stem}-{k}.png")
    return folder


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A random tiny base model, a collection of 30 pairs plus a broken photo, and a tiny Leeds dataset."""
    root = tmp_path_factory.mktemp("teach")
    base = root / "bases" / "tiny-base"
    base.mkdir(parents=True)
    keras.utils.set_random_seed(0)
    create_model("unet8", input_size=SIZE).save_weights(base / WEIGHTS_FILE)
    save_config(model_config("unet8", input_size=SIZE), "unet8", base)
    collection = make_collection(root / "collections" / "moths")
    (collection / "images" / "broken.jpg").write_bytes(b"not a photo")
    (collection / "masks" / "broken.png").write_bytes(b"not a mask")
    split = tiny_dataset(root / "leeds")
    return {"root": root, "base": base, "collection": collection, "data": root / "leeds", "split": split}


def test_a_tiny_fine_tune_changes_the_weights_and_writes_a_loadable_model(place, tmp_path):
    seen = []
    outcome = teach.adapt_collection(
        str(place["base"]),
        place["collection"],
        "moths-v1",
        minutes=2,
        models_dir=tmp_path,
        data_dir=place["data"],
        split_file=place["split"],
        overrides=TINY,
        report=seen.append,
    )
    folder = tmp_path / "moths-v1"
    assert outcome.folder == folder and trained_models(tmp_path) == ["moths-v1"]
    written = {p.name for p in folder.iterdir()}
    assert {"card.json", CONFIG_FILE, WEIGHTS_FILE, "history.csv", adapt.RECIPE_FILE} <= written
    base_model, new_model = create_model("unet8", input_size=SIZE), create_model("unet8", input_size=SIZE)
    base_model.load_weights(place["base"] / WEIGHTS_FILE)
    new_model.load_weights(folder / WEIGHTS_FILE)
    assert any(not np.allclose(a, b) for a, b in zip(base_model.get_weights(), new_model.get_weights(), strict=True))

    card = json.loads((folder / "card.json").read_text())
    assert card["best_epoch"] == 1 and card["base_model"]["name"] == "tiny-base"
    assert card["collection"]["photos"] == 30 and card["collection"]["held_out_photos"] == 4
    assert len(card["collection"]["digest"]) == 64 and card["collection"]["skipped"]
    assert card["guard"]["kind"] == "replay" and card["guard"]["leeds_train_photos"] == 6
    assert set(card["validation"]["before"]) == {"collection_iou", "leeds_iou", "adapt_score"}
    assert set(card["comparison"]["iou_per_photo"]) == {"tiny-base", "moths-v1"}
    assert card["comparison"]["evaluation"] is None, "the collection is not in the collections folder"
    assert adapt.read_recipe(folder / adapt.RECIPE_FILE) == ("tiny-base", card["settings"] | {"size": SIZE})
    if teach.wants_check(False):
        assert set(card["precision"]["agreement"]) == {"bf16"} and card["precision"]["check_photos"] == 8
    assert [p.stage for p in seen][:2] == ["load", "load"] and any(p.stage == "train" and p.scores for p in seen)

    predictor = load_predictor("moths-v1", models_dir=tmp_path)
    image = load_image(next((SAMPLES_DIR / "images").glob("*.jpg")))
    assert predictor.predict_proba(image).shape == image.shape[:2]
    with pytest.raises(teaching.ModelNameError, match="exists already"):
        teach.check_new_model_name("moths-v1", tmp_path)


def test_a_comparison_in_the_collections_folder_is_written_beside_the_collection(place, tmp_path, monkeypatch):
    monkeypatch.setenv("WINGMASK_COLLECTIONS", str(place["root"] / "collections"))
    outcome = teach.adapt_collection(
        str(place["base"]), place["collection"], "moths-v2", 0.5, tmp_path, place["data"], place["split"],
        TINY | {"guard": "distill"}, int8=HAS_NNCF,
    )  # fmt: skip
    assert outcome.card["guard"]["kind"] == "distill" and outcome.card["guard"]["distill_weight"] > 0
    assert outcome.card["comparison"]["evaluation"] == "moths-v2-heldout"
    if HAS_NNCF:
        assert (tmp_path / "moths-v2" / "int8" / "model.xml").is_file()
        assert set(outcome.card["precision"]["agreement"]) >= {"int8"} and outcome.card["precision"]["check_photos"]
    written = place["collection"] / "eval_moths-v2-heldout.csv"
    assert written.is_file() and not [s for s in read_folder(place["collection"]).skipped if "eval_" in s.file]
    assert json.loads((place["collection"] / "eval_moths-v2-heldout.json").read_text())["moths-v2"]["n"] == 4


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as stopped:
        adapt_cli.main(args)
    return stopped.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("missing", "no folder"),
        ("no-masks", "needs images/ (photos) and masks/"),
        ("few", f"needs at least {teaching.MIN_PAIRS}"),
        ("broken", "no usable photo-and-mask pair"),
        ("empty-masks", "empty (no butterfly pixel)"),
    ],
)
def test_bad_collections_get_a_clear_message_and_exit_status_2(place, tmp_path, capsys, layout, message):
    folder = tmp_path / "collection"
    if layout != "missing":
        (folder / "images").mkdir(parents=True)
    if layout in ("few", "broken", "empty-masks"):
        (folder / "masks").mkdir()
    for k in range(3 if layout == "few" else 9):
        image = folder / "images" / f"p{k}.png"
        if layout == "broken":
            image.write_bytes(b"\x89PNG broken")
            (folder / "masks" / f"p{k}.png").write_bytes(b"")
        elif layout in ("few", "empty-masks"):
            Image.new("RGB", (40, 30), (200, 100, 50)).save(image)
            Image.new("L", (40, 30), 255 if layout == "few" else 0).save(folder / "masks" / f"p{k}.png")
    args = ["--base", str(place["base"]), "--folder", str(folder), "--name", "x", "--models-dir", str(tmp_path)]
    code, err = run_cli(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert not list(tmp_path.glob("x")) and not list(tmp_path.glob(".x*"))


def test_names_from_outside_are_checked(place, tmp_path, capsys):
    for name in ("../evil", "a/b", ".hidden", "", "x" * (teaching.MAX_NAME_LENGTH + 1)):
        with pytest.raises(teaching.ModelNameError, match="not a usable model name"):
            teach.check_new_model_name(name, tmp_path)
    with pytest.raises(teaching.ModelNameError, match="baseline"):
        teach.check_new_model_name("otsu", tmp_path)
    (tmp_path / ".taken.partial").mkdir()
    with pytest.raises(teaching.ModelNameError, match="exists already"):
        teach.check_new_model_name("taken", tmp_path)
    args = ["--folder", str(place["collection"]), "--name", "../up", "--models-dir", str(tmp_path)]
    code, err = run_cli(args, capsys)
    assert code == 2 and "not a usable model name" in err
    with pytest.raises(teaching.AdaptError, match="no trained model"):
        teach.resolve_base("no-such-model", tmp_path)
    # The default is a blend: it is taught through its U-Net member, and only networks are offered as bases.
    assert teach.resolve_base("DEFAULT").name == teach.resolve_base("default").name == "unet-colour"
    assert teach.teachable_models()[0] == "unet-colour" and "wingmask-blend" not in teach.teachable_models()


def test_corrections_are_saved_into_a_collection_that_a_fine_tune_reads(tmp_path, monkeypatch):
    image = np.zeros((30, 40, 3), np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    first = teach.save_to_collection(tmp_path, "my-moths", "IMG 1.JPG", image, mask)
    assert first.photos == 1 and first.folder == tmp_path / "my-moths" and first.photo_id.startswith("IMG-1-")
    mask[0, 0] = True
    again = teach.save_to_collection(tmp_path, "my-moths", "IMG 1.JPG", image, mask)
    assert again.photo_id == first.photo_id and again.photos == 1, "saving the same photo again replaces its mask"
    other = teach.save_to_collection(tmp_path, "my-moths", "IMG 1.JPG", image + 1, mask)
    assert other.photos == 2
    pairs = {pair.id: pair for pair in read_folder(tmp_path / "my-moths").pairs}
    assert np.array_equal(pairs[first.photo_id].load().mask, mask)
    assert [c.name for c in teach.teachable_collections(tmp_path)] == ["my-moths"]
    with pytest.raises(CollectionNameError):
        teach.save_to_collection(tmp_path, "../outside", "a.jpg", image, mask)
    monkeypatch.setattr(teaching, "MAX_PAIRS", 2)
    with pytest.raises(teach.CollectionFullError, match="holds 2 photos"):
        teach.save_to_collection(tmp_path, "my-moths", "b.jpg", image + 2, mask)
    assert not list((tmp_path / "my-moths").rglob(".*partial"))


def wait_for(condition, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_the_fine_tune_job_runs_one_at_a_time_reports_progress_and_cancels(place, tmp_path):
    runner = jobs.JobRunner()
    collections = place["root"] / "collections"
    start = {"models_dir": tmp_path, "root": collections, "runner": runner}
    options = [*TINY_OPTIONS, "--data", str(place["data"]), "--split", str(place["split"])]
    first = teach.start_adaptation(str(place["base"]), "moths", "job-one", 0.5, **start, options=options)
    with pytest.raises(jobs.JobBusyError, match="Teaching job-one"):
        teach.start_adaptation(str(place["base"]), "moths", "job-two", 0.5, **start, options=options)
    done = runner.wait(first.id, timeout=240)
    assert done.state == jobs.DONE, (done.message, done.log)
    assert done.result.name == "job-one" and done.total > 0 and done.done > 0
    assert any("epoch 1" in line for line in done.log)
    assert teach.training_history(tmp_path, "job-one")["epoch"].tolist() == [1]

    # Ten minutes without an epoch limit: still training when it is cancelled.
    endless = ["--size", str(SIZE), "--data", str(place["data"]), "--split", str(place["split"])]
    second = teach.start_adaptation(str(place["base"]), "moths", "job-two", 10, **start, options=endless)
    wait_for(lambda: teaching.staging_folder(tmp_path, "job-two").exists() or runner.status(second.id).finished)
    assert runner.cancel(second.id)
    cancelled = runner.wait(second.id, timeout=60)
    assert cancelled.state == jobs.CANCELLED
    assert not (tmp_path / "job-two").exists() and not teaching.staging_folder(tmp_path, "job-two").exists()


def test_a_failing_fine_tune_job_says_why(place, tmp_path):
    runner = jobs.JobRunner()
    (place["root"] / "collections" / "empty" / "images").mkdir(parents=True)
    (place["root"] / "collections" / "empty" / "masks").mkdir()
    status = teach.start_adaptation(
        str(place["base"]), "empty", "nothing", 0.5, tmp_path, place["root"] / "collections", runner, TINY_OPTIONS
    )
    failed = runner.wait(status.id, timeout=120)
    assert failed.state == jobs.FAILED and "no usable photo-and-mask pair" in failed.message


def test_help_shows_an_example():
    done = subprocess.run(
        [sys.executable, "-m", "seg_core.adapt", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "python -m seg_core.adapt --base unet-best --folder" in done.stdout


def test_the_hold_out_is_stable_as_a_collection_grows():
    assert teaching.held_out_ids([f"p{k}" for k in range(teaching.HOLD_OUT_FROM - 1)]) == set()
    ids = [f"p{k}" for k in range(150)]
    held = teaching.held_out_ids(ids)
    assert len(held) == round(150 * teaching.HOLD_OUT_FRACTION)
    grown = teaching.held_out_ids([*ids, *(f"q{k}" for k in range(10))])
    assert len(held - grown) <= 2, "photos keep their side: the hash order decides"


def test_the_selection_pays_for_leeds_photos_lost_beyond_the_tolerance():
    assert adapt.selection_score({"collection_iou": 0.9}, None, 0.003) == 0.9
    kept = {"collection_iou": 0.9, "leeds_iou": 0.948}
    assert adapt.selection_score(kept, 0.95, 0.003) == 0.9
    lost = {"collection_iou": 0.92, "leeds_iou": 0.937}
    assert adapt.selection_score(lost, 0.95, 0.003) == pytest.approx(0.92 - adapt.LEEDS_PENALTY * 0.01)


def test_the_learning_rate_follows_the_time_budget():
    schedule = adapt.TimedCosine(1e-3, 100.0, warmup=0.1, floor=0.02)
    assert schedule.rate(0.0) == pytest.approx(1e-5) and schedule.rate(0.05) == pytest.approx(5e-4)
    assert schedule.rate(0.1) == pytest.approx(1e-3) and schedule.rate(0.55) == pytest.approx(0.51e-3)
    assert schedule.rate(1.0) == schedule.rate(3.0) == pytest.approx(2e-5)
