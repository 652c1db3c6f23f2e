"""Resume checkpoints and Hugging Face exports of a run, never read back half written.

A checkpoint is the folder `checkpoints/step-NNNNNN/`: the DeepSpeed engine's state (module,
optimizer, scheduler) under `deepspeed/`, `trainer_state.pt` (step, data position, the rollout
sampler's counter, the RNG states of python, numpy and torch), the resolved `config.yaml`, a
Hugging Face export under `hf/`, and last the `COMPLETE` marker. It is written under a
temporary name and renamed into place; `latest` (a text file, itself replaced atomically) then
names it. A folder without its marker is never loaded, whatever `latest` says, so a kill or a
full disk mid-save leaves the previous checkpoint as the one to resume from. The oldest complete
checkpoints beyond `keep` are deleted after a save succeeds. With several ranks, rank 0 owns
the folder and everything but the DeepSpeed state, which every rank writes (a collective) into
the same staging folder between two barriers.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch

from recipe.atomic import atomic_dir, tmp_sibling, write_text
from recipe.config import save_config
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
    def __init__(self, run_dir: str | Path, keep: int):
        if keep < 1:
            raise ValueError(f"trainer.keep_checkpoints must be at least 1, got {keep}")
        self.root = Path(run_dir) / CHECKPOINTS
        self.keep = keep

    def save(
        self, engine, tokenizer, step: int, state: dict, config, ranks: Ranks | None = None
    ) -> Path:
        ranks = ranks or Ranks()
        name = f"step-{step:06d}"
        final = self.root / name
        if not ranks.is_main:
            ranks.barrier()  # rank 0 has made the staging folder
            self._save_engine(engine, tmp_sibling(final))
            ranks.barrier()  # rank 0 has moved it into place
            return final
        with atomic_dir(final) as tmp:
            ranks.barrier()
            self._save_engine(engine, tmp)
            torch.save({**state, "step": step, "rng": rng_state()}, tmp / STATE_FILE)
            save_config(config, tmp)
            export_hf(engine.module, tokenizer, tmp / EXPORT_DIR)
            write_text(tmp / COMPLETE, f"{step}\n", fsync=True)
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

    def _prune(self) -> None:
        for old in self.complete()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(engine, folder: str | Path) -> dict:
    """Restore the engine (weights, optimizer, scheduler) and the RNGs; returns the trainer
    state saved with them (step, data position, sampler counter)."""
    folder = Path(folder)
    if not is_complete(folder):
        raise FileNotFoundError(f"{folder} is not a complete checkpoint (no {COMPLETE} marker)")
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
    return state
