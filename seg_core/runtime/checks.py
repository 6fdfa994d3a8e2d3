"""Which runtime and precision a model runs at, read from the committed precision check.

``auto`` picks OpenVINO when it is installed (the faster one in ``models/bench.csv``),
else Keras; and the lowest precision that ``models/precision_check.csv`` verified for
the model's current weights on that runtime, else FP32. The file is written by
:mod:`seg_core.evaluation.precision` (``python -m seg_core.runtimes``). Asking
explicitly for a precision that failed, or was never checked for these weights,
raises :class:`~seg_core.runtime.engines.PrecisionRefusedError`; FP32 needs no check.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from seg_core.core.paths import MODELS_DIR
from seg_core.runtime.engines import (
    PRECISIONS,
    RUNTIME_PRECISIONS,
    RUNTIMES,
    PrecisionRefusedError,
    RuntimeUnavailableError,
    available_runtimes,
)
from seg_core.runtime.int8 import has_int8

AUTO = "auto"

CHECK_FILE = "precision_check.csv"

CHECK_COLUMNS = [
    "model",
    "digest",
    "runtime",
    "precision",
    "split",
    "photos",
    "agreement",
    "worst_photo_agreement",
    "fg_iou",
    "keras_fg_iou",
    "passed",
    "cpu",
    "checked_at",
]

MIN_AGREEMENT = 0.999

MAX_IOU_GAP = 0.002


def check_path(models_dir: str | os.PathLike = MODELS_DIR) -> Path:
    """The precision check file of a models folder."""
    return Path(models_dir) / CHECK_FILE


def read_checks(models_dir: str | os.PathLike = MODELS_DIR) -> pd.DataFrame:
    """The precision check rows (an empty table when the file is missing or unreadable)."""
    path = check_path(models_dir)
    try:
        table = pd.read_csv(path, dtype={"model": str, "digest": str, "runtime": str, "precision": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError):
        return pd.DataFrame(columns=CHECK_COLUMNS)
    if any(c not in table.columns for c in CHECK_COLUMNS):
        return pd.DataFrame(columns=CHECK_COLUMNS)
    table["passed"] = table["passed"].astype(str).str.lower().isin(["true", "1"])
    return table


def verified_precisions(name: str, digest: str | None, runtime: str, models_dir: str | os.PathLike) -> set[str]:
    """Precisions that passed the check for these weights (``digest``) on ``runtime``; FP32 always.

    INT8 also needs its quantised model beside the weights, made from them.
    """
    checks = read_checks(models_dir)
    mine = checks[(checks["model"] == name) & (checks["digest"] == digest) & (checks["runtime"] == runtime)]
    verified = {"fp32"} | set(mine.loc[mine["passed"], "precision"])
    if "int8" in verified and not has_int8(Path(models_dir) / name, digest):
        verified.discard("int8")
    return verified


def plan(
    name: str, digest: str | None, runtime: str, precision: str, models_dir: str | os.PathLike = MODELS_DIR
) -> list[tuple[str, str]]:
    """The (runtime, precision) pairs to try for a model, in order (later ones are fallbacks).

    Args:
        name: trained model name.
        digest: :func:`seg_core.runtime.export.folder_digest` of its folder (None: no check applies).
        runtime: ``auto`` or one of ``RUNTIMES``.
        precision: ``auto`` or one of ``PRECISIONS``.
        models_dir: folder holding the trained models and ``precision_check.csv``.

    Raises:
        RuntimeUnavailableError: unknown runtime, or one that is not installed.
        PrecisionRefusedError: unknown precision, or one no usable runtime supports and verified.
    """
    if runtime != AUTO and runtime not in RUNTIMES:
        raise RuntimeUnavailableError(f"unknown runtime {runtime!r}; choose auto or one of {', '.join(RUNTIMES)}")
    if precision != AUTO and precision not in PRECISIONS:
        raise PrecisionRefusedError(f"unknown precision {precision!r}; choose auto or one of {', '.join(PRECISIONS)}")
    installed = available_runtimes()
    if runtime != AUTO and runtime not in installed:
        raise RuntimeUnavailableError(f"runtime {runtime!r} is not installed (pip install -r requirements.txt)")
    if runtime != AUTO and precision != AUTO and precision not in RUNTIME_PRECISIONS[runtime]:
        raise PrecisionRefusedError(f"the {runtime} runtime runs {', '.join(RUNTIME_PRECISIONS[runtime])} only")
    pairs = []
    for candidate in installed if runtime == AUTO else [runtime]:
        verified = verified_precisions(name, digest, candidate, models_dir) & set(RUNTIME_PRECISIONS[candidate])
        if precision == AUTO:
            pairs.append((candidate, next(p for p in PRECISIONS if p in verified)))
        elif precision in verified:
            pairs.append((candidate, precision))
    if not pairs:
        reason = _refusal(name, digest, precision, models_dir)
        raise PrecisionRefusedError(f"model {name!r}: {precision} is refused: {reason}")
    return pairs


def checks_of(name: str, digest: str | None, precision: str, models_dir: str | os.PathLike) -> pd.DataFrame:
    """The check rows of a model's weights (``digest``) at ``precision``, on any runtime."""
    checks = read_checks(models_dir)
    return checks[(checks["model"] == name) & (checks["digest"] == digest) & (checks["precision"] == precision)]


def _refusal(name: str, digest: str | None, precision: str, models_dir: str | os.PathLike) -> str:
    """Why ``precision`` is not verified: the failed check's figures, or that there was none."""
    failed = checks_of(name, digest, precision, models_dir)
    fix = f"run `python -m seg_core.runtimes --models {name}` to check it, or ask for fp32"
    if failed.empty:
        return f"it was never checked for these weights; {fix}"
    row = failed.iloc[0]
    return (
        f"it failed the check on {row['runtime']} (pixels agreeing with Keras FP32: {row['agreement']:.4%}, "
        f"foreground IoU {row['fg_iou']:.4f} vs {row['keras_fg_iou']:.4f}); ask for fp32"
    )
