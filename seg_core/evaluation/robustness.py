"""Robustness benchmark: every model on test photos changed the way real photos differ.

Each condition is a deterministic transform of photo and mask together (seeded
by the condition and the photo's position), built from
:mod:`seg_core.data.photo_transforms`. Strengths are chosen to span what phone and
field photos show and are stated at the 500 px reference width. Writes one row
per (condition, model, photo) with the confusion counts at threshold 0.5 under
the library's default inference settings, so the dashboard can chart IoU per
condition and model without running a network.

    python -m seg_core.robustness --split test
    python -m seg_core.robustness --models unet-best --conditions small_2_5x defocus_3 --limit 20
"""

from __future__ import annotations

import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from seg_core.core.imaging import load_image, load_mask
from seg_core.core.metrics import confusion
from seg_core.core.paths import MODELS_DIR, SAMPLES_DIR
from seg_core.data import photo_transforms as pt
from seg_core.runtime.base import InferenceOptions, Predictor, threshold_mask
from seg_core.runtime.registry import load_predictor

Pair = tuple[np.ndarray, np.ndarray]
Transform = Callable[[np.ndarray, np.ndarray, list[Pair], int], Pair]

ROBUSTNESS_FILE = MODELS_DIR / "robustness_test.csv"
COLUMNS = ["condition", "setting", "model", "image_id", "height", "width", "tp", "fp", "fn", "tn", "infer_ms"]
#: Settings measured with ``--ablation`` for the default model (the first is what the app uses).
SETTINGS = {
    "default": InferenceOptions(),
    "single pass": InferenceOptions(second_look=False),
    "tta": InferenceOptions(tta=True),
}
#: How many other test photos a condition borrows (several butterflies, side by side).
OTHERS = 2


@dataclass(frozen=True)
class Condition:
    """A named way a photo can differ, with the transform that makes it."""

    name: str
    label: str
    description: str
    transform: Transform


def _photometric(fn: Callable[[np.ndarray], np.ndarray]) -> Transform:
    return lambda image, mask, others, seed: (fn(image), mask.copy())


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in [
        Condition("as_taken", "as taken", "the test photo unchanged", lambda i, m, o, s: (i, m)),
        Condition("rotate_90", "turned 90°", "a quarter turn anticlockwise", lambda i, m, o, s: pt.rotate90(i, m, 1)),
        Condition("rotate_180", "upside down", "a half turn", lambda i, m, o, s: pt.rotate90(i, m, 2)),
        Condition("rotate_270", "turned 270°", "a quarter turn clockwise", lambda i, m, o, s: pt.rotate90(i, m, 3)),
        Condition(
            "small_2_5x",
            "small in frame (2.5x)",
            "the photo shrunk to 40% of the frame's sides, centred, on its own painted-out surroundings",
            lambda i, m, o, s: pt.small_in_frame(i, m, 2.5),
        ),
        Condition(
            "small_4x",
            "small in frame (4x)",
            "the photo shrunk to 25% of the frame's sides, off-centre (a butterfly a few metres away)",
            lambda i, m, o, s: pt.small_in_frame(i, m, 4.0, (0.35, 0.62)),
        ),
        Condition(
            "close_up",
            "close-up crop",
            "a window of 60% of the sides centred on the butterfly (wings cut by the frame)",
            lambda i, m, o, s: pt.crop(i, m, pt.close_up_box(m, 0.6)),
        ),
        Condition(
            "upscaled_4x",
            "large photo (4x)",
            "upscaled 4x (2000 px wide), like a phone photo's pixel count",
            lambda i, m, o, s: pt.resize_pair(i, m, 4.0),
        ),
        Condition(
            "soft_focus",
            "slightly out of focus",
            "Gaussian blur, sigma 3 px",
            _photometric(lambda i: pt.gaussian_blur(i, 3.0)),
        ),
        Condition(
            "defocus_3", "defocus (3 px)", "disc blur of radius 3 px", _photometric(lambda i: pt.defocus(i, 3.0))
        ),
        Condition(
            "defocus_6",
            "defocus (6 px)",
            "disc blur of radius 6 px (badly focused)",
            _photometric(lambda i: pt.defocus(i, 6.0)),
        ),
        Condition(
            "motion_blur",
            "motion blur",
            "camera shake: a 12 px line at 30 degrees",
            _photometric(lambda i: pt.motion_blur(i, 12, 30)),
        ),
        Condition(
            "jpeg_15", "JPEG quality 15", "a JPEG round trip at quality 15", _photometric(lambda i: pt.jpeg(i, 15))
        ),
        Condition(
            "dim",
            "dim (35%)",
            "every pixel value at 35% (an underexposed, unedited phone photo)",
            _photometric(lambda i: pt.colour_cast(i, (0.35, 0.35, 0.35))),
        ),
        Condition(
            "under_2ev",
            "under-exposed (-2 EV)",
            "two stops less light, in linear light",
            _photometric(lambda i: pt.exposure(i, -2.0)),
        ),
        Condition(
            "over_1ev",
            "over-exposed (+1 EV)",
            "one stop more light, highlights clipped",
            _photometric(lambda i: pt.exposure(i, 1.0)),
        ),
        Condition(
            "warm_cast",
            "warm colour cast",
            "tungsten white balance: red x1.2, blue x0.75",
            _photometric(lambda i: pt.colour_cast(i, (1.2, 1.0, 0.75))),
        ),
        Condition(
            "cool_cast",
            "cool colour cast",
            "shade white balance: red x0.8, blue x1.2",
            _photometric(lambda i: pt.colour_cast(i, (0.8, 1.0, 1.2))),
        ),
        Condition("greyscale", "black-and-white", "Rec. 601 luma", _photometric(pt.greyscale)),
        *(
            Condition(
                f"hue_{degrees}",
                f"hue turned {degrees}°",
                f"every hue turned {degrees} degrees round the colour circle (colours Leeds lacks)",
                _photometric(lambda i, d=degrees: pt.hue_rotate(i, d)),
            )
            for degrees in (60, 120, 180, 240, 300)
        ),
        Condition(
            "swap_rb",
            "red and blue swapped",
            "the red and blue channels exchanged (an orange butterfly turns blue)",
            _photometric(lambda i: pt.swap_channels(i, (2, 1, 0))),
        ),
        Condition(
            "swap_gbr",
            "channels rotated (GBR)",
            "the colour channels rotated: red from green, green from blue, blue from red",
            _photometric(lambda i: pt.swap_channels(i, (1, 2, 0))),
        ),
        Condition(
            "noise",
            "sensor noise",
            "Gaussian noise, sigma 15 grey levels (high ISO)",
            lambda i, m, o, s: (pt.sensor_noise(i, 15.0, s), m.copy()),
        ),
        Condition(
            "side_by_side",
            "two side by side",
            "the photo joined with the next test photo",
            lambda i, m, o, s: pt.side_by_side((i, m), o[0]),
        ),
        Condition(
            "several",
            "three on one background",
            "the butterfly and two others cut out and placed on the photo's painted-out surroundings",
            lambda i, m, o, s: pt.several_on_one(i, m, o[:2], s, 0.7),
        ),
        Condition(
            "white_sheet",
            "on a white sheet",
            "the butterfly alone on a near-white sheet (a museum specimen)",
            lambda i, m, o, s: pt.on_plain_sheet(i, m, 240, 3.0, s),
        ),
        Condition(
            "grey_sheet",
            "on a grey sheet",
            "the butterfly alone on a mid-grey sheet",
            lambda i, m, o, s: pt.on_plain_sheet(i, m, 150, 3.0, s),
        ),
    ]
}


class UnknownConditionError(KeyError):
    """A condition name is not in :data:`CONDITIONS`."""


def condition_seed(name: str, index: int) -> int:
    """The seed of a condition applied to the ``index``-th photo (stable across runs and machines)."""
    return zlib.crc32(name.encode()) * 10_000 + index


def apply(name: str, pairs: list[Pair], index: int) -> Pair:
    """Condition ``name`` applied to ``pairs[index]``, borrowing the next photos in the list as others.

    Raises:
        UnknownConditionError: ``name`` is not a condition.
    """
    if name not in CONDITIONS:
        raise UnknownConditionError(f"unknown condition {name!r}; available: {', '.join(CONDITIONS)}")
    image, mask = pairs[index]
    others = [pairs[(index + k) % len(pairs)] for k in range(1, OTHERS + 1)]
    return CONDITIONS[name].transform(image, mask, others, condition_seed(name, index))


def run_condition(
    predictor: Predictor, name: str, ids: list[str], pairs: list[Pair], setting: str = "default"
) -> list[dict]:
    """One row per photo: confusion counts of ``predictor`` at threshold 0.5 under condition ``name``."""
    rows = []
    for index, image_id in enumerate(ids):
        image, truth = apply(name, pairs, index)
        started = time.perf_counter()
        prob = predictor.predict_proba(image, SETTINGS[setting])
        infer_ms = round((time.perf_counter() - started) * 1000.0, 3)
        c = confusion(threshold_mask(prob), truth)
        rows.append(
            {
                "condition": name,
                "setting": setting,
                "model": predictor.name,
                "image_id": image_id,
                "height": truth.shape[0],
                "width": truth.shape[1],
                "tp": c.tp,
                "fp": c.fp,
                "fn": c.fn,
                "tn": c.tn,
                "infer_ms": infer_ms,
            }
        )
    return rows


def per_photo_iou(df: pd.DataFrame) -> pd.Series:
    """Foreground IoU of each row (1.0 where both masks are empty)."""
    union = df["tp"] + df["fp"] + df["fn"]
    return (df["tp"] / union.where(union > 0)).fillna(1.0)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (condition, setting, model): mean per-photo IoU, its worst tenth (10th percentile), whole-set IoU."""
    df = df.assign(iou=per_photo_iou(df))
    grouped = df.groupby(["condition", "setting", "model"], sort=False)
    sums = grouped[["tp", "fp", "fn"]].sum()
    out = pd.DataFrame(
        {
            "photos": grouped.size(),
            "iou_mean": grouped["iou"].mean(),
            "iou_p10": grouped["iou"].quantile(0.1),
            "iou_whole_set": sums["tp"] / (sums["tp"] + sums["fp"] + sums["fn"]),
            "median_ms": grouped["infer_ms"].median(),
        }
    )
    return out.reset_index()


def load_robustness(path: str | Path = ROBUSTNESS_FILE) -> pd.DataFrame:
    """The committed robustness rows (columns :data:`COLUMNS`).

    Raises:
        FileNotFoundError: the benchmark has not been run.
        ValueError: the file lacks some of the documented columns.
    """
    df = pd.read_csv(path, dtype={"image_id": str})
    missing = set(COLUMNS) - set(df.columns)
    if missing:
        raise ValueError(f"{path} lacks columns {sorted(missing)}; rerun python -m seg_core.robustness")
    return df


def sample_pairs(samples_dir: str | Path = SAMPLES_DIR) -> tuple[list[str], list[Pair]]:
    """The committed sample photos and masks (for example pictures without the dataset)."""
    photos = sorted((Path(samples_dir) / "images").glob("*.jpg"))
    pairs = [(load_image(p), load_mask(Path(samples_dir) / "masks" / f"{p.stem}_seg0.png")) for p in photos]
    return [p.stem for p in photos], pairs


def run_models(
    names: list[str], conditions: list[str], ids: list[str], pairs: list[Pair], ablation: bool = False
) -> pd.DataFrame:
    """Every model under every condition (rows of ``COLUMNS``).

    With ``ablation``, the first model also runs every other inference setting in
    :data:`SETTINGS` (the second look and test-time augmentation measured).

    Raises:
        ModelLoadError: an unknown or broken model.
    """
    rows: list[dict] = []
    for model_index, model in enumerate(names):
        predictor = load_predictor(model)
        settings = list(SETTINGS) if ablation and model_index == 0 and predictor.kind == "unet" else ["default"]
        jobs = [(c, s) for s in settings for c in conditions]
        for condition, setting in tqdm(jobs, desc=model, file=sys.stderr):
            rows += run_condition(predictor, condition, ids, pairs, setting)
    return pd.DataFrame(rows, columns=COLUMNS)


def write_robustness(df: pd.DataFrame, path: str | Path = ROBUSTNESS_FILE, update: bool = False) -> pd.DataFrame:
    """Write the rows; with ``update``, keep the file's rows of other models and other conditions."""
    path = Path(path)
    if update and path.is_file():
        kept = load_robustness(path)
        replaced = kept["model"].isin(set(df["model"])) & kept["condition"].isin(set(df["condition"]))
        df = pd.concat([kept[~replaced], df], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return df
