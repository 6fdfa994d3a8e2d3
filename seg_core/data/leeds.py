"""The Leeds Butterfly Dataset: finding pairs, species names, the fixed split.

Official layout::

    images/<id>.jpg|.png   segmentations/<id>_seg0.png   descriptions/<species>.txt

``<id>`` is 7 digits, the first 3 the species code (001 to 010).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from seg_core.core.imaging import InvalidImageError, check_same_size, load_image, load_mask
from seg_core.core.paths import MODELS_DIR, REPO_ROOT

log = logging.getLogger(__name__)

DATA_ENV = "WINGMASK_DATA"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "leedsbutterfly"
SPLIT_FILE = MODELS_DIR / "split.json"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "val", "test")

HOW_TO_GET = (
    "Download the Leeds Butterfly Dataset (Wang, Markert & Everingham, BMVC 2009) and "
    "pass its folder (the one holding images/, segmentations/ and descriptions/) with "
    f"--data DIR or the {DATA_ENV} environment variable."
)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset folder is missing or not in the Leeds layout."""


@dataclass(frozen=True)
class Sample:
    """One photo and its mask."""

    id: str
    image_path: Path
    mask_path: Path

    @property
    def species(self) -> str:
        return self.id[:3]


@dataclass
class DatasetScan:
    """What a folder holds: usable pairs, plus what could not be paired."""

    root: Path
    samples: list[Sample] = field(default_factory=list)
    missing_masks: list[str] = field(default_factory=list)
    orphan_masks: list[str] = field(default_factory=list)


def resolve_data_dir(arg: str | os.PathLike | None = None) -> Path:
    """The dataset folder from an argument, ``$WINGMASK_DATA``, or ``../shared``.

    Raises:
        DatasetNotFoundError: no folder in the Leeds layout was found.
    """
    path = Path(arg or os.environ.get(DATA_ENV) or DEFAULT_DATA).expanduser()
    if not (path / "images").is_dir() or not (path / "segmentations").is_dir():
        raise DatasetNotFoundError(f"no Leeds Butterfly Dataset at {path}. {HOW_TO_GET}")
    return path


def dataset_available(arg: str | os.PathLike | None = None) -> Path | None:
    """Like :func:`resolve_data_dir` but returns None instead of raising."""
    try:
        return resolve_data_dir(arg)
    except DatasetNotFoundError:
        return None


def scan_dataset(root: str | os.PathLike) -> DatasetScan:
    """Pair images with masks by id, whatever the image extension."""
    root = Path(root)
    scan = DatasetScan(root=root)
    images: dict[str, Path] = {}
    for path in sorted((root / "images").iterdir()):
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            images.setdefault(path.stem, path)
    masks = {p.name[: -len("_seg0.png")]: p for p in sorted((root / "segmentations").glob("*_seg0.png"))}
    for sid, image_path in images.items():
        if sid in masks:
            scan.samples.append(Sample(sid, image_path, masks[sid]))
        else:
            scan.missing_masks.append(sid)
    scan.orphan_masks = sorted(set(masks) - set(images))
    if scan.missing_masks:
        log.warning("%d images have no mask: %s", len(scan.missing_masks), scan.missing_masks[:5])
    return scan


def load_pair(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 photo, boolean mask) for one sample.

    Raises:
        InvalidImageError: either file is unreadable, or their sizes differ.
    """
    image = load_image(sample.image_path)
    mask = load_mask(sample.mask_path)
    check_same_size(image, mask)
    return image, mask


def load_pairs(samples: list[Sample]) -> tuple[list[Sample], list[np.ndarray], list[np.ndarray]]:
    """Load many pairs, skipping (and logging) unreadable ones."""
    kept, images, masks = [], [], []
    for sample in samples:
        try:
            image, mask = load_pair(sample)
        except InvalidImageError as exc:
            log.warning("skipping %s: %s", sample.id, exc)
            continue
        kept.append(sample)
        images.append(image)
        masks.append(mask)
    return kept, images, masks


def species_names(root: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """Species code -> (Latin name, common name), from ``descriptions/``."""
    names = {}
    for path in sorted((Path(root) / "descriptions").glob("*.txt")):
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        latin = lines[0].strip() if lines else path.stem
        common = lines[1].strip() if len(lines) > 1 else latin
        names[path.stem] = (latin, common)
    return names


SPECIES_FILE = MODELS_DIR / "species.json"


def write_species(root: str | os.PathLike, path: Path = SPECIES_FILE) -> None:
    """Store species names beside the results so the dashboard needs no dataset."""
    names = {code: {"latin": latin, "common": common} for code, (latin, common) in species_names(root).items()}
    Path(path).write_text(json.dumps(names, indent=1) + "\n")


def load_species(path: Path = SPECIES_FILE) -> dict[str, dict[str, str]]:
    """Species code -> {"latin": ..., "common": ...} from the committed file."""
    return json.loads(Path(path).read_text())


def make_split(
    ids: list[str], seed: int = 42, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
) -> dict[str, list[str]]:
    """A deterministic split of ids into train/val/test, stratified by species."""
    by_species: dict[str, list[str]] = defaultdict(list)
    for sid in sorted(ids):
        by_species[sid[:3]].append(sid)
    rng = random.Random(seed)
    split: dict[str, list[str]] = {name: [] for name in SPLITS}
    for species in sorted(by_species):
        members = by_species[species]
        rng.shuffle(members)
        n_val = round(len(members) * fractions[1])
        n_test = round(len(members) * fractions[2])
        split["test"] += members[:n_test]
        split["val"] += members[n_test : n_test + n_val]
        split["train"] += members[n_test + n_val :]
    return {name: sorted(members) for name, members in split.items()}


def write_split(split: dict[str, list[str]], path: Path, seed: int, fractions) -> None:
    """Write the split with the seed and fractions that made it."""
    payload = {"seed": seed, "fractions": list(fractions), **split}
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def load_split(path: str | os.PathLike = SPLIT_FILE) -> dict[str, list[str]]:
    """Read the committed split: {"train": ids, "val": ids, "test": ids}."""
    data = json.loads(Path(path).read_text())
    return {name: list(data[name]) for name in SPLITS}


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, recorded in model cards to pin the split used."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def split_samples(scan: DatasetScan, split: dict[str, list[str]], name: str) -> list[Sample]:
    """The scanned samples that belong to split ``name``, in split order."""
    by_id = {s.id: s for s in scan.samples}
    missing = [sid for sid in split[name] if sid not in by_id]
    if missing:
        log.warning("%d %s ids are not in %s: %s", len(missing), name, scan.root, missing[:5])
    return [by_id[sid] for sid in split[name] if sid in by_id]


def load_split_samples(
    data_dir: str | os.PathLike | None, split: str, split_file: str | os.PathLike = SPLIT_FILE
) -> list[Sample]:
    """The samples of one split found in the dataset folder, in split order (nothing decoded).

    Raises:
        DatasetNotFoundError: no dataset folder was found.
    """
    return split_samples(scan_dataset(resolve_data_dir(data_dir)), load_split(split_file), split)


def load_split_photos(
    data_dir: str | os.PathLike | None,
    split: str,
    split_file: str | os.PathLike = SPLIT_FILE,
    limit: int | None = None,
) -> tuple[list[Sample], list[np.ndarray], list[np.ndarray]]:
    """The readable (sample, photo, mask) triples of one split, in split order (the first ``limit``).

    Raises:
        DatasetNotFoundError: no dataset folder was found.
    """
    return load_pairs(load_split_samples(data_dir, split, split_file)[:limit])
