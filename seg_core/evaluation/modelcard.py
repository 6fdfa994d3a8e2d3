"""Render each trained model's human-readable card (``models/<name>/README.md``).

The card combines ``card.json`` (how the model was trained), ``history.csv``
(how training went) and the committed evaluation and benchmark files (how it
performs), so re-run this after ``seg_core.evaluation.evaluate`` and ``seg_core.evaluation.bench``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from seg_core.core.config import CARD_FILE, HISTORY_FILE, NOTICE_FILE
from seg_core.evaluation import results
from seg_core.evaluation.robustness import CONDITIONS, summarize
from seg_core.runtime.checks import checks_of
from seg_core.runtime.int8 import INT8_DIR, has_int8, int8_meta

CARD_README = "README.md"


def _scores(evaluation: pd.DataFrame | None, name: str) -> str:
    if evaluation is None or name not in set(evaluation["model"]):
        return "No evaluation results yet: run `python -m seg_core.evaluate`.\n"
    rows = evaluation[evaluation["model"] == name]
    lines = ["| aggregation | pixel accuracy | Dice | foreground IoU | mean IoU |", "| --- | --- | --- | --- | --- |"]
    for mode in results.AGGREGATIONS:
        m = results.aggregate(results.at_threshold(rows, 0.5), ["model"], mode).iloc[0]
        lines.append(f"| {mode} | {m['accuracy']:.4f} | {m['dice']:.4f} | {m['iou']:.4f} | {m['mean_iou']:.4f} |")
    photos = rows["image_id"].nunique()
    return f"Test split, {photos} photos at their own resolution, threshold 0.5:\n\n" + "\n".join(lines) + "\n"


def _speed(bench: pd.DataFrame | None, name: str) -> str:
    if bench is None or name not in set(bench["model"]):
        return "No benchmark results yet: run `python -m seg_core.bench`.\n"
    b = bench[bench["model"] == name].iloc[0]
    return (
        f"Single photo ({b['photos']}), decoded array to mask, on {b['runtime']} {b['precision']} "
        f"(what `load_predictor` picks here): median {b['latency_median_ms']:.1f} ms, "
        f"p95 {b['latency_p95_ms']:.1f} ms; batch-8 throughput {b['throughput_batch8_ips']:.1f} photos/s; "
        f"load {b['load_s']:.2f} s; peak RSS {b['peak_rss_mb']:.0f} MB ({b['machine']}, {b['measured_at']}).\n"
    )


def _int8(directory: Path, card: dict) -> str:
    if "members" in card:
        return "None: a blend runs its members at FP32 or BF16 (its two networks are quantised apart, if at all).\n"
    remake = f"`python -m seg_core.quantize --models {directory.name}`"
    meta = int8_meta(directory)
    if meta is None:
        return f"None yet: {remake} makes one; `python -m seg_core.runtimes` checks it.\n"
    state = "made from these weights" if has_int8(directory) else "stale: made from other weights, never used"
    mine = checks_of(directory.name, meta["digest"], "int8", directory.parent)
    if mine.empty:
        check = "not checked yet (`python -m seg_core.runtimes`), so `auto` does not pick it"
    else:
        row = mine.iloc[0]
        verdict = "passed" if row["passed"] else "failed, so `auto` does not pick it"
        check = (
            f"{row['split']} split check {verdict}: {row['agreement']:.3%} of pixels agree with Keras FP32, "
            f"foreground IoU {row['fg_iou']:.4f} against {row['keras_fg_iou']:.4f}"
        )
    return (
        f"`{INT8_DIR}/` ({state}, digest `{meta['digest']}`): NNCF {meta['nncf']} post-training quantisation, "
        f"{meta['preset']} preset, {meta['bias_correction']} bias correction, calibrated on "
        f"{meta['calibration_photos']} train photos; kept in float: {', '.join(meta['kept_float'])} "
        f"(the first and last convolutions); OpenVINO {meta['openvino'].split('-')[0]}; {check}. Remake: {remake}.\n"
    )


def _robustness(robust: pd.DataFrame | None, name: str) -> str:
    if robust is None or name not in set(robust["model"]):
        return "No robustness results yet: run `python -m seg_core.robustness`.\n"
    table = summarize(robust[(robust["model"] == name) & (robust["setting"] == "default")])
    lines = ["| condition | per-photo IoU | worst tenth below | whole-set IoU |", "| --- | ---: | ---: | ---: |"]
    for row in table.itertuples():
        label = CONDITIONS[row.condition].label if row.condition in CONDITIONS else row.condition
        lines.append(f"| {label} | {row.iou_mean:.3f} | {row.iou_p10:.3f} | {row.iou_whole_set:.3f} |")
    photos = int(table["photos"].max())
    return (
        f"Test photos changed the way real photos differ ({photos} photos per condition, default settings, "
        "threshold 0.5; `python -m seg_core.robustness --list` describes each):\n\n" + "\n".join(lines) + "\n"
    )


def _training(card: dict, directory: Path) -> str:
    """How a model trained here was made: loss, optimiser, augmentation, data, command, validation."""
    history = pd.read_csv(directory / HISTORY_FILE)
    best = card["validation_at_input_size"]
    opt = card["optimizer"]
    aug = card["augmentation"]
    aug_text = ", ".join(f"{k}={v}" for k, v in aug.items()) if aug else "none"
    return f"""## Training
- Loss: `{card["loss"]}`; optimizer {opt["name"]}, peak LR {opt["peak_lr"]}, {opt["schedule"]} schedule, \
weight decay {opt["weight_decay"]}; batch {card["batch_size"]}; seed {card["seed"]}
- Augmentation: {aug_text}
- Epochs: {card["epochs_run"]} of {card["epochs_max"]} (best validation IoU at epoch {card["best_epoch"]}), \
{card["training_seconds"]:.0f} s of training
- Data: {card["train_photos"]} train / {card["val_photos"]} val photos of `models/split.json` \
(sha256 `{card["split_sha256"][:16]}…`)
- Where: {card.get("trained_on", card["backend"])}; libraries {json.dumps(card["library_versions"])}
- Command: `{card["command"]}`
- History: `history.csv` ({len(history)} epochs), log: `train.log`

## Validation (at the network's {card["input_size"]} px input, best epoch)
IoU {best["val_iou"]:.4f}, Dice {best["val_dice"]:.4f}, pixel accuracy {best["val_accuracy"]:.4f}, \
mean IoU {best["val_mean_iou"]:.4f}
"""


def _source(card: dict) -> str:
    """Where imported (pretrained, not trained here) weights come from, and how the import was checked."""
    source, check = card["source"], card["check"]
    return f"""## Source
- Weights: {source["provenance"]}; file `{source["file"]}` (md5 `{source["md5"]}`), licence {source["licence"]} \
(see `NOTICE` in this folder)
- Imported with: `{card["command"]}`; libraries {json.dumps(card["library_versions"])}
- Check: against {check["reference"]} on {len(check["photos"])} sample photos, largest absolute difference \
of the output map {max(check["max_abs_difference"]):.1e}
- Not trained on butterflies: nothing here was fitted to Leeds photos
"""


def _members(card: dict) -> str:
    """What a blend is made of: its members, their weights' digests and the rule that makes their maps one."""
    lines = "\n".join(
        f"- {m['role']}: `{m['name']}` (weights sha256 `{m['weights_sha256'][:16]}…`; "
        f"see `models/{m['name']}/README.md`)"
        for m in card["members"]
    )
    rule = ", ".join(f"{key} {value:g}" for key, value in card["rule"].items())
    return f"""## Members
{lines}
- Rule (`seg_core/runtime/blend.py`): {rule}
- Made with: `{card["command"]}` (no training of its own); libraries {json.dumps(card["library_versions"])}
"""


def _licence(card: dict, directory: Path) -> str:
    leeds = "Leeds Butterfly Dataset (Wang, Markert & Everingham, BMVC 2009), research and learning use"
    if "source" in card:
        return f"Weights: {card['source']['licence']} (`NOTICE`). Test photos: {leeds}.\n"
    if (directory / NOTICE_FILE).is_file():
        return f"Weights derived from pretrained weights under the terms in `NOTICE`. Photos: {leeds}.\n"
    return f"{leeds}.\n"


def render(
    directory: Path, evaluation: pd.DataFrame | None, bench: pd.DataFrame | None, robust: pd.DataFrame | None = None
) -> str:
    """The Markdown card of the model in ``directory`` (trained here, or imported with its ``source``)."""
    card = json.loads((directory / CARD_FILE).read_text())
    made = _source(card) if "source" in card else _members(card) if "members" in card else _training(card, directory)
    return f"""# {card["name"]}

{card["recipe"]}

## Model
- Architecture: `{card["architecture"]}` from the registry in `seg_core/models/`, \
config `{json.dumps(card["config"])}`
- Parameters: {card["parameters"]:,}; input {card["input_size"]}x{card["input_size"]}x3 in [0, 1]; sigmoid output
- Rebuild: `seg_core.load_predictor("{card["name"]}")` (reads `config.json`, then `model.weights.h5`)

{made}
## Test
{_scores(evaluation, card["name"])}
## Robustness
{_robustness(robust, card["name"])}
## Speed
{_speed(bench, card["name"])}
## INT8 version
{_int8(directory, card)}
## Data and licence
{_licence(card, directory)}"""


def optional_table(loader, path: Path) -> pd.DataFrame | None:
    try:
        return loader(path)
    except results.ResultsMissingError:
        return None
