"""Resume checkpoints and Hugging Face exports of a run, never read back half written.

A checkpoint is the folder `checkpoints/step-NNNNNN/`: the DeepSpeed engine's state (module,
optimizer, scheduler) under `deepspeed/`, `trainer_state.pt` (step, data position, the rollout
sampler's counter, the RNG states of python, numpy and torch), the resolved `config.yaml`, a
Hugging Face export under `hf/`, and last the `COMPLETE` marker. It is written under a
temporary name and renamed into place; `latest` (a text file, itself replaced atomically) then
names it. A folder without its marker is never loaded, whatever `latest` says, so a kill or a
full disk mid-save leaves the previous checkpoint as the one to resume from. The oldest complete
checkpoints beyond `keep` are deleted after a save succeeds. A resume takes the newest
checkpoint whose files still match its manifest; one that does not is skipped with one line
naming the file, and the one before it is tried. With several ranks, rank 0 owns
the folder and everything but the DeepSpeed state, which every rank writes (a collective) into
the same staging folder between two barriers.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from recipe.atomic import atomic_dir, tmp_sibling, write_text
from recipe.config import save_config
from recipe.training.checkpoint_manifest import verify_checkpoint, write_manifest
from recipe.training.disk_full import naming_a_full_disk
from recipe.training.ranks import Ranks

CHECKPOINTS = "checkpoints"
LATEST = "latest"
COMPLETE = "COMPLETE"
DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "state"
STATE_FILE = "trainer_state.pt"
EXPORT_DIR = "hf"


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def export_hf(model, tokenizer, out_dir: str | Path) -> Path:
    """A folder `from_pretrained` loads: safetensors weights, config, generation config and
    tokenizer; it appears whole (`recipe.atomic.atomic_dir`)."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE).is_file()


class CheckpointStore:
    def __init__(self, run_dir: str | Path, keep: int, hash_limit_mb: float = 64.0):
        if keep < 1:
            raise ValueError(f"trainer.keep_checkpoints must be at least 1, got {keep}")
        self.root = Path(run_dir) / CHECKPOINTS
        self.keep = keep
        self.hash_limit_mb = hash_limit_mb

    def save(
        self, engine, tokenizer, step: int, state: dict, config, ranks: Ranks | None = None
    ) -> Path:
        ranks = ranks or Ranks()
        name = f"step-{step:06d}"
        final = self.root / name
        if not ranks.is_main:
            ranks.barrier()  # rank 0 has made the staging folder
            with naming_a_full_disk(final.parent, f"the checkpoint {final}"):
                self._save_engine(engine, tmp_sibling(final))
            ranks.barrier()  # every rank's engine state is written
            ranks.barrier()  # rank 0 has moved it into place
            return final
        with atomic_dir(final) as tmp, naming_a_full_disk(tmp, f"the checkpoint {final}"):
            ranks.barrier()
            self._save_engine(engine, tmp)
            ranks.barrier()  # the manifest must see every rank's files
            torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE_FILE)
            save_config(config, tmp)
            export_hf(engine.module, tokenizer, tmp / EXPORT_DIR)
            write_manifest(tmp, self.hash_limit_mb)
            write_text(tmp / COMPLETE, f"{step}\n", fsync=True)
        with naming_a_full_disk(self.root, f"{self.root / LATEST}"):
            write_text(self.root / LATEST, name + "\n", fsync=True)
        self._prune()
        ranks.barrier()
        return final

    @staticmethod
    def _save_engine(engine, folder: Path) -> None:
        engine.save_checkpoint(str(folder / DEEPSPEED_DIR), tag=DEEPSPEED_TAG, save_latest=False)

    def complete(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob("step-*") if p.is_dir() and is_complete(p)]
        return sorted(found, key=lambda p: p.name)

    def latest(self) -> Path | None:
        """The checkpoint `latest` names if it is complete, else the newest complete one."""
        pointer = self.root / LATEST
        if pointer.is_file():
            named = self.root / pointer.read_text().strip()
            if named.is_dir() and is_complete(named):
                return named
        found = self.complete()
        return found[-1] if found else None

    def candidates(self) -> list[Path]:
        """Complete checkpoints to resume from, best first: the one `latest` names, then the
        others newest first."""
        found = self.complete()[::-1]
        first = self.latest()
        return [first] + [p for p in found if p != first] if first else found

    def verified(self, skipped: Callable[[str], None]) -> Iterator[Path]:
        """`candidates()` whose files match their manifest; `skipped(line)` for each other."""
        for folder in self.candidates():
            problem = verify_checkpoint(folder)
            if problem is None:
                yield folder
            else:
                skipped(f"skipping checkpoint {folder}: {problem}")

    def _prune(self) -> None:
        for old in self.complete()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)


class CheckpointDamaged(RuntimeError):
    """A checkpoint's files differ from its manifest, or do not load."""


def load_checkpoint(engine, folder: str | Path, verify: bool = True) -> dict:
    """Restore the engine (weights, optimizer, scheduler) and the RNGs; returns the trainer
    state saved with them (step, data position, sampler counter). `verify=False` when the caller
    checked the manifest already (`CheckpointStore.verified`)."""
    folder = Path(folder)
    if not is_complete(folder):
        raise FileNotFoundError(f"{folder} is not a complete checkpoint (no {COMPLETE} marker)")
    problem = verify_checkpoint(folder) if verify else None
    if problem is not None:
        raise CheckpointDamaged(f"checkpoint {folder}: {problem}")
    try:
        path, _ = engine.load_checkpoint(
            str(folder / DEEPSPEED_DIR),
            tag=DEEPSPEED_TAG,
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if path is None:
            raise FileNotFoundError(f"DeepSpeed found no state under {folder / DEEPSPEED_DIR}")
        state = torch.load(folder / STATE_FILE, weights_only=False)
        set_rng_state(state["rng"])
    except Exception as e:  # a damaged file its manifest could only check by size
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise CheckpointDamaged(f"checkpoint {folder} did not load: {reason}") from e
    return state
