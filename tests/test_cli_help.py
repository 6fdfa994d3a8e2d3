"""Every command-line tool answers ``python -m seg_core.<tool> --help``."""

import subprocess
import sys

import pytest

from seg_core.data import REPO_ROOT


@pytest.mark.parametrize("tool", ["data", "train", "evaluate", "memcheck", "modelcard"])
def test_help(tool):
    done = subprocess.run(
        [sys.executable, "-m", f"seg_core.{tool}", "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"python -m seg_core.{tool}" in done.stdout
