"""Runtimes behind one predictor: Keras' masks, the auto choice and its fallbacks, thread safety."""

import logging
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from test_export import make_tiny_model, requires_openvino

from seg_core import runtimes as runtimes_cli
from seg_core.core.imaging import load_image
from seg_core.core.paths import MODELS_DIR, REPO_ROOT
from seg_core.evaluation import precision as precision_check
from seg_core.runtime import checks, export
from seg_core.runtime import engines as runtimes
from seg_core.runtime.base import ModelLoadError, threshold_mask
from seg_core.runtime.checks import plan
from seg_core.runtime.engines import PrecisionRefusedError, RuntimeUnavailableError
from seg_core.runtime.int8 import has_int8
from seg_core.runtime.predictor import UNetPredictor
from seg_core.runtime.registry import load_predictor

PHOTOS = sorted((REPO_ROOT / "samples" / "images").glob("*.jpg"))[:4]
COMMITTED = MODELS_DIR / "unet-light"
HAS_BF16 = bool({"avx512_bf16", "amx_bf16"} & set(runtimes.cpu_flags()))


@pytest.fixture(scope="module")
def photos():
    return [load_image(p) for p in PHOTOS]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv(export.CACHE_ENV, str(tmp_path / "cache"))
    return make_tiny_model(tmp_path / "models")


def write_checks(models_dir, rows: list[tuple[str, str, str, str, bool]]) -> None:
    """Rows of (model, digest, runtime, precision, passed) in the check file's format."""
    table = pd.DataFrame(
        [
            {"model": m, "digest": d, "runtime": r, "precision": p, "passed": ok, "split": "test", "photos": 3}
            | {"agreement": 1.0, "worst_photo_agreement": 1.0, "fg_iou": 0.9, "keras_fg_iou": 0.9}
            | {"cpu": "test", "checked_at": "2026-01-01"}
            for m, d, r, p, ok in rows
        ],
        columns=checks.CHECK_COLUMNS,
    )
    table.to_csv(checks.check_path(models_dir), index=False)


@requires_openvino
def test_each_runtime_predicts_the_keras_masks_on_sample_photos(photos):
    reference = UNetPredictor(COMMITTED, "keras", "fp32")
    expected = [threshold_mask(reference.predict_proba(img)) for img in photos]
    for precision in ("fp32", "bf16", "int8") if has_int8(COMMITTED) else ("fp32", "bf16"):
        predictor = UNetPredictor(COMMITTED, "openvino", precision)
        assert predictor.info()["runtime"] == "openvino"
        assert predictor.info()["precision"] == (precision if HAS_BF16 or precision == "int8" else "fp32")
        got = [threshold_mask(predictor.predict_proba(img)) for img in photos]
        # Pixels agreeing over all the photos, as the precision check counts them: one photo whose
        # second-look window moves by a pixel can differ more than that alone.
        same = sum(int(np.count_nonzero(g == m)) for g, m in zip(got, expected, strict=True))
        assert same / sum(m.size for m in expected) >= 0.999, precision


@requires_openvino
def test_openvino_takes_any_batch_size_and_matches_keras_probabilities(tiny, photos):
    keras_run = UNetPredictor(tiny, "keras", "fp32")
    openvino_run = UNetPredictor(tiny, "openvino", "fp32")
    for tta in (False, True):  # test-time augmentation sends four views of each photo: a batch of 4 x 3
        got = openvino_run.predict_batch(photos[:3], tta=tta)
        want = keras_run.predict_batch(photos[:3], tta=tta)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, atol=1e-4)


def test_auto_falls_back_to_keras_when_openvino_is_not_importable(tiny, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    predictor = load_predictor("tiny", models_dir=tiny.parent)
    assert (predictor.info()["runtime"], predictor.info()["precision"]) == ("keras", "fp32")
    with pytest.raises(RuntimeUnavailableError, match="not installed"):
        load_predictor("tiny", models_dir=tiny.parent, runtime="openvino")


@requires_openvino
def test_auto_falls_back_to_keras_when_the_export_fails(tiny, monkeypatch, caplog):
    def failing_export(*args, **kwargs):
        raise export.ExportError("disk full")

    monkeypatch.setattr(export, "openvino_export", failing_export)
    with caplog.at_level(logging.WARNING):
        predictor = load_predictor("tiny", models_dir=tiny.parent)
    assert predictor.runtime == "keras" and "disk full; falling back to keras" in caplog.text
    with pytest.raises(ModelLoadError, match="does not run on openvino: disk full"):
        load_predictor("tiny", models_dir=tiny.parent, runtime="openvino")


@pytest.fixture
def with_openvino(monkeypatch):
    monkeypatch.setattr(runtimes, "openvino_available", lambda: True)


def test_auto_uses_a_precision_only_where_the_check_passed_for_these_weights(tmp_path, with_openvino):
    assert plan("m", "abc", "auto", "auto", tmp_path) == [("openvino", "fp32"), ("keras", "fp32")]
    write_checks(tmp_path, [("m", "abc", "openvino", "bf16", True), ("m", "abc", "keras", "fp32", True)])
    assert plan("m", "abc", "auto", "auto", tmp_path) == [("openvino", "bf16"), ("keras", "fp32")]
    assert plan("m", "abc", "auto", "bf16", tmp_path) == [("openvino", "bf16")]
    assert plan("m", "abc", "keras", "auto", tmp_path) == [("keras", "fp32")]
    assert plan("m", "abc", "openvino", "fp32", tmp_path) == [("openvino", "fp32")]
    # Retrained weights (another digest) or another model: the check does not apply.
    assert plan("m", "new", "auto", "auto", tmp_path)[0] == ("openvino", "fp32")
    assert plan("other", "abc", "openvino", "auto", tmp_path) == [("openvino", "fp32")]


@pytest.mark.parametrize(
    ("rows", "runtime", "match"),
    [
        ([], "auto", "never checked for these weights"),
        ([("m", "old", "openvino", "bf16", True)], "openvino", "never checked for these weights"),
        ([("m", "abc", "openvino", "bf16", False)], "auto", r"failed the check on openvino \(pixels agreeing"),
        ([("m", "abc", "openvino", "bf16", True)], "keras", "the keras runtime runs fp32 only"),
    ],
)
def test_an_explicit_precision_that_is_not_verified_is_refused(tmp_path, with_openvino, rows, runtime, match):
    write_checks(tmp_path, rows)
    with pytest.raises(PrecisionRefusedError, match=match):
        plan("m", "abc", runtime, "bf16", tmp_path)


def test_unknown_runtime_or_precision_is_refused(tmp_path):
    with pytest.raises(RuntimeUnavailableError, match="unknown runtime 'tensorrt'"):
        plan("m", "abc", "tensorrt", "auto", tmp_path)
    with pytest.raises(PrecisionRefusedError, match="unknown precision 'int4'"):
        plan("m", "abc", "auto", "int4", tmp_path)


def test_a_damaged_check_file_means_unchecked(tmp_path, with_openvino):
    checks.check_path(tmp_path).write_bytes(b"\x00\xff not a csv")
    assert plan("m", "abc", "auto", "auto", tmp_path)[0] == ("openvino", "fp32")


@requires_openvino
def test_load_predictor_reads_the_check_file(tiny):
    write_checks(tiny.parent, [("tiny", export.folder_digest(tiny), "openvino", "bf16", True)])
    predictor = load_predictor("tiny", models_dir=tiny.parent)
    assert predictor.info()["runtime"] == "openvino"
    assert predictor.info()["precision"] == ("bf16" if HAS_BF16 else "fp32")
    with pytest.raises(PrecisionRefusedError):
        UNetPredictor(tiny, "keras", "bf16")


@requires_openvino
def test_agreement_rows_compare_every_precision_with_keras(tiny, photos):
    truths = [np.zeros(img.shape[:2], bool) for img in photos[:2]]
    rows = precision_check._agreement_rows("tiny", tiny.parent, photos[:2], truths, progress=False)
    by_key = {(r["runtime"], r["precision"]): r for r in rows}
    assert by_key["keras", "fp32"]["agreement"] == 1.0 and by_key["keras", "fp32"]["passed"]
    assert by_key["openvino", "fp32"]["agreement"] >= 0.999
    assert ("openvino", "bf16") in by_key or not HAS_BF16
    assert {r["digest"] for r in rows} == {export.folder_digest(tiny)}


def test_loading_warms_the_network_for_one_photo_and_for_test_time_augmentation(tiny, monkeypatch):
    sizes = []
    call = runtimes.KerasRuntime.__call__

    def recording_call(self, batch):
        sizes.append(len(batch))
        return call(self, batch)

    monkeypatch.setattr(runtimes.KerasRuntime, "__call__", recording_call)
    UNetPredictor(tiny, "keras", "fp32")
    assert sizes == [1, 4]


@requires_openvino
def test_five_threads_sharing_an_openvino_predictor_get_the_single_threaded_masks(photos):
    predictor = UNetPredictor(COMMITTED, "openvino", "bf16" if HAS_BF16 else "fp32")
    expected = [predictor.predict_proba(img) for img in photos]
    start = threading.Barrier(5)

    def user(index: int) -> list[tuple[int, np.ndarray]]:
        start.wait()
        order = [(index + step) % len(photos) for step in range(3)]
        return [(k, predictor.predict_proba(photos[k])) for k in order]

    with ThreadPoolExecutor(5) as pool:
        results = [r for batch in pool.map(user, range(5)) for r in batch]
    assert len(results) == 15
    for k, prob in results:
        np.testing.assert_allclose(prob, expected[k], atol=1e-6, err_msg=PHOTOS[k].name)
    assert predictor._forward._idle.qsize() > 1  # the threads really ran at once, each on its own request


def test_cli_help():
    with pytest.raises(SystemExit) as exc:
        runtimes_cli.main(["--help"])
    assert exc.value.code == 0


def test_cli_refuses_an_unknown_model(capsys):
    with pytest.raises(SystemExit) as exc:
        runtimes_cli.main(["--models", "nope"])
    assert exc.value.code == 2 and "unknown model(s) nope" in capsys.readouterr().err
