"""The weights committed in models/ load and segment real sample photos well."""

import json

import pytest

from seg_core.core.config import CARD_FILE
from seg_core.core.imaging import load_image, load_mask
from seg_core.core.metrics import confusion, iou
from seg_core.core.paths import REPO_ROOT
from seg_core.data.leeds import SPLIT_FILE, file_sha256, load_split
from seg_core.runtime.base import DEFAULT_MODEL, threshold_mask
from seg_core.runtime.registry import load_predictor, trained_models

SAMPLES = REPO_ROOT / "samples"
PHOTOS = sorted((SAMPLES / "images").glob("*.jpg"))


def test_the_recipes_and_the_default_are_committed():
    assert {"unet-best", "unet-bce", "unet-light", "unet-colour", "u2netp-butterfly", DEFAULT_MODEL} <= set(
        trained_models()
    )
    assert trained_models()[0] == DEFAULT_MODEL


def test_samples_come_from_the_test_split():
    test_ids = set(load_split()["test"])
    assert len(PHOTOS) == 10 and all(p.stem in test_ids for p in PHOTOS)


@pytest.mark.parametrize("name", ["unet-best", "unet-bce", "unet-light", "unet-colour"])
def test_model_card_pins_the_split(name):
    card = json.loads((REPO_ROOT / "models" / name / CARD_FILE).read_text())
    assert card["split_sha256"] == file_sha256(SPLIT_FILE)
    assert card["parameters"] > 0 and card["input_size"] == 256 and card["loss"] in {"bce", "bce_dice"}


@pytest.mark.parametrize("name", ["unet-best", "unet-bce", "unet-light", "unet-colour"])
def test_committed_model_segments_sample_photos(name):
    predictor = load_predictor(name)
    for photo in PHOTOS[:4]:
        image = load_image(photo)
        truth = load_mask(SAMPLES / "masks" / f"{photo.stem}_seg0.png")
        mask = threshold_mask(predictor.predict_proba(image))
        assert mask.shape == truth.shape
        assert iou(confusion(mask, truth)) > 0.8, photo.name
