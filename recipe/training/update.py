"""One policy update from a rollout batch: behaviour log-probs, advantages, then `ppo_epochs`
passes over `updates_per_rollout` mini-batches, one optimizer step each.

Mini-batches. Each rank's questions (whole groups) are split into `updates_per_rollout` equal
parts; mini-batch m is part m of every rank, so every rank works in every optimizer step and a
question's samples are never split (the R1-Searcher release rolls out 64 questions x 16 samples
and makes 4 optimizer steps of 256). The loss of one optimizer step is the token mean over its
mini-batch's action tokens on every rank (`OptimizerStep.passes` weighs the micro-batches).

Behaviour log-probs, the denominators of the clip ratio (PPO, arXiv:1707.06347): the sampler's
(`old_logprobs: sampler`), or the trainer's own before any update (`recompute`), taken by a
no-grad pass over this rank's rows before the first optimizer step. With one optimizer step per
rollout and no KL in the reward, that pass would repeat the update's own forward: the ratio is
then 1 at every token, and the forward's detached log-probs stand in for the pass.
Advantages (`recipe.algorithms`) are computed once, over the whole step on every rank: group
baselines and whitening see every sample, whatever the mini-batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from recipe.algorithms import compute_advantages, masked_mean, policy_objective
from recipe.schema import RunConfig
from recipe.training.batch import TrainBatch
from recipe.training.errors import TrainingError
from recipe.training.microbatch import token_micro_batches
from recipe.training.optimizer_step import OptimizerStep
from recipe.training.ranks import Ranks

# forward(model, micro_batch) -> (log-probs [B, T] at the action tokens, entropy [N])
Forward = Callable[[torch.nn.Module, TrainBatch], tuple[torch.Tensor, torch.Tensor]]
STATISTICS = ("policy_loss", "clip_fraction", "approx_kl", "entropy")


def micro_batches(batch: TrainBatch, rows: Sequence[int], max_tokens: int) -> list[list[int]]:
    return token_micro_batches(rows, batch.lengths, max_tokens)


@torch.no_grad()
def logprobs_without_grad(
    forward: Forward, model, batch: TrainBatch, rows: Sequence[int], max_tokens: int
) -> torch.Tensor:
    """Log-probs [B, T] of `rows` under `model` (zero on every other row), pass by pass."""
    out = torch.zeros(batch.input_ids.shape, dtype=torch.float32, device=batch.input_ids.device)
    for micro in micro_batches(batch, rows, max_tokens):
        values, _ = forward(model, batch.select(micro))
        out[micro, : values.shape[1]] = values.float()
    return out


def split_groups(batch: TrainBatch, rows: Sequence[int], parts: int) -> list[list[int]]:
    """`rows` in `parts` lists of whole groups (equal numbers of groups), in row order."""
    groups: dict[int, list[int]] = {}
    for row in rows:
        groups.setdefault(int(batch.group_index[row]), []).append(row)
    ordered = list(groups.values())
    if len(ordered) % parts:
        raise TrainingError(
            f"trainer.updates_per_rollout={parts} does not split a rank's {len(ordered)} "
            "questions evenly; use a divisor of prompts_per_step / ranks"
        )
    size = len(ordered) // parts
    return [
        [r for group in ordered[k * size : (k + 1) * size] for r in group] for k in range(parts)
    ]


class PolicyUpdate:
    """`PolicyUpdate(cfg, engine, optimizer_step, ranks, forward)(batch, ref)` -> statistics."""

    def __init__(
        self,
        cfg: RunConfig,
        engine,
        optimizer_step: OptimizerStep,
        ranks: Ranks,
        forward: Forward,
    ):
        self.cfg = cfg
        self.tc = cfg.trainer
        self.engine = engine
        self.optimizer_step = optimizer_step
        self.ranks = ranks
        self.forward = forward
        self.nonfinite_in_a_row = 0  # optimizer steps skipped one after the other

    @property
    def steps_per_rollout(self) -> int:
        return self.tc.ppo_epochs * self.tc.updates_per_rollout

    def __call__(self, batch: TrainBatch, ref: torch.Tensor | None) -> dict[str, float]:
        own = list(self.ranks.block(len(batch)))
        algo = self.cfg.algo
        old = self._behaviour_logprobs(batch, own)
        advantages, returns = compute_advantages(
            algo, batch.rewards, batch.action_mask, batch.group_index, old, ref
        )
        parts = self.tc.updates_per_rollout
        every_rank = [
            split_groups(batch, self.ranks.block_of(r, len(batch)), parts)
            for r in range(self.ranks.world)
        ]
        results = []
        for _ in range(self.tc.ppo_epochs):
            for m in range(parts):
                whole = [row for rank_parts in every_rank for row in rank_parts[m]]
                mine = every_rank[self.ranks.rank][m]
                results.append(self._optimizer_step(batch, mine, whole, advantages, old, ref))
        stats = _mean_over_steps(results)
        stats["advantage/mean"] = float(masked_mean(advantages, batch.action_mask))
        stats["return/mean"] = float(masked_mean(returns, batch.action_mask))
        stats["tokens/action"] = float(batch.action_mask.sum())
        return stats

    def _behaviour_logprobs(self, batch: TrainBatch, own: list[int]) -> torch.Tensor | None:
        """The sampling policy's log-probs: every row's when KL enters the reward (the
        advantages see the whole step), this rank's otherwise; None when the update's own
        forward provides them (see the module docstring)."""
        if self.tc.old_logprobs == "sampler":
            return batch.old_logprobs
        algo = self.cfg.algo
        if algo.kl_in_reward and algo.kl_coef != 0.0:
            rows = range(len(batch))
        elif self.steps_per_rollout == 1:
            return None
        else:
            rows = own
        model = self.engine.module
        return logprobs_without_grad(self.forward, model, batch, rows, self.tc.micro_batch_tokens)

    def _optimizer_step(self, batch, mine, whole, advantages, old, ref) -> dict[str, float]:
        """One optimizer step over this rank's `mine` rows of the mini-batch `whole`."""
        action_tokens = batch.action_mask.sum(dim=1).tolist()
        total = max(1, int(sum(action_tokens[r] for r in whole)))
        micro = micro_batches(batch, mine, self.tc.micro_batch_tokens)
        stats = dict.fromkeys(STATISTICS, 0.0)
        finite = True
        for step_pass in self.optimizer_step.passes(micro, batch.lengths, action_tokens, total):
            sub = batch.select(step_pass.rows)
            width = sub.input_ids.shape[1]
            logprobs, entropy = self.forward(self.engine.module, sub)
            logprobs = logprobs.float()
            sub_old = logprobs.detach() if old is None else old[step_pass.rows, :width]
            loss, diag = policy_objective(
                self.cfg.algo,
                logprobs,
                sub_old,
                advantages[step_pass.rows, :width],
                sub.action_mask,
                None if ref is None else ref[step_pass.rows, :width],
            )
            if not torch.isfinite(loss):
                finite = False
                if self.optimizer_step.stops_at_nonfinite_loss:
                    break
            self.engine.backward(loss * step_pass.loss_weight, scale_wrt_gas=False)
            share = step_pass.token_share
            diag = {**diag, "policy_loss": float(loss.detach())}
            diag["entropy"] = float(entropy.mean()) if entropy.numel() else 0.0
            for key, value in diag.items():
                stats[key] = stats.get(key, 0.0) + value * share
        stats = self.ranks.sum_floats(stats)  # token shares are global: the sum is the mean
        finite = not self.ranks.any(not finite)  # one rank's bad loss skips the step everywhere
        # The rate this step applies: the schedule moves on inside `apply`.
        stats["lr"] = float(self.engine.get_lr()[0])
        grad_norm = self.optimizer_step.apply(finite)
        if grad_norm is None:
            return self._skipped(stats)
        self.nonfinite_in_a_row = 0
        return {**stats, "grad_norm": grad_norm, "update/skipped": 0.0}

    def _skipped(self, stats: dict[str, float]) -> dict[str, float]:
        self.nonfinite_in_a_row += 1
        if self.nonfinite_in_a_row >= self.tc.max_nonfinite_steps:
            raise TrainingError(
                f"{self.nonfinite_in_a_row} optimizer steps in a row had a non-finite loss or "
                "gradient (trainer.max_nonfinite_steps); lower trainer.lr or check the reward"
            )
        return {**stats, "grad_norm": math.nan, "update/skipped": 1.0}


def _mean_over_steps(results: list[dict[str, float]]) -> dict[str, float]:
    """Each statistic's mean over the optimizer steps (grad_norm over the applied ones; `lr`,
    the mean of the rates they applied)."""
    keys = {k for r in results for k in r}
    out = {k: sum(r[k] for r in results if k in r) / len(results) for k in keys}
    norms = [r["grad_norm"] for r in results if not math.isnan(r["grad_norm"])]
    out["grad_norm"] = sum(norms) / len(norms) if norms else math.nan
    return out
