"""Tiny hand-made collections for the tests: dark butterflies on a pale ground, which Otsu finds exactly."""

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

SHAPE = (24, 32)
#: The files :func:`garden` adds that cannot be used, and words of the reason each is skipped.
GARDEN_LEFT_OUT = {"images/notes.txt": "not an image file", "masks/orphan.png": "no photo"}


def blob(shape=SHAPE, shift: int = 0) -> np.ndarray:
    """An ellipse, a little different for each ``shift``."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows - shape[0] / 2) / (shape[0] / 3)) ** 2 + ((cols - shape[1] / 2 - shift) / (shape[1] / 3)) ** 2 <= 1


def photo_of(mask: np.ndarray) -> np.ndarray:
    """A two-colour photo: a brown butterfly where ``mask`` is set, on a pale ground."""
    return np.where(mask[..., None], np.uint8([120, 60, 20]), np.uint8([235, 232, 225])).astype(np.uint8)


def save(array: np.ndarray, path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, **kwargs).save(path)


def garden(root: Path, photos: int = 3, species: list[str] | None = None) -> Path:
    """A collection folder of ``photos`` PNG pairs (0/255 masks), a text file and a mask without its photo.

    With ``species``, a ``species.csv`` names one per photo.
    """
    for number in range(photos):
        mask = blob(shift=number)
        save(photo_of(mask), root / "images" / f"photo{number}.png")
        save(mask.astype(np.uint8) * 255, root / "masks" / f"photo{number}.png")
    (root / "images" / "notes.txt").write_text("shot in the garden")
    save(blob().astype(np.uint8) * 255, root / "masks" / "orphan.png")
    if species:
        lines = [f"photo{number}.png,{name}" for number, name in enumerate(species)]
        (root / "species.csv").write_text("\n".join(["image,species", *lines]) + "\n")
    return root


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def folder_zip(root: Path, prefix: str = "") -> bytes:
    """A ZIP of every file under ``root``, each under ``prefix``."""
    return zip_of({prefix + str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()})
