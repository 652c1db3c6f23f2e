"""A full disk during a checkpoint: one line saying so and where, exit 1, the previous
checkpoint intact and still the latest; other OS errors of a write are named too. The disks are
real tmpfs file systems, small or read-only, mounted in a private user and mount namespace
(`unshare -rm`)."""

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


WRITERS = """
import json, sys
import torch
from pathlib import Path
from recipe.atomic import write_text
from recipe.training.disk_full import naming_a_full_disk
full, read_only = Path(sys.argv[1]), Path(sys.argv[2])
writers = {
    "torch": lambda: torch.save(torch.zeros(1 << 20), full / "state.pt"),
    "python": lambda: write_text(full / "big.txt", "x" * (2 << 20)),
    "read_only": lambda: write_text(read_only / "small.txt", "x"),
}
for name, write in writers.items():
    try:
        with naming_a_full_disk(full if name != "read_only" else read_only, name):
            write()
    except Exception as e:
        print(json.dumps({"writer": name, "error": type(e).__name__, "message": str(e)}))
"""


def namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not namespaces_work(), reason="unshare -rm (user namespaces) not permitted"
)


@needs_namespaces
def test_write_errors_on_real_file_systems_are_named(tmp_path):
    full, read_only = tmp_path / "full", tmp_path / "read_only"
    full.mkdir()
    read_only.mkdir()
    script = (
        f"mount -t tmpfs -o size=1m tmpfs {full} && mount -t tmpfs -o ro tmpfs {read_only} && "
        f"{sys.executable} -c '{WRITERS}' {full} {read_only}"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    rows = {r["writer"]: r for r in map(json.loads, done.stdout.splitlines())}
    for name in ("torch", "python"):  # torch's zip writer reports no errno: the free space does
        assert rows[name]["error"] == "DiskFull"
        assert rows[name]["message"].startswith(
            f"disk full: no space left on the device holding {full}"
        )
    assert rows["read_only"]["error"] == "WriteFailed"
    assert "Read-only file system" in rows["read_only"]["message"]
    assert str(read_only / "small.txt") in rows["read_only"]["message"]


@pytest.mark.slow
@needs_namespaces
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
