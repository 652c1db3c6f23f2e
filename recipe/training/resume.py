"""Where a run goes on from: the newest checkpoint that checks and loads, under the run's settings.

`trainer.resume=auto` tries the run folder's checkpoints best first (`CheckpointStore.
candidates`); one whose files differ from its manifest, or that fails to load, is skipped with
one line naming it, and the one before it is tried. A checkpoint named by path is loaded or
refused, never replaced by another. Before any checkpoint loads, the run's settings are
compared with those it started under (`recipe.training.run_settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recipe.training.checkpoint import CheckpointDamaged, CheckpointStore, load_checkpoint
from recipe.training.errors import TrainingError


def load_resume_state(
    store: CheckpointStore,
    engine,
    mode: str,
    say: Callable[[str], None],
    before_load: Callable[[], None],
) -> tuple[Path, dict] | None:
    """(checkpoint folder, trainer state) loaded into `engine`, or None to start at step 0.
    `before_load()` runs once there is a checkpoint to resume from (the settings check)."""
    if mode == "off":
        if store.latest() is not None:
            raise TrainingError(
                f"{store.root.parent} already holds checkpoints and trainer.resume=off; "
                "use trainer.resume=auto or another trainer.run_name"
            )
        return None
    if mode != "auto":
        before_load()
        try:
            return Path(mode), load_checkpoint(engine, mode)
        except CheckpointDamaged as e:
            raise TrainingError(f"trainer.resume: {e}") from None
    candidates = store.candidates()
    if not candidates:
        return None
    before_load()
    for folder in store.verified(say):
        try:
            return folder, load_checkpoint(engine, folder, verify=False)
        except CheckpointDamaged as e:
            say(f"skipping {e}")
    raise TrainingError(
        f"none of the {len(candidates)} checkpoints in {store.root} is usable (see above); "
        "move the run folder aside or use another trainer.run_name"
    )
