"""Teaching Wingmask new species: corrected masks into collections, a fine-tune of one, and its checks.

* :func:`save_to_collection` keeps a photo and its corrected mask in a named
  collection under the collections folder (``images/`` + ``masks/``), at most
  :data:`~seg_core.data.teaching.MAX_PAIRS` photos a collection.
* :func:`adapt_collection` is the whole fine-tune behind ``python -m seg_core.adapt``:
  :func:`seg_core.models.adapt.adapt` within the time left after what follows, then
  the INT8 version and its precision check (so ``auto`` runs the new model like the
  committed ones), then the new model and its base through their default
  predictors on the held-out photos. Where the collection lives in the
  collections folder, that comparison is written beside it as the evaluated
  collection ``<model>-heldout``, which the Validation page lists.
* :func:`start_adaptation` runs that command as a background job of
  :mod:`seg_core.service.jobs` for the dashboard: in its own process at low CPU
  priority, so the server's sessions keep their turns and a cancel stops it at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from seg_core.core.config import CARD_FILE, CONFIG_FILE, HISTORY_FILE, is_blend
from seg_core.core.imaging import to_png_bytes
from seg_core.core.paths import MODELS_DIR
from seg_core.data import leeds
from seg_core.data import teaching as rules
from seg_core.data.collections import (
    IMAGES_FOLDER,
    MASK_FOLDERS,
    Collection,
    CollectionError,
    UnusablePairError,
    check_name,
    collection_folders,
    collections_dir,
    scan_folder,
    slugify,
)
from seg_core.evaluation.evaluate import collection_summary, eval_path, evaluate_photos, summary_path
from seg_core.evaluation.precision import check_model
from seg_core.evaluation.results import EVAL_COLUMNS
from seg_core.outputs.files import stem
from seg_core.runtime.base import DEFAULT_ALIAS, ModelLoadError, resolve_alias
from seg_core.runtime.engines import cpu_flags, openvino_available
from seg_core.runtime.registry import baseline_names, load_predictor, trained_models
from seg_core.service.jobs import JobCancelled, JobContext, JobRunner, JobStatus, process_jobs

#: Seconds a fine-tune keeps back for what follows training, measured on this project's 2-core CPU with
#: other jobs running: the BF16 check on 73 photos took 35 s with INT8's, the INT8 version 50 s more,
#: the comparison on 17 held-out photos 14 s.
CHECK_RESERVE_S = 25.0
QUANTIZE_RESERVE_S = 60.0
COMPARE_RESERVE_S = 15.0
#: Seconds kept back for starting Python and TensorFlow, and for writing the folder.
STARTUP_RESERVE_S = 15.0
#: Photos the INT8 version is calibrated on (half from the collection, half from Leeds when present).
CALIBRATION_PHOTOS = 64
#: Photos the precision check runs on: the held-out ones first, then the Leeds validation spread.
CHECK_PHOTOS = 48
#: Longest side of the photos calibrated and checked on (big photos only cost time there).
CHECK_SIDE = 1024
#: Photos a saved correction keeps: JPEG quality (the network sees them at 256 px).
PHOTO_QUALITY = 95
#: How long a cancelled fine-tune's process may take to stop before it is killed.
STOP_GRACE_S = 10.0
#: Nice value of a fine-tune started from the dashboard (the server's sessions come first).
LOW_PRIORITY = 10


class CollectionFullError(CollectionError):
    """A collection holds :data:`~seg_core.data.teaching.MAX_PAIRS` photos already."""


@dataclass(frozen=True)
class SavedPair:
    """A photo and mask saved into a collection: the folder, the photo's id and how many photos it holds now."""

    folder: Path
    photo_id: str
    photos: int


@dataclass(frozen=True)
class TeachableCollection:
    """A folder collection of the collections folder and how many photo-and-mask pairs it pairs (unchecked)."""

    name: str
    folder: Path
    pairs: int


def save_to_collection(
    root: str | os.PathLike, collection: str, photo_name: str, image: np.ndarray, mask: np.ndarray
) -> SavedPair:
    """Keep a photo and its (corrected) mask in collection ``collection`` under ``root``.

    The photo is written as ``images/<id>.jpg`` and the mask as ``masks/<id>.png``
    (0 and 255), where the id is the photo's file name made safe plus a digest
    of its pixels: saving the same photo again replaces its mask, two photos of
    the same name both stay.

    Raises:
        CollectionNameError: the name is not a plain folder name.
        CollectionFullError: the collection holds the most photos it may.
        ValueError: the photo and mask sizes differ.
    """
    if image.shape[:2] != np.shape(mask):
        raise ValueError(f"photo {image.shape[:2]} and mask {np.shape(mask)} sizes differ")
    folder = Path(root) / check_name(collection)
    photo_id = f"{slugify(stem(photo_name))}-{hashlib.sha256(image.tobytes()).hexdigest()[:8]}"
    images, masks = folder / IMAGES_FOLDER, folder / MASK_FOLDERS[0]
    photo_path = images / f"{photo_id}.jpg"
    existing = len(list(images.glob("*"))) if images.is_dir() else 0
    if not photo_path.exists() and existing >= rules.MAX_PAIRS:
        raise CollectionFullError(
            f"the collection {collection!r} holds {existing} photos, the most one may; start another collection"
        )
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=PHOTO_QUALITY)
    _write(photo_path, buffer.getvalue())
    _write(masks / f"{photo_id}.png", to_png_bytes(np.asarray(mask, dtype=bool)))
    return SavedPair(folder, photo_id, len(list(images.glob("*"))))


def _write(path: Path, data: bytes) -> None:
    """Write through a hidden temporary file, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def teachable_collections(root: str | os.PathLike | None = None) -> list[TeachableCollection]:
    """The folder collections under ``root`` (default: the collections folder) with their pair counts."""
    found = []
    for folder in collection_folders(Path(root) if root is not None else collections_dir()):
        with contextlib.suppress(CollectionError):
            found.append(TeachableCollection(folder.name, folder, len(scan_folder(folder).pairs)))
    return found


def resolve_base(base: str, models_dir: str | os.PathLike = MODELS_DIR) -> Path:
    """The base model's folder: a model folder path, a model of ``models_dir``, or a committed model.

    ``DEFAULT`` names :data:`~seg_core.runtime.base.DEFAULT_MODEL`.

    Raises:
        AdaptError: no such trained model.
    """
    base = resolve_alias(base)
    for candidate in (Path(base), Path(models_dir) / base, MODELS_DIR / base):
        if (candidate / CONFIG_FILE).is_file():
            return _taught_member(candidate)
    raise rules.AdaptError(f"no trained model {base!r} in {models_dir} or {MODELS_DIR}")


def teachable_models(models_dir: str | os.PathLike = MODELS_DIR) -> list[str]:
    """The trained networks a collection can fine-tune (blends are not), the default's own first."""
    folders = [Path(models_dir) / name for name in trained_models(models_dir)]
    names = [f.name for f in folders if not is_blend(f)]
    first = resolve_base(DEFAULT_ALIAS, models_dir).name
    return sorted(names, key=lambda name: name != first)


def _taught_member(folder: Path) -> Path:
    """``folder``, or for a blend its U-Net member, beside it.

    A blend is assembled, not trained; its U-Net is the member that learns a collection's
    look within minutes (the U²-Net member is what already generalises).
    """
    if not is_blend(folder):
        return folder
    card = json.loads((folder / CARD_FILE).read_text())
    member = folder.parent / next(m["name"] for m in card["members"] if m["role"] == "unet")
    if not (member / CONFIG_FILE).is_file():
        raise rules.AdaptError(f"{folder.name} is a blend whose U-Net member {member.name} is not in {folder.parent}")
    return member


def check_new_model_name(name: str, models_dir: str | os.PathLike = MODELS_DIR) -> str:
    """A new model's name, checked (:func:`seg_core.data.teaching.check_model_name`, and not a baseline's).

    Raises:
        ModelNameError: unusable, or taken by a model or a baseline.
    """
    name = rules.check_model_name(name, models_dir)
    if name in baseline_names():
        raise rules.ModelNameError(f"{name!r} is the name of a classical baseline; choose another name")
    return name


def post_reserve(check: bool, int8: bool, held_out: bool = True) -> float:
    """Seconds to keep back after training for the precision check, the INT8 version and the comparison."""
    steps = (CHECK_RESERVE_S if check else 0.0) + (QUANTIZE_RESERVE_S if int8 else 0.0)
    return STARTUP_RESERVE_S + steps + (COMPARE_RESERVE_S if held_out else 0.0)


def wants_check(int8: bool) -> bool:
    """Whether a precision check can let ``auto`` pick more than FP32: an INT8 version, or BF16 hardware.

    Without either, OpenVINO FP32 runs the model, which needs no check.
    """
    return openvino_available() and (int8 or bool({"avx512_bf16", "amx_bf16"} & set(cpu_flags())))


def _photos(collection: Collection, ids: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The photos and masks of the pairs ``ids`` of a collection, decoded and shrunk to :data:`CHECK_SIDE`."""
    chosen, kept = set(ids), []
    for pair in collection.pairs:
        if pair.id in chosen:
            # The fine-tune left out the pairs it could not use; they are left out here too.
            with contextlib.suppress(UnusablePairError):
                photo = pair.load()
                kept.append(rules.keep_size(photo.image, photo.mask, CHECK_SIDE))
    return [image for image, _ in kept], [mask for _, mask in kept]


def _held_out_collection(card: dict, folder: Path) -> Collection:
    """The held-out pairs of a fine-tune's collection, as a collection named ``<model>-heldout``."""
    collection = scan_folder(folder)
    held = set(card["collection"]["held_out_ids"])
    return Collection(f"{card['name']}-heldout", folder, [p for p in collection.pairs if p.id in held])


def check_precision(
    name: str,
    card: dict,
    folder: Path,
    models_dir: Path,
    data_dir: str | os.PathLike | None,
    split_file: Path,
    int8: bool,
) -> dict:
    """Check the new model's BF16 (and, with ``int8``, its new INT8 version) against Keras FP32.

    The INT8 version is calibrated on up to :data:`CALIBRATION_PHOTOS` photos,
    the collection's training photos and Leeds training photos alike. The check
    runs on :data:`CHECK_PHOTOS` photos: the held-out collection photos (or
    training ones), then the Leeds validation spread the fine-tune scored.
    Returns what the card records.
    """
    collection = scan_folder(folder)
    held = set(card["collection"]["held_out_ids"])
    train_ids = [p.id for p in collection.pairs if p.id not in held]
    has_leeds = leeds.dataset_available(data_dir) is not None
    half = CHECK_PHOTOS // 2 if has_leeds else CHECK_PHOTOS
    check_images, check_masks = _photos(collection, (sorted(held) or train_ids)[:half])
    if has_leeds:
        val = leeds.load_split_samples(data_dir, "val", split_file)
        wanted = CHECK_PHOTOS - len(check_images)
        _, images, masks = leeds.load_pairs(val[:: max(1, len(val) // wanted)][:wanted])
        check_images, check_masks = check_images + images, check_masks + masks
    record: dict = {"check_photos": len(check_images)}
    if int8:
        from seg_core.runtime.quantize import quantize  # needs NNCF, which only this step uses

        calibration, _ = _photos(collection, train_ids[: CALIBRATION_PHOTOS // 2 if has_leeds else CALIBRATION_PHOTOS])
        if has_leeds:
            train = leeds.load_split_samples(data_dir, "train", split_file)
            wanted = CALIBRATION_PHOTOS - len(calibration)
            calibration += leeds.load_pairs(train[:: max(1, len(train) // wanted)][:wanted])[1]
        quantize(name, calibration, models_dir)
        record["calibration_photos"] = len(calibration)
    precisions = ("int8", "bf16") if int8 else ("bf16",)
    rows = check_model(
        name, check_images, check_masks, f"{card['collection']['name']} + Leeds val", models_dir, precisions
    )
    passed = rows.loc[rows["passed"] & (rows["runtime"] != "keras"), "precision"].tolist()
    agreement = {row.precision: round(float(row.agreement), 6) for row in rows.itertuples() if row.runtime != "keras"}
    return record | {"passed": passed, "agreement": agreement}


def compare_on_held_out(
    card: dict, folder: Path, base_dir: Path, models_dir: Path
) -> tuple[dict, pd.DataFrame, Collection]:
    """The base and the new model through their default predictors on the held-out photos.

    Returns:
        (summary per model, the evaluation rows, the held-out collection).
    """
    held = _held_out_collection(card, folder)
    predictors = [load_predictor(base_dir.name, base_dir.parent), load_predictor(card["name"], models_dir)]
    rows = [row for p in predictors for row in evaluate_photos(p, held.photos(), held.name, progress=False)]
    frame = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    return collection_summary(frame, held), frame, held


def _owned(folder: Path) -> bool:
    """Whether a collection folder lies in the collections folder (Wingmask writes only into folders it keeps)."""
    return folder.resolve().is_relative_to(collections_dir().resolve())


def adapt_collection(
    base: str,
    folder: str | os.PathLike,
    name: str,
    minutes: float,
    models_dir: str | os.PathLike = MODELS_DIR,
    data_dir: str | os.PathLike | None = None,
    split_file: str | os.PathLike = leeds.SPLIT_FILE,
    overrides: dict | None = None,
    int8: bool = False,
    started_at: float | None = None,
    report: Callable[[rules.Progress], None] = lambda progress: None,
    should_stop: Callable[[], bool] = lambda: False,
    command: Sequence[str] | None = None,
) -> rules.AdaptResult:
    """Fine-tune ``base`` on the collection in ``folder`` as ``name`` within ``minutes``, then check and compare it.

    Args:
        base: the base model (a name, ``DEFAULT``, or a model folder).
        folder: the collection folder.
        name: the new model's name.
        minutes: the whole run's time, from ``started_at``: training gets what the later steps leave.
        models_dir: where the new model goes (its precision check file too).
        data_dir, split_file: the Leeds dataset and split (replay, calibration and the check use them when found).
        overrides: :class:`~seg_core.models.adapt.AdaptSettings` fields to change.
        int8: also make an INT8 version with NNCF (a minute on a 2-core CPU) and check it with BF16.
        started_at: when the run started (``time.time()``; default now), e.g. the process's start.
        report: called with each stage and after each epoch.
        should_stop: polled during training; True cancels.
        command: the command line for the card.

    Raises:
        AdaptError, CollectionError: see :func:`seg_core.models.adapt.adapt`.
    """
    started_at = time.time() if started_at is None else started_at
    models_dir = Path(models_dir)
    base_dir = resolve_base(base, models_dir)
    name = check_new_model_name(name, models_dir)
    check = wants_check(int8)
    seconds = minutes * 60.0 - post_reserve(check, int8) - (time.time() - started_at)
    # Imported here: Keras loads TensorFlow, which a dashboard page loads only with its first model.
    from seg_core.models.adapt import AdaptSettings, adapt

    settings = AdaptSettings(**({"seconds": max(seconds, 1.0)} | (overrides or {})))
    result = adapt(base_dir, folder, name, models_dir, settings, data_dir, split_file, report, should_stop, command)
    card, folder = dict(result.card), Path(folder)

    def say(stage: str, message: str) -> None:
        report(rules.Progress(stage, time.time() - started_at, minutes * 60.0, message))

    if check:
        say("check", "checking lower precisions against Keras FP32" + (" (making the INT8 version first)" * int8))
        try:
            card["precision"] = check_precision(name, card, folder, models_dir, data_dir, Path(split_file), int8)
        except (ModelLoadError, OSError, RuntimeError) as exc:  # the model stands; it runs at FP32
            card["precision"] = {"error": str(exc), "passed": []}
            say("check", f"the precision check failed ({exc}); the model runs at FP32")
    if card["collection"]["held_out_ids"]:
        say("compare", f"comparing {name} with {base_dir.name} on the held-out photos")
        summary, frame, held = compare_on_held_out(card, folder, base_dir, models_dir)
        scores = {model: round(summary[model]["iou_per_photo"], 4) for model in (base_dir.name, name)}
        card["comparison"] = {"photos": summary[name]["n"], "iou_per_photo": scores, "evaluation": None}
        if _owned(folder):
            _write(eval_path(folder, held.name), frame.to_csv(index=False).encode())
            _write(summary_path(folder, held.name), (json.dumps(summary, indent=1) + "\n").encode())
            card["comparison"]["evaluation"] = held.name
    card["total_seconds"] = round(time.time() - started_at, 1)
    (result.folder / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    say("done", f"wrote {result.folder}")
    return rules.AdaptResult(result.folder, card)


def adapt_command(
    base: str, folder: Path, name: str, minutes: float, models_dir: Path, options: Sequence[str] = ()
) -> list[str]:
    """The ``python -m seg_core.adapt`` command line a dashboard job runs (progress as JSON lines)."""
    return [
        sys.executable,
        "-m",
        "seg_core.adapt",
        *("--base", base, "--folder", str(folder), "--name", name),
        *("--minutes", f"{minutes:g}", "--models-dir", str(models_dir), "--json", "--nice", str(LOW_PRIORITY)),
        *options,
    ]


def start_adaptation(
    base: str,
    collection: str,
    name: str,
    minutes: float,
    models_dir: str | os.PathLike = MODELS_DIR,
    root: str | os.PathLike | None = None,
    runner: JobRunner | None = None,
    options: Sequence[str] = (),
) -> JobStatus:
    """Start fine-tuning ``base`` on collection ``collection`` as model ``name``, as a background job.

    The job's progress counts seconds of the ``minutes`` budget; its log holds
    every stage and epoch; its result is the :class:`~seg_core.data.teaching.AdaptResult`.

    Args:
        base: the base model's name.
        collection: a collection's name under ``root``.
        name: the new model's name.
        minutes: the fine-tune's whole time.
        models_dir: where the new model goes.
        root: the collections folder (default :func:`collections_dir`).
        runner: the job runner (default: the process's, shared with collection evaluations).
        options: more ``python -m seg_core.adapt`` options (e.g. a smaller ``--size`` in tests).

    Raises:
        CollectionNameError, CollectionNotFoundError: a bad or unknown collection.
        ModelNameError: a bad or taken model name.
        AdaptError: an unknown base model.
        JobBusyError: another job is running.
    """
    folder = Path(root if root is not None else collections_dir()) / check_name(collection)
    scan_folder(folder)
    models_dir = Path(models_dir)
    base_dir = resolve_base(base, models_dir)
    name = check_new_model_name(name, models_dir)
    command = adapt_command(str(base_dir), folder, name, minutes, models_dir, options)
    work = _fine_tune_job(command, models_dir, name)
    return (runner or process_jobs()).start(f"Teaching {name} ({collection} on {base})", work)


def _fine_tune_job(command: list[str], models_dir: Path, name: str) -> Callable[[JobContext], rules.AdaptResult]:
    def work(context: JobContext) -> rules.AdaptResult:
        return run_fine_tune(command, models_dir, name, context)

    return work


def _lines(stream) -> Iterator[str]:
    yield from iter(stream.readline, "")


def run_fine_tune(command: list[str], models_dir: Path, name: str, context: JobContext) -> rules.AdaptResult:
    """Run the fine-tune command, passing its JSON progress lines to the job, stopping it when cancelled.

    Raises:
        JobCancelled: the job was cancelled (the process is stopped and its unfinished folder removed).
        AdaptError: the command failed; the message is its last error line.
    """
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in _lines(process.stdout):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name=f"wingmask-adapt-{name}", daemon=True).start()
    last_error = ""
    try:
        while True:
            if context.cancelled:
                _stop(process, models_dir, name)
                raise JobCancelled(f"the fine-tune of {name} was cancelled; nothing was kept")
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            last_error = _follow(line.rstrip("\n"), context) or last_error
    finally:
        if process.poll() is None:
            _stop(process, models_dir, name)
    if process.wait() != 0:
        raise rules.AdaptError(last_error or f"the fine-tune failed (exit status {process.returncode})")
    folder = models_dir / name
    return rules.AdaptResult(folder, json.loads((folder / CARD_FILE).read_text()))


def _follow(line: str, context: JobContext) -> str | None:
    """Pass one line of the command's output to the job; the error it reports, if it is one."""
    try:
        event = json.loads(line)
    except ValueError:
        event = None
    if not isinstance(event, dict):
        if line.strip():
            context.log(line)
        return line if line.startswith("error:") else None
    context.log(event.get("message", ""))
    if event.get("stage") == "error":
        return event.get("message")
    with contextlib.suppress(TypeError, ValueError):
        context.progress(int(event["elapsed"]), max(1, int(event["budget"])), event.get("message"))
    return None


def _stop(process: subprocess.Popen, models_dir: Path, name: str) -> None:
    """Stop a fine-tune's process (terminate, then kill) and remove its unfinished folder."""
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(rules.staging_folder(models_dir, name), ignore_errors=True)


def training_history(models_dir: str | os.PathLike, name: str) -> pd.DataFrame | None:
    """The epochs of a fine-tune so far (running or finished), or None before the first one."""
    for folder in (rules.staging_folder(models_dir, name), Path(models_dir) / name):
        path = folder / HISTORY_FILE
        with contextlib.suppress(OSError, pd.errors.EmptyDataError, pd.errors.ParserError):
            return pd.read_csv(path)
    return None
