import json
import shutil

import pytest

from seg_core.core.paths import MODELS_DIR
from seg_core.evaluation import modelcard, results
from seg_core.evaluation.robustness import load_robustness
from seg_core.runtime import int8
from seg_core.runtime.registry import trained_models


def test_card_without_results_says_how_to_get_them():
    text = modelcard.render(MODELS_DIR / "unet-light", None, None)
    assert text.startswith("# unet-light")
    assert "python -m seg_core.evaluate" in text and "python -m seg_core.bench" in text
    card = json.loads((MODELS_DIR / "unet-light" / "card.json").read_text())
    assert card["command"].startswith("python -m seg_core.train ") and f"Command: `{card['command']}`" in text


@pytest.mark.parametrize("name", trained_models())
def test_committed_cards_match_the_committed_results(name):
    text = modelcard.render(MODELS_DIR / name, results.load_eval(), results.load_bench(), load_robustness())
    assert "| small in frame (2.5x) |" in text
    assert (MODELS_DIR / name / modelcard.CARD_README).read_text() == text, "run python -m seg_core.modelcard"


def test_the_card_says_how_its_int8_version_was_made_and_whether_it_passed(tmp_path):
    committed = MODELS_DIR / "unet-light"
    text = modelcard.render(committed, None, None)
    meta = json.loads((int8.int8_folder(committed) / int8.META_FILE).read_text())
    assert f"calibrated on {meta['calibration_photos']} train photos" in text and "check passed" in text
    # A copy without the INT8 folder or the check file: the card says how to make one.
    copy = tmp_path / "unet-light"
    copy.mkdir()
    for name in ("card.json", "config.json", "history.csv"):
        shutil.copy(committed / name, copy / name)
    assert "None yet: `python -m seg_core.quantize --models unet-light` makes one" in modelcard.render(copy, None, None)
    shutil.copytree(int8.int8_folder(committed), int8.int8_folder(copy))
    assert "not checked yet" in modelcard.render(copy, None, None)
