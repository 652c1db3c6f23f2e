"""Run a script on two CPU ranks under the DeepSpeed launcher (gloo), as a user launches them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from recipe.ports import free_port
from recipe.training.engine import SINGLE_RANK_ENV

REPO = Path(__file__).resolve().parents[1]


def launch_two_ranks(*program: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """The launcher's result for `program` (a script and its arguments, or `--module NAME`
    and its arguments); when one rank dies, the launcher ends the other."""
    launcher = Path(sys.executable).parent / "deepspeed"
    command = [str(launcher), "--num_gpus", "2", "--no_local_rank"]
    command += ["--master_port", str(free_port()), *program]
    env = {k: v for k, v in os.environ.items() if k not in SINGLE_RANK_ENV and k != "MASTER_PORT"}
    env.update(PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE", DS_BUILD_OPS="0")
    return subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
