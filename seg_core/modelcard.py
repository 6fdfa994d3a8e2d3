"""python -m seg_core.modelcard: re-render every trained model's card (see :mod:`seg_core.evaluation.modelcard`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from seg_core.core.paths import MODELS_DIR
from seg_core.evaluation import results
from seg_core.evaluation.modelcard import CARD_README, optional_table, render
from seg_core.evaluation.robustness import ROBUSTNESS_FILE, load_robustness
from seg_core.runtime.registry import trained_models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m seg_core.modelcard", description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR)
    args = parser.parse_args(argv)
    evaluation = optional_table(results.load_eval, args.models_dir / results.EVAL_TEST_FILE.name)
    bench = optional_table(results.load_bench, args.models_dir / results.BENCH_FILE.name)
    robust_path = args.models_dir / ROBUSTNESS_FILE.name
    robust = load_robustness(robust_path) if robust_path.is_file() else None
    for name in trained_models(args.models_dir):
        path = args.models_dir / name / CARD_README
        path.write_text(render(args.models_dir / name, evaluation, bench, robust))
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
