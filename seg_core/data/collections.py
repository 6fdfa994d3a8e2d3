"""Labelled collections from other tools: a folder of photos and masks, or a COCO file.

Two layouts are read:

* a folder with ``images/`` (photos) and ``masks/`` (masks with the same stem:
  ``a.jpg`` pairs with ``a.png``, and with ``a_mask.png`` or Leeds'
  ``a_seg0.png``), in PNG, JPEG, TIFF, BMP or WebP; an optional
  ``species.csv`` (columns ``image,species``) names each photo's species;
* a COCO instances file and a folder of photos: polygons and RLE, every
  instance of a photo merged into one mask; when the file has several
  categories, each photo's category is its species.

Masks come in several conventions and :func:`read_mask` says which one a file
uses: ``0/255`` (soft or lossy edges cut at 128), ``0/1``, ``palette`` (a
colour palette: black is background, any other colour butterfly, except in the
Leeds dataset's own palette, where white and green are) or ``any non-zero`` (a
few label values such as 0 and 38: every non-zero value is butterfly). Colour
masks are read by their luminance.

Reading goes in two steps. A scan pairs the files and lists what cannot be
paired; :func:`check_pairs` then decodes each pair once and sets aside the
unusable ones, each with its reason (:class:`Skipped`). The decoded pixels are
not kept: :meth:`Collection.photos` decodes the good pairs again one at a time,
so a collection of any size fits in memory.

Uploaded ZIP archives are unpacked by :func:`extract_zip`, which refuses
absolute paths, ``..``, links, and archives over :data:`MAX_UNZIPPED_BYTES` or
:data:`MAX_ZIP_FILES` files.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import stat
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, ImageOps
from pycocotools import mask as coco_mask

from seg_core.core.imaging import ImageSource, InvalidImageError, load_image, open_image, to_png_bytes
from seg_core.core.paths import REPO_ROOT
from seg_core.data.leeds import SPLITS

COLLECTIONS_ENV = "WINGMASK_COLLECTIONS"
#: Where the dashboard keeps collections unless ``WINGMASK_COLLECTIONS`` says otherwise (git-ignored).
DEFAULT_COLLECTIONS = REPO_ROOT / "collections"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
IMAGE_KINDS = "PNG, JPEG, TIFF, BMP or WebP"
IMAGES_FOLDER = "images"
#: Folders a folder collection's masks may be in, in order of preference (Leeds calls its own ``segmentations``).
MASK_FOLDERS = ("masks", "segmentations")
SPECIES_FILE = "species.csv"
#: Endings a mask's stem may add to its photo's (``a_mask.png``, Leeds' ``a_seg0.png``).
MASK_SUFFIXES = ("_seg0", "_mask")
#: Files of a collection folder that Wingmask itself writes there (never reported as stray files).
OWN_FILES = re.compile(r"eval_.*\.(csv|json)|annotations\.json|species\.csv")

ZERO_255 = "0/255"
ZERO_ONE = "0/1"
PALETTE = "palette"
NON_ZERO = "any non-zero"
#: What a COCO collection's masks are "read as": drawn from its polygons and RLE.
COCO = "COCO"
#: Grey masks with more distinct values than this (and a bright foreground) have soft or lossy edges.
FEW_LEVELS = 8
#: The Leeds dataset's palette masks: black, white, red, green; white and green (1 and 3) are butterfly.
LEEDS_PALETTE = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0]], np.uint8)
LEEDS_FOREGROUND = (1, 3)

#: Largest ZIP the dashboard accepts, in MB (the upload widget's limit).
MAX_ZIP_MB = 200
MAX_ZIP_BYTES = MAX_ZIP_MB * 1024 * 1024
#: Cap on what a ZIP may unpack to, so a small archive cannot fill the disk.
MAX_UNZIPPED_BYTES = 2 * 1024**3
MAX_ZIP_FILES = 10_000
_CHUNK = 1024 * 1024

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_RULE = "1 to 64 letters, digits, '-', '_' or '.', starting with a letter or digit"


class CollectionError(ValueError):
    """A collection cannot be used as a whole; the message says why."""


class CollectionNotFoundError(CollectionError, FileNotFoundError):
    """The collection's folder, photo folder or COCO file does not exist or is not in a known layout."""


class EmptyCollectionError(CollectionError):
    """Not one usable photo-and-mask pair; :attr:`skipped` says what was wrong with each file."""

    def __init__(self, message: str, skipped: list[Skipped]):
        super().__init__(message)
        self.skipped = skipped


class CocoFormatError(CollectionError):
    """The COCO file is not JSON, or not in the COCO instances layout."""


class ArchiveError(CollectionError):
    """An uploaded ZIP is not a readable archive, is unsafe to unpack, or is too large."""


class CollectionNameError(CollectionError):
    """A collection name is not a safe folder name, or is taken."""


class UnusablePairError(InvalidImageError):
    """One pair cannot be used; :attr:`file` names the file at fault (photo or mask) and :attr:`reason` says why."""

    def __init__(self, file: str, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = file, reason


@dataclass(frozen=True)
class Skipped:
    """A file (or COCO annotation) left out of a collection, and why."""

    file: str
    reason: str


@dataclass(frozen=True)
class MaskReading:
    """A decoded mask (True = butterfly) and the convention it was read in (``0/255``, ``0/1``, ``palette``, ...)."""

    mask: np.ndarray
    convention: str


@dataclass(frozen=True)
class LabelledPhoto:
    """One decoded pair: photo id, RGB photo, boolean mask at the photo's size, species and mask convention."""

    id: str
    image: np.ndarray
    mask: np.ndarray
    species: str = ""
    convention: str = ""


@dataclass(frozen=True)
class PairSource:
    """Where one pair's photo and mask come from; :meth:`load` decodes them.

    Attributes:
        id: the photo's stem, unique in the collection.
        image_path: the photo file.
        label: how the photo is named in messages (its path in the collection).
        mask_path: the mask file (folder collections).
        segmentations: the photo's COCO segmentations as ``(annotation id, segmentation)`` (COCO collections).
        coco_size: the (height, width) the COCO file gives the photo, when it gives one.
        species: the photo's species, or "".
    """

    id: str
    image_path: Path
    label: str
    mask_path: Path | None = None
    segmentations: tuple[tuple[object, object], ...] = ()
    coco_size: tuple[int, int] | None = None
    species: str = ""

    @property
    def mask_label(self) -> str:
        """How the mask is named in messages: its folder and file name, or the photo's name for COCO masks."""
        return f"{self.mask_path.parent.name}/{self.mask_path.name}" if self.mask_path else self.label

    def load(self) -> LabelledPhoto:
        """Decode the photo and its mask.

        Raises:
            UnusablePairError: unreadable photo or mask, a mask of another size,
                a broken COCO segmentation, or an empty mask; names the file at fault.
        """
        try:
            image = load_image(self.image_path)
        except InvalidImageError as exc:
            raise UnusablePairError(self.label, str(exc)) from exc
        height, width = image.shape[:2]
        try:
            reading = read_mask(self.mask_path) if self.mask_path else MaskReading(self._coco_mask(height, width), COCO)
        except InvalidImageError as exc:
            raise UnusablePairError(self.mask_label, str(exc)) from exc
        mask_height, mask_width = reading.mask.shape
        if (mask_height, mask_width) != (height, width):
            raise UnusablePairError(
                self.mask_label,
                f"the mask is {mask_width}x{mask_height} pixels but the photo ({self.label}) is {width}x{height}; "
                "use the mask made for this photo",
            )
        if not reading.mask.any():
            raise UnusablePairError(self.mask_label, f"the mask of {self.label} is empty (no butterfly pixel)")
        return LabelledPhoto(self.id, image, reading.mask, self.species, reading.convention)

    def _coco_mask(self, height: int, width: int) -> np.ndarray:
        if self.coco_size is not None and self.coco_size != (height, width):
            raise InvalidImageError(
                f"the COCO file gives it {self.coco_size[1]}x{self.coco_size[0]} pixels but the photo is "
                f"{width}x{height}; use the annotations made for this photo"
            )
        mask = np.zeros((height, width), dtype=bool)
        for annotation_id, segmentation in self.segmentations:
            try:
                mask |= _coco_instance(segmentation, height, width)
            except (CocoFormatError, ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
                # Beyond the checks, pycocotools raises assorted types on input it cannot read.
                raise InvalidImageError(f"annotation {annotation_id}: broken segmentation ({exc})") from exc
        return mask


def _rle_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' own encoding, read in Python).

    pycocotools decodes runs without bounds checks, so a string whose runs do
    not add up to the photo would write past its buffer: they are checked first.

    Raises:
        CocoFormatError: a character outside the encoding.
    """
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text) or not 48 <= ord(text[position]) < 112:
                raise CocoFormatError("compressed RLE counts hold characters outside the encoding")
            code = ord(text[position]) - 48
            value |= (code & 0x1F) << (5 * shift)
            more = bool(code & 0x20)
            position += 1
            shift += 1
            if not more and code & 0x10:
                value |= -1 << (5 * shift)
        counts.append(value + counts[-2] if len(counts) > 2 else value)
    return counts


def _check_segmentation(segmentation: object, height: int, width: int) -> None:
    """Refuse what pycocotools would misread or crash on.

    Raises:
        CocoFormatError: malformed polygons, an RLE of another size, or runs that do not cover the photo.
    """
    if isinstance(segmentation, list):
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                raise CocoFormatError("a polygon needs an even number of at least 6 coordinates")
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in polygon):
                raise CocoFormatError("polygon coordinates must be finite numbers")
        return
    if not isinstance(segmentation, dict):
        raise CocoFormatError("a segmentation is a list of polygons or an RLE object")
    size = segmentation.get("size")
    if not isinstance(size, list) or size != [height, width]:
        raise CocoFormatError(f"RLE size {size} differs from the photo's [{height}, {width}]")
    counts = segmentation.get("counts")
    if isinstance(counts, str):
        counts = _rle_counts(counts)
    if not isinstance(counts, list) or not all(isinstance(v, int) and v >= 0 for v in counts):
        raise CocoFormatError("RLE counts must be a string or a list of whole numbers")
    if sum(counts) != height * width:
        raise CocoFormatError(f"RLE runs cover {sum(counts)} pixels, not the photo's {height * width}")


def _coco_instance(segmentation: object, height: int, width: int) -> np.ndarray:
    """One instance's mask through pycocotools, after :func:`_check_segmentation`."""
    _check_segmentation(segmentation, height, width)
    if isinstance(segmentation, list):
        # pycocotools rasterises every point of an edge: a far-off vertex would cost memory without end.
        inside = [
            np.clip(np.asarray(p, np.float64).reshape(-1, 2), 0, [width, height]).ravel().tolist() for p in segmentation
        ]
        return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(inside, height, width))).astype(bool)
    if isinstance(segmentation["counts"], list):
        segmentation = coco_mask.frPyObjects(segmentation, height, width)
    return coco_mask.decode(segmentation).astype(bool)


@dataclass
class Collection:
    """A labelled collection: its name, the usable pairs and what was left out.

    Attributes:
        name: the collection's name (the ``split`` of its evaluation rows).
        source: the folder or COCO file it was read from.
        pairs: usable pairs (checked ones after :func:`check_pairs`), in file-name order.
        skipped: files left out, each with its reason.
        conventions: mask convention -> number of checked pairs read in it.
    """

    name: str
    source: Path
    pairs: list[PairSource] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    conventions: dict[str, int] = field(default_factory=dict)

    @property
    def has_species(self) -> bool:
        """Whether any pair has a species (then per-species scores make sense)."""
        return any(pair.species for pair in self.pairs)

    def photos(self) -> Iterator[LabelledPhoto]:
        """The pairs decoded one at a time (raises UnusablePairError for a pair that became unreadable)."""
        for pair in self.pairs:
            yield pair.load()


def read_mask(source: ImageSource) -> MaskReading:
    """Decode a ground-truth mask from another tool, detecting its convention.

    * ``0/1``: only the values 0 and 1;
    * ``0/255``: only 0 and 255, or a bright foreground with soft or lossy
      (JPEG) edges: cut at 128;
    * ``palette``: a palette image with colours: black is background, any other colour butterfly
      (in the Leeds dataset's own palette of black, white, red and green, white and green are butterfly);
    * ``any non-zero``: a few other values (label ids such as 0 and 38): every non-zero value is butterfly.

    Colour masks are read by their luminance (a red butterfly on black is a
    few label values, so any non-zero: butterfly); a mask whose colours are all
    the same but whose alpha varies is read from its alpha channel; 16-bit
    masks are scaled to 8 bits; the EXIF orientation is applied as for photos.

    Raises:
        InvalidImageError: empty, unreadable, truncated or too large file.
    """
    img = open_image(source)
    try:
        img.load()
        if img.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            img = ImageOps.exif_transpose(img)
        if img.mode == "P":
            palette_mask = _palette_mask(img)
            if palette_mask is not None:
                return MaskReading(palette_mask, PALETTE)
            img = img.convert("L")
        levels = _levels(img)
    except InvalidImageError:
        raise
    except Exception as exc:  # a hostile file can make a Pillow decoder raise almost any type
        raise InvalidImageError(f"the mask is corrupt or truncated ({exc or type(exc).__name__})") from exc
    return _classify(levels)


def _palette_mask(img) -> np.ndarray | None:
    """The mask of a colour palette image; None for a grey palette (then its grey levels are the mask)."""
    index = np.asarray(img)
    palette = np.zeros((256, 3), np.uint8)
    given = np.asarray(img.getpalette() or [0, 0, 0], dtype=np.uint8).reshape(-1, 3)[:256]
    palette[: len(given)] = given
    used = np.unique(index)
    if (palette[used] == palette[used][:, :1]).all():
        return None
    if used.max() < len(LEEDS_PALETTE) and np.array_equal(palette[: len(LEEDS_PALETTE)], LEEDS_PALETTE):
        return np.isin(index, LEEDS_FOREGROUND)
    return palette[index].any(axis=2)


def _levels(img) -> np.ndarray:
    """A 2-D uint8 array of mask levels: luminance, or a varying alpha when the colour carries nothing."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        top = values.max(initial=0)
        peak = 65535.0 if img.mode.startswith("I;16") or top > 255 else (1.0 if img.mode == "F" and top <= 1 else 255.0)
        return np.clip(np.rint(values / peak * 255.0), 0, 255).astype(np.uint8)
    if img.mode == "1":
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(img.convert("RGBA"))
        colour, alpha = rgba[..., :3], rgba[..., 3]
        if (colour == colour.reshape(-1, 3)[0]).all() and alpha.min() != alpha.max():
            return alpha.copy()
    # Luminance, not the brightest channel: redistributed Leeds masks carry a dark-red frame that is not butterfly.
    return np.asarray(img.convert("L"))


def _classify(levels: np.ndarray) -> MaskReading:
    values = np.unique(levels)
    if set(values.tolist()) <= {0, 1}:
        return MaskReading(levels == 1, ZERO_ONE)
    graded = len(values) > FEW_LEVELS and values[-1] >= 128
    if set(values.tolist()) <= {0, 255} or graded:
        return MaskReading(levels >= 128, ZERO_255)
    return MaskReading(levels > 0, NON_ZERO)


def truth_mask(source: ImageSource, shape: tuple[int, int]) -> np.ndarray:
    """A collection's mask for a photo of (height, width) ``shape``, in whatever convention it is.

    Raises:
        InvalidImageError: unreadable mask, or its size is not ``shape``.
    """
    mask = read_mask(source).mask
    if mask.shape != tuple(shape):
        raise InvalidImageError(
            f"the mask is {mask.shape[1]}x{mask.shape[0]} pixels but the photo is {shape[1]}x{shape[0]}"
        )
    return mask


def check_name(name: str) -> str:
    """A collection name, checked: a plain folder name (no path), not a Leeds split name.

    Raises:
        CollectionNameError: the name breaks :data:`NAME_RULE` or is ``train``, ``val`` or ``test``.
    """
    name = name.strip()
    if not NAME_PATTERN.fullmatch(name):
        raise CollectionNameError(f"{name!r} is not a usable collection name: use {NAME_RULE}")
    if name.lower() in SPLITS:
        raise CollectionNameError(f"{name!r} is the name of a Leeds split; choose another collection name")
    return name


def slugify(text: str) -> str:
    """A valid collection name made from ``text`` (a folder or file name): other characters become '-'."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")[:64].strip("-_.")
    if not slug:
        return "collection"
    return f"{slug}-photos" if slug.lower() in SPLITS else slug


def collections_dir(environ: dict[str, str] | None = None) -> Path:
    """The collections folder: ``$WINGMASK_COLLECTIONS`` or :data:`DEFAULT_COLLECTIONS`."""
    value = (os.environ if environ is None else environ).get(COLLECTIONS_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_COLLECTIONS


def stem(filename: str) -> str:
    """A file name without folders and extension (``"a/b.photo.jpg"`` -> ``"b.photo"``): a photo's id."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def match_masks(photo_names: list[str], mask_names: list[str]) -> dict[str, str]:
    """Photo name -> mask name, by stem; a mask's stem may end in ``_mask`` or Leeds' ``_seg0`` (first mask wins)."""
    by_stem: dict[str, str] = {}
    for name in mask_names:
        key = stem(name)
        for suffix in MASK_SUFFIXES:
            key = key.removesuffix(suffix)
        by_stem.setdefault(key, name)
    return {photo: by_stem[stem(photo)] for photo in photo_names if stem(photo) in by_stem}


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _listing(folder: Path, shown: str, skipped: list[Skipped]) -> list[str]:
    """Image file names in ``folder`` (sorted); other entries go to ``skipped``; hidden files are ignored."""
    names = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue  # .DS_Store, AppleDouble files: never meant as data
        where = f"{shown}/{path.name}"
        if path.is_dir():
            skipped.append(Skipped(f"{where}/", "a folder inside the collection (sub-folders are not read)"))
        elif not _is_image_name(path.name):
            reason = f"not an image file (extension {path.suffix or 'none'}; expected {IMAGE_KINDS})"
            skipped.append(Skipped(where, reason))
        else:
            names.append(path.name)
    return names


def _unique_stems(names: list[str], shown: str, skipped: list[Skipped]) -> list[str]:
    """``names`` without those whose stem an earlier name already has (two photos cannot share an id)."""
    first: dict[str, str] = {}
    kept = []
    for name in names:
        key = stem(name)
        if key in first:
            skipped.append(Skipped(f"{shown}/{name}", f"another file has the same name stem ({first[key]})"))
            continue
        first[key] = name
        kept.append(name)
    return kept


def _read_species(path: Path, skipped: list[Skipped]) -> dict[str, str]:
    """Photo stem -> species from ``species.csv``; an unreadable file is reported and ignored."""
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        skipped.append(Skipped(path.name, f"not a readable CSV file ({exc}); species ignored"))
        return {}
    if not rows or not {"image", "species"} <= set(rows[0]):
        skipped.append(Skipped(path.name, "needs the columns 'image' and 'species'; species ignored"))
        return {}
    return {stem(row["image"] or ""): (row["species"] or "").strip() for row in rows}


def scan_folder(folder: str | os.PathLike, name: str | None = None) -> Collection:
    """Pair the photos of ``folder/images/`` with the masks of ``folder/masks/`` by name (nothing decoded).

    Args:
        folder: the collection folder.
        name: the collection's name (default: made from the folder's name).

    Returns:
        A :class:`Collection` whose pairs are not checked yet (see :func:`check_pairs`).

    Raises:
        CollectionNotFoundError: no such folder, or it has no ``images/`` or ``masks/`` folder.
        CollectionNameError: ``name`` is not a valid collection name.
    """
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise CollectionNotFoundError(f"no folder {root}")
    images = root / IMAGES_FOLDER
    masks = next((root / m for m in MASK_FOLDERS if (root / m).is_dir()), None)
    if not images.is_dir() or masks is None:
        raise CollectionNotFoundError(
            f"{root} is not a collection folder: it needs images/ (photos) and masks/ (masks with the same file names)"
        )
    collection = Collection(check_name(name) if name else slugify(root.resolve().name), root)
    skipped = collection.skipped
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.name in (IMAGES_FOLDER, masks.name) or OWN_FILES.fullmatch(path.name):
            continue
        skipped.append(Skipped(path.name + ("/" if path.is_dir() else ""), "not inside images/ or masks/ (ignored)"))
    photo_names = _unique_stems(_listing(images, IMAGES_FOLDER, skipped), IMAGES_FOLDER, skipped)
    mask_names = _listing(masks, masks.name, skipped)
    species = _read_species(root / SPECIES_FILE, skipped)
    matches = match_masks(photo_names, mask_names)
    for photo in photo_names:
        if photo not in matches:
            skipped.append(Skipped(f"{IMAGES_FOLDER}/{photo}", f"no mask with the same name in {masks.name}/"))
            continue
        key = stem(photo)
        collection.pairs.append(
            PairSource(
                key, images / photo, f"{IMAGES_FOLDER}/{photo}", masks / matches[photo], species=species.get(key, "")
            )
        )
    used = set(matches.values())
    for mask in mask_names:
        if mask not in used:
            skipped.append(Skipped(f"{masks.name}/{mask}", f"no photo with the same name in {IMAGES_FOLDER}/"))
    return collection


def _load_coco(path: Path) -> dict:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CocoFormatError(f"{path.name} is not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise CocoFormatError(f"{path.name} is not a COCO file: it has no 'images' list")
    if not isinstance(data.get("annotations", []), list):
        raise CocoFormatError(f"{path.name} is not a COCO file: 'annotations' is not a list")
    return data


def _photo_file(images: Path, file_name: str) -> Path | None:
    """The photo a COCO ``file_name`` names inside ``images`` (by its path, else by its base name); never outside."""
    base = images.resolve()
    candidates = [file_name.replace("\\", "/"), file_name.replace("\\", "/").rsplit("/", 1)[-1]]
    for candidate in candidates:
        path = (base / candidate).resolve()
        if path.is_file() and path.is_relative_to(base):
            return path
    return None


def _coco_size(entry: dict) -> tuple[int, int] | None:
    height, width = entry.get("height"), entry.get("width")
    if isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0:
        return height, width
    return None


def _coco_entries(data: dict, source: str, skipped: list[Skipped]) -> dict[object, dict]:
    """Image id -> image entry; entries without an id or file name, or with a repeated id, go to ``skipped``."""
    entries: dict[object, dict] = {}
    for entry in data["images"]:
        if not isinstance(entry, dict) or "id" not in entry or not isinstance(entry.get("file_name"), str):
            skipped.append(Skipped(f"{source}: image {str(entry)[:60]}", "needs an 'id' and a 'file_name'"))
        elif entry["id"] in entries:
            skipped.append(Skipped(entry["file_name"], f"image id {entry['id']} is listed twice"))
        else:
            entries[entry["id"]] = entry
    return entries


def _coco_instances(data: dict, entries: dict, source: str, skipped: list[Skipped]) -> dict[object, list[dict]]:
    """Image id -> its annotations; annotations without a segmentation or of an unlisted image go to ``skipped``."""
    instances: dict[object, list[dict]] = {image_id: [] for image_id in entries}
    for number, annotation in enumerate(data.get("annotations", []), start=1):
        if not isinstance(annotation, dict) or "segmentation" not in annotation:
            skipped.append(Skipped(f"{source}: annotation #{number}", "has no segmentation"))
            continue
        image_id = annotation.get("image_id")
        if image_id not in instances:
            label = f"{source}: annotation {annotation.get('id', f'#{number}')}"
            skipped.append(Skipped(label, f"refers to image id {image_id!r}, which 'images' does not list"))
            continue
        instances[image_id].append(annotation)
    return instances


def _coco_pair(key: str, photo: Path, entry: dict, found: list[dict], species: str) -> PairSource:
    segmentations = tuple((a.get("id", "?"), a["segmentation"]) for a in found)
    return PairSource(key, photo, entry["file_name"], None, segmentations, _coco_size(entry), species)


def scan_coco(coco_file: str | os.PathLike, images_dir: str | os.PathLike, name: str | None = None) -> Collection:
    """Pair the photos a COCO instances file lists with their annotations (nothing decoded yet).

    Annotations of an image id the file does not list, photos that are
    missing, listed twice or have no annotation, and files of ``images_dir``
    the COCO file does not list are reported in ``skipped``.

    Args:
        coco_file: the COCO JSON file.
        images_dir: the folder holding its photos (``file_name`` is looked up there, by path then by base name).
        name: the collection's name (default: made from the COCO file's name).

    Raises:
        CollectionNotFoundError: no such file or folder.
        CocoFormatError: not JSON, or no ``images`` list.
        CollectionNameError: ``name`` is not a valid collection name.
    """
    path, images = Path(coco_file).expanduser(), Path(images_dir).expanduser()
    if not path.is_file():
        raise CollectionNotFoundError(f"no COCO file {path}")
    if not images.is_dir():
        raise CollectionNotFoundError(f"no photo folder {images}")
    data = _load_coco(path)
    collection = Collection(check_name(name) if name else slugify(path.stem), path)
    skipped = collection.skipped
    entries = _coco_entries(data, path.name, skipped)
    instances = _coco_instances(data, entries, path.name, skipped)
    categories = {
        c.get("id"): str(c.get("name", c.get("id"))) for c in data.get("categories", []) if isinstance(c, dict)
    }
    # One category is "butterfly"; several name the species.
    several = len({a.get("category_id") for found in instances.values() for a in found}) > 1
    listed, seen = set(), set()
    for image_id, entry in sorted(entries.items(), key=lambda item: item[1]["file_name"]):
        photo = _photo_file(images, entry["file_name"])
        key, found = stem(entry["file_name"]), instances[image_id]
        if photo is not None:
            listed.add(photo)
        if photo is None:
            skipped.append(Skipped(entry["file_name"], f"photo not found in {images.name}/"))
        elif key in seen:
            skipped.append(Skipped(entry["file_name"], "another photo of the COCO file has the same name stem"))
        elif not found:
            skipped.append(Skipped(entry["file_name"], "no annotation for this photo (empty mask)"))
        else:
            seen.add(key)
            names = sorted({categories.get(a.get("category_id"), str(a.get("category_id"))) for a in found})
            collection.pairs.append(_coco_pair(key, photo, entry, found, "+".join(names) if several else ""))
    for stray in sorted(images.iterdir()):
        if stray.is_file() and not stray.name.startswith(".") and stray.resolve() not in listed:
            skipped.append(Skipped(f"{images.name}/{stray.name}", f"not listed in {path.name}"))
    return collection


def check_pairs(
    collection: Collection,
    guard: Callable[[PairSource], AbstractContextManager] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    on_usable: Callable[[LabelledPhoto], None] | None = None,
) -> Collection:
    """Decode every pair once; keep the usable ones and report the others in ``skipped``.

    Args:
        collection: a scanned collection (:func:`scan_folder`, :func:`scan_coco`).
        guard: a context manager held while one pair is decoded (e.g. an admission slot).
        on_progress: called with (pairs checked, pairs) after each pair.
        on_usable: called with each usable pair, decoded, inside ``guard``
            (e.g. to keep a COCO collection's masks as files: :func:`write_mask`).

    Returns:
        The same collection, its ``pairs`` checked and its ``conventions`` counted.
    """
    good, conventions = [], Counter()
    total = len(collection.pairs)
    for done, pair in enumerate(collection.pairs, start=1):
        with guard(pair) if guard is not None else contextlib.nullcontext():
            try:
                photo = pair.load()
            except UnusablePairError as exc:
                collection.skipped.append(Skipped(exc.file, exc.reason))
            else:
                good.append(pair)
                conventions[photo.convention] += 1
                if on_usable is not None:
                    on_usable(photo)
        if on_progress is not None:
            on_progress(done, total)
    collection.pairs = good
    collection.conventions = dict(conventions.most_common())
    return collection


def require_pairs(collection: Collection) -> Collection:
    """``collection`` when it has a usable pair.

    Raises:
        EmptyCollectionError: no usable pair; the message names the first few skipped files.
    """
    if collection.pairs:
        return collection
    reasons = "; ".join(f"{s.file}: {s.reason}" for s in collection.skipped[:5])
    more = f" (and {len(collection.skipped) - 5} more)" if len(collection.skipped) > 5 else ""
    raise EmptyCollectionError(
        f"no usable photo-and-mask pair in {collection.source}" + (f": {reasons}{more}" if reasons else ""),
        collection.skipped,
    )


def read_folder(folder: str | os.PathLike, name: str | None = None) -> Collection:
    """:func:`scan_folder`, :func:`check_pairs` and :func:`require_pairs` in one call."""
    return require_pairs(check_pairs(scan_folder(folder, name)))


def read_coco(coco_file: str | os.PathLike, images_dir: str | os.PathLike, name: str | None = None) -> Collection:
    """:func:`scan_coco`, :func:`check_pairs` and :func:`require_pairs` in one call."""
    return require_pairs(check_pairs(scan_coco(coco_file, images_dir, name)))


def write_mask(photo: LabelledPhoto, folder: str | os.PathLike) -> Path:
    """Write a pair's mask as ``<folder>/<id>.png`` (0 and 255), e.g. to keep a COCO collection as a folder."""
    target = Path(folder)
    target.mkdir(parents=True, exist_ok=True)
    path = target / f"{photo.id}.png"
    path.write_bytes(to_png_bytes(photo.mask))
    return path


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why a ZIP member must not be unpacked, or None."""
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "an absolute path"
    if ".." in parts:
        return "a '..' in its path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link"
    if info.flag_bits & 0x1:
        return "password protection"
    return None


def _members(archive: zipfile.ZipFile, max_bytes: int, max_files: int) -> list[zipfile.ZipInfo]:
    """The files to unpack, after checking every member (refusing the whole archive for one bad member)."""
    files = []
    for info in archive.infolist():
        reason = _unsafe_member(info)
        if reason:
            raise ArchiveError(f"the ZIP is refused: {info.filename!r} has {reason}")
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.is_dir() or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
            continue  # folders are made as needed; macOS metadata and hidden files are not data
        files.append(info)
    if len(files) > max_files:
        raise ArchiveError(f"the ZIP holds {len(files)} files; the limit is {max_files}")
    declared = sum(info.file_size for info in files)
    if declared > max_bytes:
        raise ArchiveError(f"the ZIP unpacks to {declared / 2**20:.0f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    return files


def extract_zip(
    source: bytes | BinaryIO | str | os.PathLike,
    dest: str | os.PathLike,
    max_bytes: int = MAX_UNZIPPED_BYTES,
    max_files: int = MAX_ZIP_FILES,
) -> Path:
    """Unpack a ZIP of a collection folder safely and return the folder holding ``images/``.

    The archive may hold ``images/`` and ``masks/`` at its top, or inside one
    folder (as when a folder is zipped). Members with an absolute path, a
    ``..``, a link or a password refuse the whole archive; sizes are counted
    while unpacking, so a member that lies about its size is stopped too.

    Args:
        source: the ZIP's bytes, an open binary file, or its path.
        dest: an empty or new folder to unpack into.
        max_bytes: most bytes the archive may unpack to.
        max_files: most files it may hold.

    Raises:
        ArchiveError: not a ZIP, unsafe, too large, or damaged.
        CollectionNotFoundError: it holds no ``images/`` folder.
    """
    target = Path(dest)
    target.mkdir(parents=True, exist_ok=True)
    handle = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    written = 0
    try:
        with zipfile.ZipFile(handle) as archive:
            for info in _members(archive, max_bytes, max_files):
                out = target.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, out.open("wb") as dst:
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ArchiveError(f"the ZIP unpacks to more than {max_bytes / 2**20:.0f} MB, the limit")
                        dst.write(chunk)
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"not a readable ZIP archive ({exc})") from exc
    except (zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError, zlib.error) as exc:
        # Damaged data, a compression method Python lacks, or a full disk: nothing usable was unpacked.
        raise ArchiveError(f"the ZIP could not be unpacked ({exc})") from exc
    return collection_root(target)


def collection_root(folder: Path) -> Path:
    """``folder`` when it holds ``images/``, else its single sub-folder that does.

    Raises:
        CollectionNotFoundError: neither holds ``images/``.
    """
    if (folder / IMAGES_FOLDER).is_dir():
        return folder
    inner = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(inner) == 1 and (inner[0] / IMAGES_FOLDER).is_dir():
        return inner[0]
    raise CollectionNotFoundError(
        "the ZIP holds no images/ folder: zip a folder holding images/ (photos) and masks/ (masks with the same names)"
    )


def remove_tree(folder: Path) -> None:
    """Delete a folder Wingmask made (an unpacked upload), ignoring that it may be gone already."""
    shutil.rmtree(folder, ignore_errors=True)


def collection_folders(root: Path) -> Iterable[Path]:
    """The visible sub-folders of the collections folder, by name (none when it does not exist)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
