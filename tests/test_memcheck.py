"""The memory soak script runs the page's steps and reports resident memory growth."""

import re

import pytest

from seg_core import memcheck


def test_short_soak_reports_growth(capsys):
    assert memcheck.main(["--n", "20", "--warmup", "2", "--model", "unet-light"]) in (0, 1)
    out = capsys.readouterr().out
    warm = float(re.search(r"rss after warm-up: ([\d.]+) MB", out).group(1))
    end = float(re.search(r"rss at end: ([\d.]+) MB", out).group(1))
    growth = float(re.search(r"growth: ([-+][\d.]+) MB \(limit 100 MB\)", out).group(1))
    assert warm > 0 and end > 0
    assert abs(growth - (end - warm)) < 0.11
    assert len(re.findall(r"rss after +\d+ predictions", out)) == 4


def test_growth_at_the_limit_fails(monkeypatch, capsys):
    leaky = memcheck.SoakReport(warm_mb=500.0, end_mb=650.0, peak_mb=700.0, checkpoints=[(5, 650.0)])
    monkeypatch.setattr(memcheck, "soak", lambda *args: leaky)
    assert memcheck.main(["--n", "5", "--model", "unet-light"]) == 1
    assert "growth: +150.0 MB" in capsys.readouterr().out


def test_unknown_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        memcheck.main(["--model", "no-such-model"])
    assert stopped.value.code == 2
    assert "unknown model" in capsys.readouterr().err
