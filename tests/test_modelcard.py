import json

import pytest

from seg_core import modelcard, results
from seg_core.inference import MODELS_DIR, trained_models
from seg_core.robustness import load_robustness


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
