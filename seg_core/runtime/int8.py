"""The committed INT8 versions beside the weights: where they are, what made them, whether they are fresh.

:mod:`seg_core.runtime.quantize` makes them; predictors only read them through here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from seg_core.runtime.base import ModelLoadError
from seg_core.runtime.export import OPENVINO_XML, folder_digest

INT8_DIR = "int8"

META_FILE = "quantize.json"


class QuantizeError(ModelLoadError):
    """A model could not be quantised, or its INT8 model is missing or stale."""


def int8_folder(directory: str | os.PathLike) -> Path:
    """Where a model folder keeps its INT8 version."""
    return Path(directory) / INT8_DIR


def int8_meta(directory: str | os.PathLike) -> dict | None:
    """The ``quantize.json`` of a model folder's INT8 version (None when there is no readable one)."""
    try:
        return json.loads((int8_folder(directory) / META_FILE).read_text())
    except (OSError, ValueError):
        return None


def int8_model(directory: str | os.PathLike, digest: str | None = None) -> Path:
    """The INT8 ``model.xml`` made from the weights in ``directory``.

    ``digest`` is :func:`seg_core.runtime.export.folder_digest` of ``directory`` when
    the caller has it already (hashing the weights again costs a read of them).

    Raises:
        QuantizeError: there is none, or it was made from other weights.
    """
    folder = int8_folder(directory)
    name = Path(directory).name
    fix = f"run `python -m seg_core.quantize --models {name}`"
    meta = int8_meta(directory)
    if meta is None:
        raise QuantizeError(f"model {name!r} has no INT8 version; {fix}")
    current = digest if digest is not None else folder_digest(directory)
    if meta.get("digest") != current or not (folder / OPENVINO_XML).is_file():
        raise QuantizeError(f"model {name!r}: its INT8 version was made from other weights; {fix}")
    return folder / OPENVINO_XML


def has_int8(directory: str | os.PathLike, digest: str | None = None) -> bool:
    """Whether ``directory`` holds an INT8 version made from its current weights (``digest``: as :func:`int8_model`)."""
    try:
        int8_model(directory, digest)
    except (QuantizeError, OSError):
        return False
    return True
