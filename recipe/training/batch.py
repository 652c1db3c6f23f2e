"""Trajectories to padded tensors: the seam between the rollout engine and the algorithms.

Row b holds prompt + response ids, right-padded. `action_mask[b, t]` is 1 exactly where token t
is one the model sampled (the engine's mask, shifted past the prompt): prompt, inserted
passages and padding are 0, so no statistic of `recipe.algorithms` sees them. `old_logprobs`
and every per-token tensor the trainer builds are aligned the same way (the value at t belongs
to token t). `group_index` names each row's prompt, so group baselines are taken over the
samples of one question; rewards and labels travel with the batch, never through text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch

from recipe.rollout import Trajectory

Tensor = torch.Tensor


@dataclass
class TrainBatch:
    input_ids: Tensor  # [B, T] long
    attention_mask: Tensor  # [B, T] long, 1 on real tokens
    action_mask: Tensor  # [B, T] long, 1 on sampled tokens
    old_logprobs: Tensor  # [B, T] float32, the sampler's log-probs at the action tokens
    group_index: Tensor  # [B] long
    rewards: Tensor  # [B] float32, the stage reward's total
    lengths: list[int]  # real tokens per row
    shared_prefix: int = 0  # leading tokens every row shares, none a target or its predictor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> TrainBatch:
        """The batch with its tensors on `device` (the training engine's: collate builds them
        on the CPU)."""
        moved = {
            f.name: getattr(self, f.name).to(device)
            for f in fields(self)
            if isinstance(getattr(self, f.name), Tensor)
        }
        return replace(self, **moved)

    def select(self, rows: Sequence[int]) -> TrainBatch:
        """The given rows, trimmed to the longest of them (a micro-batch)."""
        index = torch.as_tensor(list(rows), dtype=torch.long, device=self.input_ids.device)
        width = max(self.lengths[i] for i in rows)
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "lengths":
                picked[f.name] = [self.lengths[i] for i in rows]
            elif f.name == "shared_prefix":
                picked[f.name] = value
            elif value.dim() == 2:
                picked[f.name] = value[index, :width]
            else:
                picked[f.name] = value[index]
        return TrainBatch(**picked)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest prefix every sequence shares (0 for none)."""
    if not sequences:
        return 0
    first = sequences[0]
    limit = min(len(s) for s in sequences)
    n = 0
    while n < limit and all(s[n] == first[n] for s in sequences):
        n += 1
    return n


def shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """The longest prefix all prompts share, ending before the last token of the shortest (the
    last prompt token predicts the first sampled one)."""
    return max(0, min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1))


def collate(
    trajectories: Sequence[Trajectory], rewards: Sequence[float], pad_id: int
) -> TrainBatch:
    """One padded batch of the step's trajectories, in their order."""
    lengths = [len(t.prompt_ids) + len(t.response_ids) for t in trajectories]
    width = max(lengths)
    n = len(trajectories)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    action = torch.zeros((n, width), dtype=torch.long)
    old = torch.zeros((n, width), dtype=torch.float32)
    groups: dict[str, int] = {}
    group_index = torch.zeros(n, dtype=torch.long)
    for b, t in enumerate(trajectories):
        start, end = len(t.prompt_ids), lengths[b]
        input_ids[b, :end] = torch.tensor(t.prompt_ids + t.response_ids)
        attention[b, :end] = 1
        action[b, start:end] = torch.tensor(t.action_mask, dtype=torch.long)
        old[b, start:end] = torch.tensor(t.logprobs, dtype=torch.float32)
        group_index[b] = groups.setdefault(t.record_id, len(groups))
    return TrainBatch(
        input_ids=input_ids,
        attention_mask=attention,
        action_mask=action,
        old_logprobs=old,
        group_index=group_index,
        rewards=torch.tensor(list(rewards), dtype=torch.float32),
        lengths=lengths,
        shared_prefix=shared_prefix_length([t.prompt_ids for t in trajectories]),
    )
