"""Benchmark: the table it writes, and the random-weight reference behind the U-Net code path."""

import datetime

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from seg_core import bench as bench_cli
from seg_core.core.paths import MODELS_DIR
from seg_core.data.leeds import DatasetNotFoundError
from seg_core.evaluation.bench import (
    REFERENCE_NAME,
    SAMPLE_PHOTO,
    default_speedup,
    jobs,
    model_size,
    photos_label,
    reference_predictor,
    run_benchmarks,
    split_photos,
)
from seg_core.evaluation.results import BENCH_COLUMNS, load_bench
from seg_core.runtime import engines as runtimes
from seg_core.runtime.base import DEFAULT_MODEL
from seg_core.runtime.int8 import has_int8
from seg_core.runtime.predictor import UNetPredictor
from seg_core.runtime.registry import load_predictor


def test_benchmark_writes_the_contract_columns(tmp_path):
    out = tmp_path / "bench.csv"
    table = run_benchmarks(["otsu"], repeats=3, batch_repeats=1, warmup=1, out=out, reference=False, progress=False)
    written = load_bench(out)
    assert list(written.columns) == BENCH_COLUMNS and len(written) == 1
    row = written.iloc[0]
    assert row["model"] == "otsu" and row["kind"] == "baseline" and not row["reference"]
    assert (row["runtime"], row["precision"], row["default"]) == ("opencv", "-", True)
    assert row["cpu_flags"] == (" ".join(runtimes.cpu_flags()) or "none") and row["photos"] == SAMPLE_PHOTO.name
    assert row["parameters"] == 0 and row["file_mb"] == 0.0 and row["load_s"] >= 0
    assert 0 < row["latency_median_ms"] <= row["latency_p95_ms"]
    assert row["throughput_batch8_ips"] > 0 and row["peak_rss_mb"] > 0
    assert "cores" in row["machine"]
    datetime.date.fromisoformat(row["measured_at"])
    assert table["model"].tolist() == ["otsu"]


@pytest.mark.parametrize("flags", [["avx512_bf16"], []])
def test_jobs_cover_every_runtime_and_precision_the_cpu_runs(monkeypatch, flags):
    monkeypatch.setattr("seg_core.evaluation.bench.cpu_flags", lambda: flags)
    rows = jobs(["unet-light", "otsu", REFERENCE_NAME], ["openvino", "keras"], "models")
    unet = [("unet-light", "keras", "fp32"), ("unet-light", "openvino", "fp32")]
    unet += [("unet-light", "openvino", "bf16")] if flags else []
    unet += [("unet-light", "openvino", "int8")] if has_int8(MODELS_DIR / "unet-light") else []
    assert rows == [*unet, ("otsu", "opencv", "-"), (REFERENCE_NAME, "keras", "fp32")]
    assert jobs(["unet-light"], ["keras"], "models") == [("unet-light", "keras", "fp32")]


def test_default_speedup_compares_the_default_row_with_the_reference():
    table = pd.DataFrame(
        [
            {"model": DEFAULT_MODEL, "runtime": "keras", "precision": "fp32", "default": False, "reference": False},
            {"model": DEFAULT_MODEL, "runtime": "openvino", "precision": "bf16", "default": True, "reference": False},
            {"model": REFERENCE_NAME, "runtime": "keras", "precision": "fp32", "default": False, "reference": True},
        ]
    ).assign(latency_median_ms=[40.0, 10.0, 400.0])
    assert default_speedup(table) == (
        f"default predictor {DEFAULT_MODEL} (openvino bf16): 10.0 ms, 40.0x faster than the unet_classic reference "
        "(400.0 ms)"
    )
    assert default_speedup(table[~table["reference"]]) is None


def test_sample_photo_is_a_full_width_leeds_photo():
    assert Image.open(SAMPLE_PHOTO).width == 500


def test_reference_uses_the_unet_predictor_code_path():
    predictor = reference_predictor("unet8", input_size=32)
    assert isinstance(predictor, UNetPredictor) and predictor.name == REFERENCE_NAME
    prob = predictor.predict_proba(np.zeros((21, 13, 3), np.uint8))
    assert prob.shape == (21, 13) and prob.dtype == np.float32
    assert [p.shape for p in predictor.predict_batch([np.zeros((5, 7, 3), np.uint8)] * 2)] == [(5, 7)] * 2
    assert predictor.info()["file_mb"] is None
    parameters, file_mb = model_size(predictor)
    assert parameters == predictor.model.count_params() and file_mb > 0


def test_model_size_of_a_trained_model_and_a_baseline():
    unet = load_predictor("unet-light")
    assert model_size(unet) == (unet.info()["parameters"], unet.info()["file_mb"])
    assert model_size(load_predictor("grabcut")) == (0, 0.0)


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--image", __file__]])
def test_cli_refuses_bad_arguments(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_cli.main(argv)
    assert exc.value.code == 2 and "error" in capsys.readouterr().err


def test_cli_help():
    with pytest.raises(SystemExit) as exc:
        bench_cli.main(["--help"])
    assert exc.value.code == 0


def test_several_photos_are_timed_in_turn_and_named_in_the_photos_column(tmp_path):
    photos = sorted((SAMPLE_PHOTO.parent).glob("*.jpg"))[:3]
    out = tmp_path / "bench.csv"
    table = run_benchmarks(["otsu"], repeats=1, batch_repeats=1, warmup=0, photos=photos, out=out, reference=False)
    assert table.iloc[0]["photos"] == photos_label(photos) == "3 photos from images/"
    table = run_benchmarks(["otsu"], 1, 1, 0, photos, out, reference=False, progress=False, label="test split")
    assert load_bench(out).iloc[0]["photos"] == "test split"


def test_split_photos_and_the_cli_need_the_dataset(tmp_path, capsys):
    with pytest.raises(DatasetNotFoundError):
        split_photos(tmp_path, "test")
    with pytest.raises(SystemExit) as exc:
        bench_cli.main(["--split", "test", "--data", str(tmp_path)])
    assert exc.value.code == 2 and "--split test" in capsys.readouterr().err
