"""A tiny dataset in the Leeds layout, made from the ten sample photos (one per species)."""

import shutil
from pathlib import Path

from seg_core.core.paths import SAMPLES_DIR
from seg_core.data.leeds import write_split


def tiny_dataset(root: Path) -> Path:
    """Copy the samples into ``root`` as images/ + segmentations/; returns a split file (6 train, 4 val)."""
    for sub in ("images", "segmentations"):
        (root / sub).mkdir(parents=True)
    for image in sorted((SAMPLES_DIR / "images").glob("*.jpg")):
        shutil.copy(image, root / "images")
        shutil.copy(SAMPLES_DIR / "masks" / f"{image.stem}_seg0.png", root / "segmentations")
    ids = sorted(p.stem for p in (root / "images").glob("*.jpg"))
    split_file = root / "split.json"
    write_split({"train": ids[:6], "val": ids[6:], "test": []}, split_file, 1, (0.6, 0.4, 0.0))
    return split_file
