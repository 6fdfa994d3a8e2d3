"""A tiny end-to-end training run: a few photos, 64 px, one epoch."""

import json
import shutil

import numpy as np

from seg_core import train
from seg_core.config import CARD_FILE, HISTORY_FILE, WEIGHTS_FILE
from seg_core.data import REPO_ROOT, load_split, write_split
from seg_core.imaging import load_image
from seg_core.inference import UNetPredictor

SAMPLES = REPO_ROOT / "samples"


def _tiny_dataset(root):
    for sub in ("images", "segmentations"):
        (root / sub).mkdir(parents=True)
    for image in sorted((SAMPLES / "images").glob("*.jpg")):
        shutil.copy(image, root / "images")
        shutil.copy(SAMPLES / "masks" / f"{image.stem}_seg0.png", root / "segmentations")
    ids = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    split_file = root / "split.json"
    write_split({"train": ids[:6], "val": ids[6:], "test": []}, split_file, 1, (0.6, 0.4, 0.0))
    return split_file


def test_tiny_training_run_writes_a_loadable_model(tmp_path):
    split_file = _tiny_dataset(tmp_path / "data")
    out = train.train(
        train.build_parser().parse_args(
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
    predictor = UNetPredictor(out)
    assert predictor.model.count_params() == card["parameters"]
    photo = load_image(next((SAMPLES / "images").glob("*.jpg")))
    prob = predictor.predict_proba(photo)
    assert prob.shape == photo.shape[:2] and prob.dtype == np.float32
