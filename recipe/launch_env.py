"""What the launcher (the DeepSpeed launcher, torchrun) tells a process through its environment.

Read before torch is imported and before the process group starts, so that an entry point can
decide on one line of output for all its ranks, or lock a run folder once, at no import cost.
"""

from __future__ import annotations

import os


def launcher_rank() -> int:
    """This process's global rank as the launcher set `RANK`; 0 when run alone."""
    return int(os.environ.get("RANK", "0") or 0)
