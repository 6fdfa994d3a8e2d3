"""Every command-line tool answers ``python -m <module> --help`` with its own spelling."""

import subprocess
import sys

import pytest

from seg_core.core.paths import REPO_ROOT

COMMANDS = [f"seg_core.{c}" for c in ("data", "train", "evaluate", "modelcard")] + ["benchmarks.memcheck"]


@pytest.mark.parametrize("module", COMMANDS)
def test_help(module):
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert f"python -m {module}" in done.stdout
