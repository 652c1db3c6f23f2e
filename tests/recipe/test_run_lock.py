"""One writer per run folder: a second launch on a folder another process holds refuses in one
line naming the holder's PID (exit 2 from a stage); a lock left by a killed process is taken
over; the ranks of one launch each hold their own lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.run_lock import FolderBusy, acquire, folder_lock, lock_path, release

REPO = Path(__file__).resolve().parents[2]
HOLD = (
    "import sys; from recipe.run_lock import acquire; acquire(sys.argv[1], int(sys.argv[2])); "
    "print('held', flush=True); sys.stdin.read()"
)


@pytest.fixture
def holder(tmp_path):
    """`holder(folder, rank)` starts a process that takes the folder's lock and keeps it."""
    started: list[subprocess.Popen] = []

    def start(folder: Path, rank: int = 0) -> subprocess.Popen:
        child = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder), str(rank)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "held"
        started.append(child)
        return child

    yield start
    for child in started:
        child.kill()
        child.wait()


def test_a_held_folder_names_its_holder_and_a_killed_holder_is_taken_over(tmp_path, holder):
    run = tmp_path / "run"
    child = holder(run)
    with pytest.raises(FolderBusy, match=f"pid {child.pid}") as busy:
        acquire(run, what="training run")
    assert "\n" not in str(busy.value) and str(lock_path(run)) in str(busy.value)
    with folder_lock(run, rank=1):  # another rank of the same launch
        pass
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    with folder_lock(run) as path:
        assert path.read_text().strip() == str(os.getpid())


def test_the_lock_is_reentrant_within_a_process_and_released_at_the_end(tmp_path):
    run = tmp_path / "run"
    outer = acquire(run)
    with folder_lock(run):  # the entry point holds it, then the trainer takes it again
        pass
    probe = [sys.executable, "-c", HOLD, str(run), "0"]
    busy = subprocess.run(probe, cwd=REPO, input="", capture_output=True, text=True)
    assert busy.returncode != 0 and "FolderBusy" in busy.stderr
    release(outer)
    free = subprocess.run(probe, cwd=REPO, input="", capture_output=True, text=True)
    assert free.returncode == 0 and free.stdout.strip() == "held"


def test_a_stage_launched_on_a_held_run_folder_exits_2_in_one_line(tmp_path, holder):
    child = holder(tmp_path / "stage1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "stages.stage1",
            f"trainer.runs_dir={tmp_path}",
            "trainer.run_name=stage1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert f"pid {child.pid}" in done.stderr and "in use" in done.stderr
