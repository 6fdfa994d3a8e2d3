"""The dashboard's evaluation of an uploaded collection, as a background job.

An upload (a ZIP of ``images/`` + ``masks/``, or photos and a COCO file) is
unpacked into a hidden folder of the collections folder, checked, and every
model run on it with :func:`seg_core.evaluation.evaluate.evaluate_collection`.
Each photo is decoded and predicted inside an admission slot of
:func:`seg_core.service.admission.process_admission`, so sessions segmenting
photos meanwhile keep their turns. At the end the folder takes the
collection's name, with ``images/``, ``masks/`` (written from the COCO file for
a COCO upload) and ``eval_<name>.csv``/``.json``, where
:func:`seg_core.evaluation.evaluate.evaluated_collections` finds it. A failed
or cancelled job leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from seg_core.data.collections import (
    IMAGES_FOLDER,
    MASK_FOLDERS,
    MAX_ZIP_BYTES,
    MAX_ZIP_MB,
    ArchiveError,
    Collection,
    CollectionError,
    CollectionNameError,
    LabelledPhoto,
    PairSource,
    check_name,
    check_pairs,
    extract_zip,
    remove_tree,
    require_pairs,
    scan_coco,
    scan_folder,
    write_mask,
)
from seg_core.evaluation.evaluate import EvaluatedCollection, evaluate_collection
from seg_core.runtime.base import Predictor
from seg_core.service.admission import photo_cost, process_admission
from seg_core.service.jobs import JobContext, JobRunner, JobStatus, process_jobs

COCO_FILE = "annotations.json"


@dataclass(frozen=True)
class ZipUpload:
    """A ZIP of a collection folder (``images/`` and ``masks/``, at the top or in one folder)."""

    data: bytes


@dataclass(frozen=True)
class CocoUpload:
    """A COCO instances file and the photos it names, as (file name, bytes) pairs."""

    annotations: bytes
    photos: tuple[tuple[str, bytes], ...]


Upload = ZipUpload | CocoUpload


def check_upload(upload: Upload) -> None:
    """Refuse at once what cannot become a collection, before a job starts.

    Raises:
        ArchiveError: a ZIP over :data:`MAX_ZIP_MB` MB, or not a ZIP at all.
        CollectionError: a COCO upload without photos.
    """
    if isinstance(upload, ZipUpload):
        if len(upload.data) > MAX_ZIP_BYTES:
            raise ArchiveError(f"the ZIP is {len(upload.data) / 2**20:.0f} MB; the limit is {MAX_ZIP_MB} MB")
        if not zipfile.is_zipfile(io.BytesIO(upload.data)):
            raise ArchiveError("the file is not a ZIP archive")
    elif not upload.photos:
        raise CollectionError("add the photos that the COCO file describes")


def start_collection_evaluation(
    upload: Upload,
    name: str,
    root: str | os.PathLike,
    predictors: Mapping[str, Predictor],
    runner: JobRunner | None = None,
) -> JobStatus:
    """Start evaluating ``predictors`` on an upload, as collection ``name`` under ``root``.

    Args:
        upload: the uploaded collection.
        name: the new collection's name (:func:`seg_core.data.collections.check_name`).
        root: the collections folder.
        predictors: model name -> loaded model (shared with the pages, so nothing loads twice).
        runner: the job runner (default: the process's).

    Returns:
        The job's first status; its result, once done, is the :class:`EvaluatedCollection`.

    Raises:
        CollectionNameError: a bad name, or one already taken under ``root``.
        ArchiveError, CollectionError: see :func:`check_upload`.
        JobBusyError: another job is running.
    """
    name = check_name(name)
    folder = Path(root) / name
    if folder.exists():
        raise CollectionNameError(f"a collection named {name!r} exists already; choose another name")
    check_upload(upload)
    work = functools.partial(_evaluate_upload, upload, name, Path(root), dict(predictors))
    return (runner or process_jobs()).start(f"Evaluating {name}", work)


@contextlib.contextmanager
def _slot(pair: PairSource) -> Iterator[None]:
    """An admission slot sized by the photo's pixels, held while the pair is decoded and predicted."""
    with process_admission().slot(photo_cost(pair.image_path.read_bytes())):
        yield


def _stage(upload: Upload, staging: Path, name: str) -> tuple[Collection, Path]:
    """Unpack an upload into ``staging``; the scanned collection and the folder that will keep its name."""
    if isinstance(upload, ZipUpload):
        folder = extract_zip(upload.data, staging)
        return scan_folder(folder, name), folder
    images = staging / IMAGES_FOLDER
    images.mkdir(parents=True)
    for file_name, data in upload.photos:
        # Browsers send bare file names; anything else is cut to its last part so it stays inside images/.
        base = PurePosixPath(file_name.replace("\\", "/")).name
        if base and not base.startswith(".") and not (images / base).exists():
            (images / base).write_bytes(data)
    (staging / COCO_FILE).write_bytes(upload.annotations)
    return scan_coco(staging / COCO_FILE, images, name), staging


def _evaluate_upload(
    upload: Upload, name: str, root: Path, predictors: dict[str, Predictor], context: JobContext
) -> EvaluatedCollection:
    """The job: unpack, check, evaluate every model, then publish the folder under its name."""
    staging = root / f".{name}.partial"
    remove_tree(staging)
    try:
        context.progress(0, 0, "Unpacking the upload")
        collection, folder = _stage(upload, staging, name)
        checking = len(collection.pairs)
        models = len(predictors)

        def checked(done: int, total: int) -> None:
            context.progress(done, checking * (1 + models), f"Checking photos and masks: {done} of {total}")

        # A COCO collection keeps its masks as files, so the dashboard reads it like any folder.
        keep = None if isinstance(upload, ZipUpload) else functools.partial(_keep_mask, folder / MASK_FOLDERS[0])
        require_pairs(check_pairs(collection, _slot, checked, keep))
        for item in collection.skipped:
            context.log(f"skipped {item.file}: {item.reason}")
        good = len(collection.pairs)
        order = list(predictors)

        def photos(model: str) -> Iterator[LabelledPhoto]:
            start = checking + order.index(model) * good
            for number, pair in enumerate(collection.pairs):
                context.progress(start + number, checking + models * good, f"{model}: photo {number + 1} of {good}")
                with _slot(pair):
                    yield pair.load()

        evaluate_collection(collection, folder, order, progress=False, loader=predictors.__getitem__, photos=photos)
        context.progress(checking + models * good, checking + models * good, "Saving")
        final = root / name
        os.replace(folder, final)
        return EvaluatedCollection(name, final)
    finally:
        remove_tree(staging)


def _keep_mask(folder: Path, photo: LabelledPhoto) -> None:
    write_mask(photo, folder)
