"""The batch CLI's job on Ray Data, for collections that outgrow one process.

    python -m seg_core.predict photos/ --out masks/ --engine ray [--address auto] [--actors 4]

The driver applies the local engine's resume rules (:func:`seg_core.service.batch.plan_batch`),
streams the remaining photo paths through ``map_batches`` on a fixed pool of
actors, each holding one loaded model, and writes what comes back with the
local engine's atomic writes and report. Each photo goes through the very
function the local engine uses (:func:`seg_core.service.batch.segment_photo`), so
both engines write the same PNGs.

Actors read photos by path, so on a cluster the input folder must be mounted
at the same path on every node (a shared file system); outputs travel back to
the driver, which alone writes them. Ray is an optional dependency
(``requirements-ray.txt``).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import ray
from tqdm import tqdm

from seg_core.core.imaging import InvalidImageError
from seg_core.core.paths import REPO_ROOT
from seg_core.runtime.registry import load_predictor
from seg_core.service.batch import PLAIN, BatchReport, OutputOptions, plan_batch, segment_photo, store_outcome

#: Photos per call of an actor: one keeps memory flat whatever the photos' sizes.
PHOTOS_PER_BATCH = 1


class PhotoSegmenter:
    """A Ray Data actor: loads the model once, then segments the photos of each batch it is given."""

    def __init__(self, model: str, threshold: float, with_cutout: bool, clean: Sequence[str], options: OutputOptions):
        self.predictor = load_predictor(model)
        self.settings = (threshold, with_cutout, tuple(clean), options)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outcomes = []
        for path in batch["path"]:
            try:
                outcomes.append(segment_photo(Path(path), self.predictor, *self.settings))
            except InvalidImageError as exc:
                outcomes.append(str(exc))
        # Object arrays: each cell holds the photo's list of PNG bytes, or the reason it failed.
        outcome_column = np.empty(len(outcomes), dtype=object)
        outcome_column[:] = outcomes
        return {"path": batch["path"], "outcome": outcome_column}


def _start(address: str | None) -> bool:
    """Connect to Ray (a new local instance unless ``address``); True when this call started it."""
    if ray.is_initialized():
        return False
    env = {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    if address is None:
        # Local workers must import seg_core from this checkout, as the driver does.
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    ray.init(address=address, runtime_env={"env_vars": env}, include_dashboard=False, logging_level=logging.WARNING)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return True


def _actor_cpus(actors: int) -> float:
    # One CPU per actor where the cluster has them; fewer, shared, on a small machine,
    # so that a pool larger than the CPU count still starts instead of waiting forever.
    return min(1.0, ray.cluster_resources().get("CPU", 1.0) / actors)


def run_batch_ray(
    input_dir: Path,
    out_dir: Path,
    model: str,
    threshold: float = 0.5,
    with_cutout: bool = False,
    clean: Sequence[str] = (),
    overwrite: bool = False,
    progress: bool = True,
    options: OutputOptions = PLAIN,
    address: str | None = None,
    actors: int = 2,
) -> BatchReport:
    """:func:`seg_core.service.batch.run_batch` on Ray Data: same outputs, resume rules and report.

    Args:
        input_dir: folder of photos (not searched recursively); on a cluster,
            the same path must hold the same files on every node.
        out_dir: folder for the PNGs, written by this process only.
        model: model name, loaded once in each actor.
        threshold, with_cutout, clean, overwrite, progress, options: as for the local engine.
        address: Ray cluster to join (``"auto"``, ``"ray://head:10001"``);
            None starts a local Ray for the run and stops it afterwards.
        actors: size of the actor pool, i.e. model copies working at once.

    Returns:
        The per-photo report, in the photos' order.

    Raises:
        OutputConflictError: ``out_dir`` would overwrite an input.
    """
    report, todo = plan_batch(input_dir, out_dir, with_cutout, overwrite, options)
    if not todo:
        return report
    started = _start(address)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        photos = ray.data.from_items([{"path": str(p)} for p in todo], override_num_blocks=len(todo))
        settings = {"threshold": threshold, "with_cutout": with_cutout, "clean": clean, "options": options}
        results = photos.map_batches(
            PhotoSegmenter,
            fn_constructor_kwargs={"model": model, **settings},
            batch_size=PHOTOS_PER_BATCH,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=_actor_cpus(actors),
        )
        bar = tqdm(total=len(todo), unit="photo", desc="segmenting (ray)", disable=not progress, file=sys.stderr)
        for row in results.iter_rows():
            store_outcome(report, Path(row["path"]), out_dir, with_cutout, row["outcome"], bar, options)
            bar.update()
        bar.close()
    finally:
        if started:
            ray.shutdown()
    return report
