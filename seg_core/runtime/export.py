"""Export trained U-Nets for other runtimes through Keras 3 ``Model.export``.

The command line writes any of Keras' formats for deployment elsewhere::

    python -m seg_core.export --model unet-best --format openvino --out exports/

The library keeps its own OpenVINO copies in a cache outside the repository
(``$WINGMASK_CACHE``, else ``$XDG_CACHE_HOME/wingmask``, else
``~/.cache/wingmask``), one folder per model named by the SHA-256 of its
weights and config and its input size: retrained weights get a new folder, so a
stale export is never used, and the cache can be deleted at any time. Exports
are written to a temporary folder and renamed into place, so processes that
load the same model for the first time at once cannot see half an export.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from seg_core.core.config import CONFIG_FILE, WEIGHTS_FILE

CACHE_ENV = "WINGMASK_CACHE"
OPENVINO_XML = "model.xml"
META_FILE = "export.json"
#: CLI format name -> (file or folder written inside ``--out``, Keras' format name).
FORMATS: dict[str, tuple[str, str]] = {
    "openvino": (OPENVINO_XML, "openvino"),
    "onnx": ("model.onnx", "onnx"),
    "litert": ("model.tflite", "litert"),
    "saved_model": ("saved_model", "tf_saved_model"),
}


class ExportError(RuntimeError):
    """A model could not be exported (missing exporter package, unwritable folder, ...)."""


def cache_root() -> Path:
    """The folder holding the library's exports (created on first export)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "wingmask"


def folder_digest(directory: str | os.PathLike) -> str:
    """First 16 hex digits of the SHA-256 of a model folder's config and weights files."""
    sha = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(Path(directory) / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()[:16]


def model_digest(model) -> str:
    """First 16 hex digits of the SHA-256 of an in-memory Keras model's graph and weights."""
    sha = hashlib.sha256(model.to_json().encode())
    for weights in model.get_weights():
        sha.update(weights.tobytes())
    return sha.hexdigest()[:16]


def export_model(model, fmt: str, path: str | os.PathLike) -> Path:
    """Write ``model`` in ``fmt`` (a key of ``FORMATS``) to ``path``, batch size left dynamic.

    Raises:
        ExportError: unknown format, or the exporter (or a package it needs) failed.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    try:
        model.export(str(path), format=FORMATS[fmt][1], verbose=False)
    except ImportError as exc:
        raise ExportError(f"exporting to {fmt} needs a package that is not installed: {exc}") from exc
    except Exception as exc:  # each exporter (tf2onnx, the TF Lite converter, OpenVINO) raises its own types
        raise ExportError(f"exporting to {fmt} failed: {exc}") from exc
    return Path(path)


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in (OPENVINO_XML, "model.bin", META_FILE))


def _publish(staging: Path, final: Path, meta: dict) -> None:
    """Move a finished export into place in one rename (a concurrent twin may have won the race)."""
    try:
        (staging / META_FILE).write_text(json.dumps(meta, indent=2))
        if final.exists() and not _complete(final):
            shutil.rmtree(final, ignore_errors=True)  # an export someone cut short by deleting files
        try:
            staging.rename(final)
        except OSError:
            if not _complete(final):  # not a concurrent export that finished first: a real failure
                raise
    except OSError as exc:
        raise ExportError(f"cannot write the export cache {final.parent}: {exc}") from exc


def openvino_export(name: str, digest: str, input_size: int, build: Callable[[], object]) -> Path:
    """The cached OpenVINO export of a model, exported first if it is not there yet.

    Args:
        name: model name (only used to make the folder readable).
        digest: :func:`folder_digest` or :func:`model_digest` of the model.
        input_size: side of the network's square input.
        build: returns the Keras model; called only when the export is missing.

    Returns:
        The export folder: ``model.xml``, ``model.bin`` and ``export.json``
        (digest, input size, parameter count).

    Raises:
        ExportError: the export failed or the cache folder is not writable.
    """
    root = cache_root()
    final = root / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}-{digest}-{input_size}"
    if _complete(final):
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=root))
    except OSError as exc:
        raise ExportError(f"cannot write the export cache {root}: {exc}") from exc
    try:
        model = build()
        export_model(model, "openvino", staging / OPENVINO_XML)
        meta = {"model": name, "digest": digest, "input_size": input_size, "parameters": int(model.count_params())}
        _publish(staging, final, meta)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def read_meta(folder: str | os.PathLike) -> dict:
    """The ``export.json`` of an export folder made by :func:`openvino_export`."""
    return json.loads((Path(folder) / META_FILE).read_text())
