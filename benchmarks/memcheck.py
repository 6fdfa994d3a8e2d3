"""Memory soak test: many consecutive predictions through the dashboard's code path.

Each round sends an upload through the functions the Segment page calls, at
the page's default settings (threshold 0.5, the tidy clean-up, second look on,
TTA off, the plain transparent PNG cut-out), in an admission slot as the page
takes one: :func:`seg_core.outputs.compact.analyse_compact` (decode at display size,
run the model, keep the compact result), :func:`seg_core.service.analysis.finish_compact` (threshold
and clean at display size), :func:`seg_core.service.analysis.views` (the pictures
shown, encoded as the browser gets them:
:func:`seg_core.outputs.postprocess.screen_bytes`), then both downloads as the page makes them: the
photo decoded in full, :func:`seg_core.outputs.compact.full_levels`
(the model at full size, for photos larger than the display),
:func:`seg_core.service.analysis.final_mask`, :func:`seg_core.service.analysis.mask_file` and
:func:`seg_core.service.analysis.cutout_file`. The process cache is left out: it would
answer repeated photos without running the model.
Resident memory (RSS) is read after the warm-up rounds and at the end; a leak
shows up as growth that keeps pace with the number of rounds.

    python -m benchmarks.memcheck --n 200 --model unet-best

Exit status: 0 when growth stays under ``--limit-mb`` (default 100), 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from seg_core.core.imaging import load_image
from seg_core.core.paths import SAMPLES_DIR
from seg_core.evaluation.bench import peak_rss_mb
from seg_core.outputs.compact import analyse_compact, full_levels
from seg_core.outputs.postprocess import screen_bytes
from seg_core.runtime.base import DEFAULT_MODEL, InferenceOptions, ModelLoadError, Predictor
from seg_core.service.admission import photo_cost, process_admission
from seg_core.service.analysis import MaskSettings, cutout_file, final_mask, finish_compact, load_warm, mask_file, views
from seg_core.service.batch import PLAIN, OutputOptions

LIMIT_MB = 100.0
#: The Segment page's default mask settings (its first clean-up choice is tidy).
SETTINGS = MaskSettings(threshold=0.5, tidy=True)


@dataclass
class SoakReport:
    """Resident memory over a soak run, in MB.

    Attributes:
        warm_mb: RSS after the warm-up rounds.
        end_mb: RSS after the last round.
        peak_mb: the process's peak RSS (kernel high-water mark).
        checkpoints: (rounds done, RSS) every quarter of the run.
    """

    warm_mb: float
    end_mb: float
    peak_mb: float
    checkpoints: list[tuple[int, float]] = field(default_factory=list)

    @property
    def growth_mb(self) -> float:
        return self.end_mb - self.warm_mb


def rss_mb() -> float:
    """This process's resident memory now, in MB, after a garbage collection."""
    gc.collect()
    return psutil.Process().memory_info().rss / 1e6


def page_round(
    data: bytes,
    predictor: Predictor,
    settings: MaskSettings = SETTINGS,
    options: InferenceOptions | None = None,
    output: OutputOptions = PLAIN,
) -> int:
    """One upload through the Segment page's steps; returns the bytes it would send to the browser."""
    gate = process_admission()
    with gate.slot(photo_cost(data)):
        compact = analyse_compact(data, predictor, options or InferenceOptions())
    outcome = finish_compact(compact, settings)
    shown = [screen_bytes(picture) for picture in views(compact.shown_image, outcome.mask, outcome.removed).values()]
    with gate.slot(photo_cost(data)):
        image = load_image(data)
        full = compact.full() if compact.is_full else full_levels(image, predictor, options or InferenceOptions())
        mask = final_mask(full, settings)
        files = [mask_file(full, mask), cutout_file(image, full, mask, output)]
    return sum(len(b) for b in shown + files)


def soak(predictor: Predictor, photos: list[bytes], rounds: int, warmup: int = 10) -> SoakReport:
    """Run ``warmup`` then ``rounds`` page rounds, cycling through ``photos``.

    Args:
        predictor: a loaded model.
        photos: encoded photos (the bytes a user would upload).
        rounds: measured rounds after the warm-up.
        warmup: rounds before the baseline reading (graph tracing, allocator pools).

    Returns:
        RSS after warm-up, at the end, at the peak, and at each quarter.
    """
    for i in range(warmup):
        page_round(photos[i % len(photos)], predictor)
    warm = rss_mb()
    quarter = max(1, rounds // 4)
    checkpoints = []
    for i in range(1, rounds + 1):
        page_round(photos[(warmup + i) % len(photos)], predictor)
        if i % quarter == 0 or i == rounds:
            checkpoints.append((i, rss_mb()))
    end = checkpoints[-1][1] if checkpoints else warm
    return SoakReport(warm, end, peak_rss_mb(), checkpoints)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memcheck",
        description="Run many predictions through the dashboard's code path and report resident memory "
        "after warm-up and at the end. Exit status 1 when it grew by --limit-mb or more.",
    )
    parser.add_argument("--n", type=int, default=200, help="measured predictions (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="predictions before the baseline (default 10)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL})")
    parser.add_argument("--images", type=Path, default=SAMPLES_DIR / "images", help="folder of JPEG photos to cycle")
    parser.add_argument("--limit-mb", type=float, default=LIMIT_MB, help=f"allowed growth (default {LIMIT_MB:g})")
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 1:
        parser.error("--n and --warmup must be at least 1")
    photos = [p.read_bytes() for p in sorted(args.images.glob("*.jpg"))]
    if not photos:
        parser.error(f"no .jpg photos in {args.images}")
    try:
        predictor = load_warm(args.model)
    except ModelLoadError as exc:
        parser.error(str(exc))
    report = soak(predictor, photos, args.n, args.warmup)
    print(f"{args.model}: {args.n} predictions after {args.warmup} warm-up, cycling {len(photos)} photos")
    print(f"rss after warm-up: {report.warm_mb:.1f} MB")
    for done, rss in report.checkpoints:
        print(f"rss after {done:>4} predictions: {rss:.1f} MB")
    print(f"rss at end: {report.end_mb:.1f} MB")
    print(f"growth: {report.growth_mb:+.1f} MB (limit {args.limit_mb:g} MB)")
    print(f"peak rss: {report.peak_mb:.1f} MB")
    leaked = report.growth_mb >= args.limit_mb
    print("FAIL: memory grew past the limit" if leaked else "OK")
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
