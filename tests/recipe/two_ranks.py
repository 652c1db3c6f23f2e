"""The tiny world on two ranks, under the DeepSpeed launcher (gloo on CPU):

    deepspeed --num_gpus 2 tests/recipe/two_ranks.py update BATCH.pkl OUT.pt RUN_DIR DS_CONFIG
    deepspeed --num_gpus 2 tests/recipe/two_ranks.py fit RUN_DIR STEPS DS_CONFIG

`update` runs the trainer's update over the pickled (trajectories, rewards), each rank on its
block of rows, and rank 0 saves the summed gradient (read as `engine.step` starts; ZeRO-2 holds
none whole), the updated weights and each rank's micro-batch count before and after ZeRO-2
evens them; `fit` trains with two prompts per step (one per rank).
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from recipe.training.batch import collate  # noqa: E402
from recipe.training.update import micro_batches  # noqa: E402
from tests.recipe.tiny_world import tiny_trainer  # noqa: E402


def gradients_at_step(trainer) -> dict:
    """The gradients `engine.step` applies, copied as it starts (test instrumentation)."""
    seen: dict = {}
    real_step = trainer.engine.step

    def step(*args, **kwargs):
        seen.update(
            (n, p.grad.detach().clone())
            for n, p in trainer.engine.module.named_parameters()
            if p.grad is not None
        )
        return real_step(*args, **kwargs)

    trainer.engine.step = step
    return seen


def update(batch_file: str, out_file: str, run_dir: str, ds_config: str) -> None:
    torch.set_num_threads(1)
    trainer = tiny_trainer(
        Path(run_dir),
        steps=1,
        micro_batch_tokens=600,
        prompts_per_step=2,
        deepspeed_config=ds_config,
    )
    with open(batch_file, "rb") as f:
        trajectories, rewards = pickle.load(f)
    batch = collate(trajectories, rewards, trainer.tokenizer.pad_token_id)
    grads = gradients_at_step(trainer)
    rows = trainer.ranks.block(len(batch))
    groups = trainer.ranks.gather(sorted({int(batch.group_index[i]) for i in rows}))
    micro = micro_batches(batch, rows, trainer.tc.micro_batch_tokens)
    tokens = batch.action_mask.sum(dim=1).tolist()
    passes = trainer.ranks.gather(
        (len(micro), len(trainer.optimizer_step.passes(micro, batch.lengths, tokens, 1)))
    )
    stats = trainer.update(batch, None)
    if trainer.ranks.is_main:
        weights = {n: p.detach().clone() for n, p in trainer.engine.module.named_parameters()}
        out = {"grads": grads, "weights": weights, "groups": groups, "stats": stats}
        torch.save({**out, "passes": passes}, out_file)


def fit(run_dir: str, steps: str, ds_config: str) -> None:
    tiny_trainer(Path(run_dir), int(steps), prompts_per_step=2, deepspeed_config=ds_config).fit()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"update": update, "fit": fit}[mode](*args)
