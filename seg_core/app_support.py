"""Plain helpers behind the dashboard: model catalogue, samples, analysis, downloads.

These functions hold the dashboard's logic without any Streamlit import, so
they can be tested directly and reused by other front ends.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from seg_core.config import CARD_FILE, WEIGHTS_FILE
from seg_core.data import REPO_ROOT, Sample
from seg_core.imaging import MAX_PIXELS, MAX_SIDE, ImageSource, check_same_size, load_image, load_mask
from seg_core.inference import MODELS_DIR, ModelLoadError, Predictor, baseline_names, load_predictor, trained_models
from seg_core.metrics import confusion, dice, iou
from seg_core.predict import CUTOUT_SUFFIX, MASK_SUFFIX

SAMPLES_DIR = REPO_ROOT / "samples"
#: File types the upload widgets offer (MIME types, so the browser filters the picker).
UPLOAD_TYPES = ["image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff", "image/gif"]
UPLOAD_LIMITS = (
    f"JPEG, PNG, WebP, BMP, TIFF or GIF (first frame); "
    f"at most {MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE:,} pixels a side"
)
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


def load_warm(name: str) -> Predictor:
    """Load a model and run it once on a small blank photo.

    The first call of a U-Net traces its graph; doing that here keeps it out of
    the first real photo's time.

    Raises:
        ModelLoadError: unknown name, or a model folder that does not load.
    """
    predictor = load_predictor(name)
    predictor.predict_proba(np.zeros((32, 32, 3), dtype=np.uint8))
    return predictor


def digest(data: bytes) -> str:
    """SHA-256 of uploaded bytes: the cache key of a photo."""
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Analysis:
    """A decoded photo and one model's probability map for it (both read-only)."""

    image: np.ndarray
    prob: np.ndarray
    infer_ms: float


def analyse(source: ImageSource, predictor: Predictor) -> Analysis:
    """Decode a photo and run a model on it once.

    The arrays are made read-only because the dashboard shares one analysis
    between reruns and sessions; every later step works on copies.

    Raises:
        InvalidImageError: the input is not a usable photo.
    """
    image = load_image(source)
    started = time.perf_counter()
    prob = predictor.predict_proba(image)
    infer_ms = (time.perf_counter() - started) * 1000.0
    image.flags.writeable = False
    prob.flags.writeable = False
    return Analysis(image, prob, infer_ms)


def load_truth(source: ImageSource, image: np.ndarray) -> np.ndarray:
    """Decode a ground-truth mask and check that it was made for ``image``.

    Raises:
        InvalidImageError: unreadable mask, or its size differs from the photo's.
    """
    truth = load_mask(source)
    check_same_size(image, truth)
    return truth


def scores(mask: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Foreground IoU and Dice of a predicted mask against the ground truth."""
    counts = confusion(mask, truth)
    return {"iou": iou(counts), "dice": dice(counts)}


def stem(filename: str) -> str:
    """The file name without folders and extension (``"a/b.photo.jpg"`` -> ``"b.photo"``)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def match_truth(photo_names: list[str], mask_names: list[str]) -> dict[str, str]:
    """Pair photos with ground-truth masks by file name.

    A mask matches a photo when its stem equals the photo's stem, optionally
    followed by ``_seg0`` (the Leeds convention) or ``_mask``.

    Returns:
        photo name -> mask name, for the photos that have a match.
    """
    by_stem = {}
    for name in mask_names:
        key = stem(name)
        for suffix in ("_seg0", "_mask"):
            key = key.removesuffix(suffix)
        by_stem.setdefault(key, name)
    return {photo: by_stem[stem(photo)] for photo in photo_names if stem(photo) in by_stem}


def output_names(photo_names: list[str]) -> list[tuple[str, str]]:
    """(mask file, cut-out file) names for each photo, unique within a batch."""
    used: set[str] = set()
    names = []
    for photo in photo_names:
        base = original = stem(photo) or "photo"
        copy = 1
        while base in used:
            copy += 1
            base = f"{original}-{copy}"
        used.add(base)
        names.append((f"{base}{MASK_SUFFIX}", f"{base}{CUTOUT_SUFFIX}"))
    return names


def zip_files(files: list[tuple[str, bytes]]) -> bytes:
    """A ZIP archive of (name, content) pairs, in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files:
            archive.writestr(name, content)
    return buffer.getvalue()
