"""How one update's gradients are reduced over the ranks and applied, for each ZeRO stage.

The trainer's loss weights are global: each micro-batch's loss is weighted by its share of the
whole step's action tokens (over every rank), so the update's gradient is the *sum* of the
ranks' gradients.

- ZeRO stage 0: the trainer sums the gradients itself, as one flat all-reduce once per update
  (DeepSpeed's own reduction is switched off), reads the gradient norm from them and skips an
  update whose norm is not finite.
- ZeRO stages 1 and 2: DeepSpeed's ZeRO optimizer owns the gradients (stage 2 reduce-scatters
  them into per-rank partitions during every backward, so no rank ever holds them whole). Its
  reduction is a mean over ranks, so the loss is scaled by the world size to make it the sum;
  its step computes the global norm, clips to `gradient_clipping`, and skips itself when the
  norm is not finite (`was_step_applied`). Every stage-2 backward is a collective, so every rank
  runs the same number of them: ranks with fewer micro-batches split theirs (`passes`).
- ZeRO stage 3 also partitions the weights, which the generation copy, the reference model and
  the exports read whole: refused until they gather them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from recipe.training.microbatch import split_to_count
from recipe.training.ranks import Ranks


@dataclass(frozen=True)
class Pass:
    """One forward/backward of an optimizer step."""

    rows: list[int]
    token_share: float  # the pass's share of the step's action tokens (its statistics' weight)
    loss_weight: float  # what its token-mean loss is multiplied by before backward


class OptimizerStep:
    def __init__(self, engine, ranks: Ranks):
        self.engine = engine
        self.ranks = ranks
        self.stage = int(engine.zero_optimization_stage())
        if self.stage >= 3:
            raise ValueError(
                "trainer.deepspeed_config: ZeRO stage 3 is not supported yet (the generation "
                "copy, reference model and exports need the whole weights); use stage 2 "
                "(configs/deepspeed/zero2.json) or 0"
            )
        self.deepspeed_reduces = self.stage > 0
        if not self.deepspeed_reduces:
            engine.enable_backward_allreduce = False  # `apply` sums them, once per update

    @property
    def loss_scale(self) -> float:
        """What each micro-batch's loss is multiplied by: DeepSpeed averages over ranks."""
        return float(self.ranks.world) if self.deepspeed_reduces else 1.0

    @property
    def stops_at_nonfinite_loss(self) -> bool:
        """Whether an epoch may stop at a non-finite loss. Under ZeRO every rank must run all its
        backward passes (collectives), and DeepSpeed skips the update on the non-finite norm."""
        return not self.deepspeed_reduces

    def passes(
        self,
        micro: Sequence[Sequence[int]],
        lengths: Sequence[int],
        action_tokens: Sequence[int],
        total_tokens: int,
    ) -> list[Pass]:
        """This rank's micro-batches with their loss weights. Each micro-batch's loss is its
        token mean; weighted by its share of the optimizer step's `total_tokens` action tokens
        (over every rank) the sum of the passes' gradients is the token mean over the step.
        Under ZeRO-2 every rank runs as many passes as the rank with the most; a rank with no
        rows left to split runs an empty pass: the first pass's rows at weight 0."""
        passes = [list(rows) for rows in micro]
        if self.stage == 2 and self.ranks.world > 1:
            passes = split_to_count(passes, lengths, self.ranks.max_int(len(passes)))
        out = []
        for rows in passes:
            if not rows:
                out.append(Pass(passes[0], 0.0, 0.0))
                continue
            share = sum(action_tokens[r] for r in rows) / total_tokens
            out.append(Pass(rows, share, share * self.loss_scale))
        return out

    def apply(self, finite: bool) -> float | None:
        """Reduce, clip and apply the accumulated gradients; returns their global norm (NaN when
        DeepSpeed computed none), or None when the update was skipped and its gradients dropped."""
        if self.deepspeed_reduces:
            self.engine.step()
            if not self.engine.was_step_applied():
                return None
            norm = self.engine.get_global_grad_norm()  # None without gradient clipping
            return math.nan if norm is None else float(norm)
        params = list(self.engine.module.parameters())
        if finite:
            self.ranks.sum_gradients(params)
        norm = _grad_norm(params) if finite else math.inf
        if not math.isfinite(norm):
            self.engine.zero_grad()
            return None
        self.engine.step()
        return norm


def _grad_norm(params: Sequence[torch.nn.Parameter]) -> float:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads))
