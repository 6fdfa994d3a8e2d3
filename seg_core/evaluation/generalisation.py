"""Leave-species-out: how a training recipe does on butterflies it never saw.

The ten Leeds species are dealt into folds (five of two by default: species k and
k + 5). For each fold a recipe is trained on the committed train split without the
fold's species (validation on the val split without them) and tested on every photo
of the held-out species, at each photo's own resolution with the model's default
settings. Models that never saw Leeds (the zero-shot U²-Netp) are scored on the same
held-out photos, so each recipe stands next to them species by species.

Rows go to ``models/generalisation.csv`` (one per recipe or model, fold and photo,
confusion counts at threshold 0.5); :func:`summarize` gives per species IoU and the
mean and worst species per recipe.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from seg_core.core.config import WEIGHTS_FILE, BlendConfig
from seg_core.core.metrics import Confusion, confusion, iou
from seg_core.core.paths import MODELS_DIR
from seg_core.data import leeds
from seg_core.runtime.base import Predictor, threshold_mask
from seg_core.runtime.registry import load_predictor

GENERALISATION_FILE = MODELS_DIR / "generalisation.csv"
COLUMNS = ["recipe", "fold", "held_out", "image_id", "species", "height", "width", "tp", "fp", "fn", "tn", "infer_ms"]
#: What a zero-shot model's rows carry as their recipe, beside the model name.
ZERO_SHOT = "zero-shot"


def species_folds(species: Iterable[str], n_folds: int = 5) -> list[list[str]]:
    """Species dealt round-robin into ``n_folds`` folds (10 species, 5 folds: 001+006, 002+007, ...).

    Raises:
        ValueError: fewer species than folds, or fewer than two folds.
    """
    ordered = sorted(set(species))
    if n_folds < 2 or n_folds > len(ordered):
        raise ValueError(f"{n_folds} folds need between 2 and {len(ordered)} (the number of species)")
    return [ordered[k::n_folds] for k in range(n_folds)]


def fold_split(split: dict[str, list[str]], held_out: list[str], all_ids: Iterable[str]) -> dict[str, list[str]]:
    """The split of one fold: train and val without the held-out species; test: every photo of them."""
    out = set(held_out)
    return {
        "train": [i for i in split["train"] if i[:3] not in out],
        "val": [i for i in split["val"] if i[:3] not in out],
        "test": sorted(i for i in all_ids if i[:3] in out),
    }


def score_photos(
    predictor: Predictor, samples: list[leeds.Sample], recipe: str, fold: int, held_out: list[str], progress: bool
) -> list[dict]:
    """One row per photo: the predictor's confusion counts at threshold 0.5 and its time."""
    rows = []
    for sample in tqdm(samples, desc=f"{recipe} fold {fold}", file=sys.stderr, disable=not progress):
        image, truth = leeds.load_pair(sample)
        started = time.perf_counter()
        mask = threshold_mask(predictor.predict_proba(image))
        infer_ms = round((time.perf_counter() - started) * 1000.0, 3)
        c = confusion(mask, truth)
        rows.append(
            {"recipe": recipe, "fold": fold, "held_out": "+".join(held_out), "image_id": sample.id}
            | {"species": sample.species, "height": truth.shape[0], "width": truth.shape[1]}
            | {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn, "infer_ms": infer_ms}
        )
    return rows


def run_recipe(
    args: argparse.Namespace,
    recipe: str,
    folds: list[list[str]],
    work_dir: Path,
    train,
    progress: bool = True,
) -> list[dict]:
    """Train ``args`` (a parsed training command) once per fold in ``work_dir`` and score each held-out fold.

    ``train`` is :func:`seg_core.models.training.train`, passed in so this module stays
    free of TensorFlow until a recipe actually runs.
    """
    scan = leeds.scan_dataset(leeds.resolve_data_dir(args.data))
    split = leeds.load_split(args.split)
    by_id = {s.id: s for s in scan.samples}
    rows = []
    for fold, held_out in enumerate(folds):
        fold_dir = work_dir / f"{recipe}-fold{fold}"
        fold_dir.mkdir(parents=True, exist_ok=True)
        split_path = fold_dir / "split.json"
        fold_ids = fold_split(split, held_out, by_id)
        split_path.write_text(json.dumps(fold_ids, indent=1))
        fold_args = copy.copy(args)
        fold_args.split, fold_args.out_dir, fold_args.name = split_path, fold_dir, "model"
        folder = train(fold_args)
        predictor = load_predictor(folder.name, models_dir=folder.parent)
        test = [by_id[i] for i in fold_ids["test"]]
        rows += score_photos(predictor, test, recipe, fold, held_out, progress)
    return rows


@dataclass(frozen=True)
class BlendRecipe:
    """A recipe that trains nothing: per fold, the blend of two recipes' fold models.

    Read from a recipe file with a ``blend`` key (the two member recipes' names, U-Net
    first) and the rule's fields (``unsure_ratio``, ``u2net_weight``, ``gate_ratio``, ``gate_weight``; see
    :class:`~seg_core.core.config.BlendConfig`); the members' fold models must already be
    in the benchmark's work folder (``--work-dir``), trained there by their own recipes.
    """

    members: tuple[str, str]
    rule: dict


def read_blend_recipe(path: str | os.PathLike) -> BlendRecipe | None:
    """The blend recipe in ``path``, or None when it is a training recipe.

    Raises:
        ValueError: a ``blend`` key that does not name two recipes.
    """
    with open(path, "rb") as fh:
        recipe = tomllib.load(fh)
    if "blend" not in recipe:
        return None
    members = recipe["blend"]
    if not (isinstance(members, list) and len(members) == 2 and all(isinstance(m, str) for m in members)):
        raise ValueError(f"{path}: blend names two recipes (a U-Net's, then a U²-Net's), got {members!r}")
    unknown = set(recipe) - {"blend", *BlendConfig.rule_fields}
    if unknown:
        raise ValueError(f"{path}: unknown blend recipe keys {sorted(unknown)}")
    return BlendRecipe(tuple(members), {key: float(recipe[key]) for key in BlendConfig.rule_fields if key in recipe})


def run_blend(
    blend: BlendRecipe,
    recipe: str,
    folds: list[list[str]],
    work_dir: Path,
    data_dir: str | os.PathLike | None,
    split_file: str | os.PathLike,
    progress: bool = True,
) -> list[dict]:
    """Score each fold's blend of its member recipes' fold models on the fold's held-out photos.

    Raises:
        FileNotFoundError: a member's fold model is not in ``work_dir``.
    """
    # Imported here, as training is passed to run_recipe: this module stays free of
    # TensorFlow until a recipe actually runs.
    from seg_core.models.blend import assemble
    from seg_core.runtime.engines import available_runtimes
    from seg_core.runtime.predictor import UNetPredictor

    scan = leeds.scan_dataset(leeds.resolve_data_dir(data_dir))
    split = leeds.load_split(split_file)
    by_id = {s.id: s for s in scan.samples}
    runtime = available_runtimes()[0]
    rows = []
    for fold, held_out in enumerate(folds):
        folders = [work_dir / f"{member}-fold{fold}" / "model" for member in blend.members]
        for folder in folders:
            if not (folder / WEIGHTS_FILE).is_file():
                raise FileNotFoundError(
                    f"{recipe}: no fold model in {folder}; run its recipe with the same --work-dir first"
                )
        config, model = assemble(*folders, **blend.rule)
        predictor = UNetPredictor.from_model(model, config, f"{recipe}-fold{fold}", runtime=runtime)
        test = [by_id[i] for i in fold_split(split, held_out, by_id)["test"]]
        rows += score_photos(predictor, test, recipe, fold, held_out, progress)
    return rows


def run_zero_shot(
    name: str,
    folds: list[list[str]],
    data_dir: str | os.PathLike | None,
    models_dir: str | os.PathLike = MODELS_DIR,
    progress: bool = True,
) -> list[dict]:
    """Score a model that never saw Leeds on each fold's held-out photos (its recipe is ``zero-shot:<name>``)."""
    scan = leeds.scan_dataset(leeds.resolve_data_dir(data_dir))
    predictor = load_predictor(name, models_dir=models_dir)
    rows = []
    for fold, held_out in enumerate(folds):
        test = [s for s in scan.samples if s.species in held_out]
        rows += score_photos(predictor, test, f"{ZERO_SHOT}:{name}", fold, held_out, progress)
    return rows


def write_rows(rows: list[dict], path: str | os.PathLike = GENERALISATION_FILE) -> Path:
    """Write the rows, replacing the rows of the same recipes already in the file."""
    path = Path(path)
    new = pd.DataFrame(rows, columns=COLUMNS)
    if path.is_file():
        old = load_generalisation(path)
        new = pd.concat([old[~old["recipe"].isin(set(new["recipe"]))], new], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    new.to_csv(path, index=False)
    return path


def load_generalisation(path: str | os.PathLike = GENERALISATION_FILE) -> pd.DataFrame:
    """The committed rows (species ids as text).

    Raises:
        FileNotFoundError: no file yet (``python -m seg_core.evaluate --leave-species-out`` writes it).
    """
    return pd.read_csv(path, dtype={"image_id": str, "species": str, "held_out": str})


def with_iou(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with each photo's foreground IoU at threshold 0.5 (column ``iou``)."""
    return df.assign(iou=[iou(Confusion(*row)) for row in df[["tp", "fp", "fn", "tn"]].itertuples(False)])


def per_species(df: pd.DataFrame) -> pd.DataFrame:
    """Mean per-photo foreground IoU of each recipe on each held-out species (rows: recipes; columns: species)."""
    return with_iou(df).pivot_table(index="recipe", columns="species", values="iou", aggfunc="mean")


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per recipe: photos, mean of the species' IoU, the worst species and its IoU, per-photo IoU."""
    table = per_species(df)
    scored = with_iou(df)
    return pd.DataFrame(
        {
            "photos": df.groupby("recipe").size(),
            "species_mean_iou": table.mean(axis=1),
            "worst_species": table.idxmin(axis=1),
            "worst_species_iou": table.min(axis=1),
            "iou_per_photo": scored.groupby("recipe")["iou"].mean(),
        }
    ).sort_values("species_mean_iou", ascending=False)
