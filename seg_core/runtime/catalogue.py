"""What a user can choose from: the models on offer and the shipped sample photos.

Nothing here loads network weights: U-Nets are described by their model
cards, so listing the models stays instant however many there are.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from seg_core.core.config import CARD_FILE, WEIGHTS_FILE
from seg_core.core.paths import MODELS_DIR, SAMPLES_DIR
from seg_core.data.leeds import Sample
from seg_core.runtime.base import ModelLoadError
from seg_core.runtime.registry import baseline_names, load_predictor, trained_models

CATALOGUE_COLUMNS = ["model", "kind", "recipe", "parameters", "file_mb"]


def sample_photos(samples_dir: str | Path = SAMPLES_DIR) -> list[Sample]:
    """The shipped sample photos that have a mask, sorted by id."""
    samples_dir = Path(samples_dir)
    photos = []
    for image_path in sorted((samples_dir / "images").glob("*.jpg")):
        mask_path = samples_dir / "masks" / f"{image_path.stem}_seg0.png"
        if mask_path.is_file():
            photos.append(Sample(image_path.stem, image_path, mask_path))
    return photos


def sample_label(photo: Sample, species: dict[str, dict[str, str]]) -> str:
    """A readable label such as ``"0010010 - Monarch (Danaus plexippus)"``."""
    entry = species.get(photo.species)
    return f"{photo.id} - {entry['common']} ({entry['latin']})" if entry else photo.id


def _unet_entry(directory: Path) -> dict:
    card_path = directory / CARD_FILE
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    weights = directory / WEIGHTS_FILE
    return {
        "model": directory.name,
        "kind": "unet",
        "recipe": card.get("recipe", ""),
        "parameters": card.get("parameters"),
        "file_mb": round(weights.stat().st_size / 1e6, 2) if weights.is_file() else None,
    }


def _baseline_entry(name: str) -> dict:
    try:
        info = load_predictor(name).info()
    except ModelLoadError as exc:
        info = {"recipe": f"unavailable: {exc}"}
    return {
        "model": name,
        "kind": "baseline",
        "recipe": info.get("recipe") or info.get("description", ""),
        "parameters": info.get("parameters", 0),
        "file_mb": info.get("file_mb", 0.0),
    }


def model_catalogue(models_dir: str | Path = MODELS_DIR) -> pd.DataFrame:
    """Every selectable model with its recipe, size and file size, without loading weights.

    U-Nets are described by their model cards; baselines (cheap to build) by
    their :meth:`Predictor.info`.

    Returns:
        One row per model: model, kind, recipe, parameters, file_mb.
    """
    rows = [_unet_entry(Path(models_dir) / name) for name in trained_models(models_dir)]
    rows += [_baseline_entry(name) for name in baseline_names()]
    return pd.DataFrame(rows, columns=CATALOGUE_COLUMNS)
