"""What Wingmask hands back for a photo: file names, encoded PNGs and ZIP archives.

The batch CLI (:mod:`seg_core.service.batch`) and the dashboard name and encode
their outputs here, so ``photo.jpg`` becomes ``photo_mask.png`` and
``photo_cutout.png`` whichever way it was segmented, and a ground-truth mask
is paired with its photo by the same naming rules.
"""

from __future__ import annotations

import io
import zipfile

MASK_SUFFIX = "_mask.png"
CUTOUT_SUFFIX = "_cutout.png"
#: Endings that mark a ground-truth mask of a photo with the same stem (Leeds uses ``_seg0``).
TRUTH_SUFFIXES = ("_seg0", "_mask")


def stem(filename: str) -> str:
    """The file name without folders and extension (``"a/b.photo.jpg"`` -> ``"b.photo"``)."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def _truth_stem(mask_name: str) -> str:
    key = stem(mask_name)
    for suffix in TRUTH_SUFFIXES:
        key = key.removesuffix(suffix)
    return key


def match_truth(photo_names: list[str], mask_names: list[str]) -> dict[str, str]:
    """Pair photos with ground-truth masks by file name.

    A mask matches a photo when its stem equals the photo's stem, optionally
    followed by ``_seg0`` (the Leeds convention) or ``_mask``. When several
    masks fit one photo, the first one wins.

    Returns:
        photo name -> mask name, for the photos that have a match.
    """
    by_stem: dict[str, str] = {}
    for name in mask_names:
        by_stem.setdefault(_truth_stem(name), name)
    return {photo: by_stem[stem(photo)] for photo in photo_names if stem(photo) in by_stem}


def unmatched_masks(photo_names: list[str], mask_names: list[str]) -> list[str]:
    """The masks that :func:`match_truth` pairs with no photo, in the order given."""
    used = set(match_truth(photo_names, mask_names).values())
    return [name for name in mask_names if name not in used]


def output_names(photo_names: list[str]) -> list[tuple[str, str]]:
    """(mask file, cut-out file) names for each photo, unique within a batch.

    A second ``a.jpg`` (or an ``a.png``) becomes ``a-2_mask.png``, so one
    archive never holds two files of the same name.
    """
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
