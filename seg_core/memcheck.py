"""Memory soak test: many consecutive predictions through the dashboard's code path.

Each round sends an upload through the functions the Segment page calls (with
both clean-up steps on and the page's default inference options): :func:`seg_core.analysis.analyse` (decode, run the
model), :func:`seg_core.analysis.finish` (threshold, clean),
:func:`seg_core.analysis.views` (the pictures shown, encoded as the browser
gets them) and the two downloads of :mod:`seg_core.outputs`.
Resident memory (RSS) is read after the warm-up rounds and at the end; a leak
shows up as growth that keeps pace with the number of rounds.

    python -m seg_core.memcheck --n 200 --model unet-best

Exit status: 0 when growth stays under ``--limit-mb`` (default 100), 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from seg_core.analysis import MaskSettings, analyse, finish, load_warm, views
from seg_core.bench import peak_rss_mb
from seg_core.catalogue import SAMPLES_DIR
from seg_core.imaging import to_png_bytes
from seg_core.inference import DEFAULT_MODEL, InferenceOptions, ModelLoadError, Predictor
from seg_core.outputs import cutout_png, mask_png

LIMIT_MB = 100.0
#: Every clean-up step on, so a round covers all of the page's mask work.
SETTINGS = MaskSettings(threshold=0.5, largest=True, holes=True)


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
    data: bytes, predictor: Predictor, settings: MaskSettings = SETTINGS, options: InferenceOptions | None = None
) -> int:
    """One upload through the Segment page's steps; returns the bytes it would send to the browser."""
    outcome = finish(analyse(data, predictor, options), settings)
    image, mask = outcome.analysis.image, outcome.mask
    shown = [to_png_bytes(picture) for picture in views(image, mask).values()]
    return sum(len(b) for b in shown) + len(mask_png(mask)) + len(cutout_png(image, mask))


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
        prog="python -m seg_core.memcheck",
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
