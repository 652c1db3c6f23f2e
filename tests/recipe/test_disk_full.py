"""A full disk during a checkpoint: one line saying so and where, exit 1, the previous
checkpoint intact and still the latest. The disk is a real 40 MiB tmpfs, mounted in a private
user and mount namespace (`unshare -rm`), where the tiny run's second checkpoint does not fit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.training.engine import SINGLE_RANK_ENV

REPO = Path(__file__).resolve().parents[2]
DISK_MB = 40  # one checkpoint of the tiny run takes 28 MB: the second does not fit

CHECK = """
import json, sys
from pathlib import Path
from recipe.training.checkpoint import CheckpointStore
from recipe.training.checkpoint_manifest import verify_checkpoint
run = Path(sys.argv[1])
store = CheckpointStore(run, keep=2)
print(json.dumps({
    "latest": (store.root / "latest").read_text().strip(),
    "folders": sorted(p.name for p in store.root.iterdir() if p.name.startswith("step-")),
    "problem": verify_checkpoint(store.root / "step-000001"),
}))
"""


def namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not namespaces_work(), reason="unshare -rm (user namespaces) not permitted")
def test_a_full_disk_during_a_checkpoint_is_named_and_keeps_the_previous(tmp_path):
    disk, run = tmp_path / "disk", tmp_path / "disk" / "run"
    disk.mkdir()
    out, err, state = tmp_path / "out.txt", tmp_path / "err.txt", tmp_path / "state.json"
    python = sys.executable
    script = (
        f"mount -t tmpfs -o size={DISK_MB}m tmpfs {disk} && "
        f"{python} tests/recipe/tiny_world.py {run} 2 > {out} 2> {err}; "
        f"echo $? > {tmp_path / 'rc'}; "
        f"{python} -c '{CHECK}' {run} > {state}"
    )
    env = {k: v for k, v in os.environ.items() if k not in SINGLE_RANK_ENV and k != "MASTER_PORT"}
    env.update(PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE")
    subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env, check=True, timeout=900
    )
    assert (tmp_path / "rc").read_text().strip() == "1"
    messages = err.read_text()
    assert "Traceback" not in messages
    full = [line for line in messages.splitlines() if "disk full" in line]
    assert len(full) == 1, messages
    assert str(run / "checkpoints") in full[0]
    assert "step-000001 is intact and still the latest" in full[0]
    found = json.loads(state.read_text())
    assert found == {"latest": "step-000001", "folders": ["step-000001"], "problem": None}
