"""The supervised cold start: a plain PyTorch loop over the cold-start examples.

Every example begins with the same tokens (the chat template's system turn holding the
R1-Searcher system prompt, about 200 tokens, most of a direct transcript). A step therefore
runs that shared prefix once, copies its keys and values to every row, and runs only the rows'
suffixes: the loss and its gradient are exactly those of the full rows (the prefix's
activations are shared, and the copies' gradients sum back into them), at a fraction of the
prompt compute. Logits are computed only where there is a target (the assistant's tokens),
since the vocabulary projection of every document token would be wasted work.

Steps: every optimizer step holds the behaviours in the mix's ratio (`mixed_steps`), run as
forward passes of similar lengths (`micro_batches`) whose gradients accumulate. Loss: summed
token cross-entropy over the assistant's tokens, divided by the average number of such tokens
per step, so every trained token weighs the same whichever pass it falls in.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm
from transformers import DynamicCache

from miniwiki.base_config import ColdStartConfig
from miniwiki.coldstart_data import Example, micro_batches, mixed_steps, shared_prefix_length
from recipe.training.logprobs import broadcast_cache, selected_logits, token_logprobs
from recipe.training.logprobs import prefix_cache as shared_prefix_cache
from recipe.training.optim import (
    build_optimizer,
    build_schedule,
    freeze_lower,
    trainable_parameters,
)


@dataclass
class TrainStats:
    steps: int
    examples: int
    tokens: int  # tokens run through the model (prefix once per step + suffixes)
    full_tokens: int  # tokens of the full rows (what a plain loop would run, padding aside)
    trained_tokens: int
    first_loss: float
    last_loss: float
    seconds: float


def _suffix_batch(rows: Sequence[Example], prefix: int, pad_id: int):
    """Right-padded suffix ids, their attention mask, and (row, position, target) of targets."""
    width = max(len(e) for e in rows) - prefix
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    rows_at, positions, targets = [], [], []
    for r, e in enumerate(rows):
        suffix = e.ids[prefix:]
        ids[r, : len(suffix)] = torch.tensor(suffix)
        mask[r, : len(suffix)] = 1
        # Position j predicts token j + 1; it is a target when that token is the assistant's.
        for j in range(len(suffix) - 1):
            if e.loss_mask[prefix + j + 1]:
                rows_at.append(r)
                positions.append(j)
                targets.append(suffix[j + 1])
    return ids, mask, torch.tensor(rows_at), torch.tensor(positions), torch.tensor(targets)


def prefix_cache(model, prefix_ids: list[int]) -> DynamicCache:
    """Keys and values of the shared prefix (one row), with their autograd graph."""
    return shared_prefix_cache(model, torch.tensor([prefix_ids]))


def batch_loss_sum(
    model,
    rows: Sequence[Example],
    prefix_ids: list[int],
    pad_id: int,
    shared: DynamicCache | None = None,
):
    """(summed cross-entropy over the rows' targets, number of targets).

    The rows must start with `prefix_ids`; `shared` is their `prefix_cache` (computed here when
    not given). An empty prefix runs the full rows.
    """
    prefix = len(prefix_ids)
    ids, mask, rows_at, positions, targets = _suffix_batch(rows, prefix, pad_id)
    n_rows, width = ids.shape
    cache = None
    if prefix:
        cache = broadcast_cache(
            shared if shared is not None else prefix_cache(model, prefix_ids), n_rows
        )
        mask = torch.cat([torch.ones(n_rows, prefix, dtype=torch.long), mask], dim=1)
    position_ids = (prefix + torch.arange(width)).expand(n_rows, width)
    logits = selected_logits(
        model, ids, mask, rows_at, positions, position_ids=position_ids, past_key_values=cache
    )
    return -token_logprobs(logits, targets).sum(), len(targets)


def train(model, examples: Sequence[Example], cfg: ColdStartConfig, pad_id: int) -> TrainStats:
    """AdamW over the examples for cfg.epochs; the model is left in eval mode."""
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    prefix = shared_prefix_length(examples) if cfg.shared_prefix else 0
    prefix_ids = list(examples[0].ids[:prefix])
    steps = [
        step
        for _ in range(cfg.epochs)
        for step in mixed_steps(examples, prefix, cfg.step_tokens, rng)
    ]
    trained_total = cfg.epochs * sum(sum(e.loss_mask) for e in examples)
    tokens_per_step = trained_total / len(steps)
    freeze_lower(model, cfg.frozen_layers)
    trainable = trainable_parameters(model)
    optimizer = build_optimizer(trainable, cfg.lr, cfg.weight_decay)
    scheduler = build_schedule(optimizer, cfg.warmup_steps, len(steps), decay=True)
    model.train()
    started = time.perf_counter()
    losses: list[float] = []
    run_tokens = 0
    bar = tqdm(steps, desc="cold start", unit="step")
    for step in bar:
        # The prefix runs once per step; its graph is shared by the step's forward passes,
        # so their losses are summed and back-propagated together.
        shared = prefix_cache(model, prefix_ids) if prefix else None
        run_tokens += prefix
        step_loss, step_targets = torch.zeros(()), 0
        for batch in micro_batches(step, examples, prefix, cfg.micro_batch_tokens):
            rows = [examples[i] for i in batch]
            loss_sum, n_targets = batch_loss_sum(model, rows, prefix_ids, pad_id, shared)
            step_loss = step_loss + loss_sum
            step_targets += n_targets
            run_tokens += sum(len(e) - prefix for e in rows)
        (step_loss / tokens_per_step).backward()
        torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(step_loss.item() / max(1, step_targets))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", rows=len(step))
    model.eval()
    head = max(1, math.ceil(len(losses) / 10))
    return TrainStats(
        steps=len(steps),
        examples=len(examples),
        tokens=run_tokens,
        full_tokens=cfg.epochs * sum(len(e) for e in examples),
        trained_tokens=trained_total,
        first_loss=round(sum(losses[:head]) / head, 4),
        last_loss=round(sum(losses[-head:]) / head, 4),
        seconds=round(time.perf_counter() - started, 1),
    )
