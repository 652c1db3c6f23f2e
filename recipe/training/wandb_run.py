"""Optional wandb logging beside TensorBoard (`logging.wandb`; off by default).

wandb is an optional dependency (`pip install -e '.[wandb]'`); its own environment variables
apply as usual (`WANDB_MODE=offline` keeps the run on disk for a later `wandb sync`). The run
lives in the run folder and is keyed by the run name, so a resumed run continues the same wandb
run; the steps it re-logs after a resume are ones wandb already holds, which it ignores.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from recipe.schema import LoggingConfig


def open_wandb_run(run_dir: Path, cfg: LoggingConfig, resume_step: int = 0):
    """A started `wandb` run for this run folder."""
    try:
        import wandb
    except ImportError:
        raise ImportError(
            "logging.wandb is true but wandb is not installed: pip install -e '.[wandb]', or "
            "set logging.wandb=false"
        ) from None
    run_id = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]
    return wandb.init(
        project=cfg.wandb_project,
        name=run_dir.name,
        id=run_id,
        dir=str(run_dir),
        resume="allow" if resume_step else None,
    )
