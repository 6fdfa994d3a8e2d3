"""The memory soak script runs the Segment page's steps and reports resident memory growth."""

import re

import numpy as np
import pytest

from benchmarks import memcheck
from seg_core.core.paths import SAMPLES_DIR
from seg_core.runtime.base import InferenceOptions
from seg_core.service.analysis import MaskSettings


class Half:
    """A stand-in model: probability 0.6 on the left half of every photo."""

    name = "half"
    kind = "test"
    binary_only = False

    def __init__(self):
        self.options = []

    def predict_proba(self, image, options=None):
        self.options.append(options)
        prob = np.zeros(image.shape[:2], np.float32)
        prob[:, : image.shape[1] // 2] = 0.6
        return prob


def test_a_round_goes_through_the_page_steps(monkeypatch):
    calls = []
    steps = ("analyse_compact", "finish_compact", "views", "load_image", "final_mask", "mask_file", "cutout_file")
    for step in steps:
        original = getattr(memcheck, step)
        monkeypatch.setattr(
            memcheck, step, lambda *args, _original=original, _step=step: calls.append(_step) or _original(*args)
        )
    model = Half()
    photo = sorted((SAMPLES_DIR / "images").glob("*.jpg"))[0].read_bytes()
    sent = memcheck.page_round(photo, model)
    assert calls == list(steps)
    # The page's default settings: the tidy clean-up, and its default inference options reach the model.
    assert MaskSettings(threshold=0.5, tidy=True) == memcheck.SETTINGS
    assert model.options == [InferenceOptions()]
    assert sent > 0


def test_short_soak_stays_within_the_limit(capsys):
    assert memcheck.main(["--n", "20", "--warmup", "2", "--model", "unet-light"]) == 0
    out = capsys.readouterr().out
    warm = float(re.search(r"rss after warm-up: ([\d.]+) MB", out).group(1))
    end = float(re.search(r"rss at end: ([\d.]+) MB", out).group(1))
    growth = float(re.search(r"growth: ([-+][\d.]+) MB \(limit 100 MB\)", out).group(1))
    assert warm > 0 and end > 0
    assert abs(growth - (end - warm)) < 0.11
    assert len(re.findall(r"rss after +\d+ predictions", out)) == 4
    assert out.rstrip().endswith("OK")


def test_growth_at_the_limit_fails(monkeypatch, capsys):
    leaky = memcheck.SoakReport(warm_mb=500.0, end_mb=650.0, peak_mb=700.0, checkpoints=[(5, 650.0)])
    monkeypatch.setattr(memcheck, "soak", lambda *args: leaky)
    assert memcheck.main(["--n", "5", "--model", "unet-light"]) == 1
    out = capsys.readouterr().out
    assert "growth: +150.0 MB" in out and "FAIL: memory grew past the limit" in out


def test_unknown_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        memcheck.main(["--model", "no-such-model"])
    assert stopped.value.code == 2
    assert "unknown model" in capsys.readouterr().err
