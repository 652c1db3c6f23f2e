"""`python -m demo`: the printout every user runs first shows each record's trajectories with
their masked spans checked against the inserted text."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from demo.world import DEMO_RECORDS
from tests.recipe.tiny_world import REPO

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file")


@pytest.mark.slow
def test_the_demo_prints_every_trajectory_with_its_mask_check():
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [sys.executable, "-m", "demo", "--samples", "2", "--seed", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    headers = [line for line in done.stdout.splitlines() if line.startswith("=== ")]
    assert len(headers) == 2 * len(DEMO_RECORDS)
    assert all("mask_check=ok" in line for line in headers), headers
    assert "\u27e6" in done.stdout and "\u27e7" in done.stdout  # the inserted spans, bracketed
    assert "backend:" in done.stdout.splitlines()[-1]
