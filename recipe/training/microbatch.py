"""Micro-batching by tokens: rows of similar length per forward pass, each pass within a token
budget (rows x longest row), so short rows are not padded to the longest of the step and memory
stays bounded however long the responses grow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def token_micro_batches(
    indices: Sequence[int], lengths: Sequence[int] | Mapping[int, int], max_tokens: int
) -> list[list[int]]:
    """`indices` split into passes, shortest rows first; `lengths[i]` is row i's width. A row
    wider than the budget gets a pass of its own."""
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be positive, got {max_tokens}")
    order = sorted(indices, key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) + 1) * lengths[i] > max_tokens:
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def split_to_count(
    batches: Sequence[Sequence[int]], lengths: Sequence[int] | Mapping[int, int], count: int
) -> list[list[int]]:
    """`batches` re-split into exactly `count` passes, for ZeRO-2 ranks whose every backward is
    a collective (each rank must run as many as the others). The costliest pass (rows x widest
    row) that has two rows or more is halved until there are `count`; an empty pass at the end
    means no pass was left to split: the trainer runs it as a zero-weight backward. Halving a
    pass never takes it over a token budget it kept."""
    if count < len(batches):
        raise ValueError(f"cannot split {len(batches)} passes into fewer ({count})")
    out = [list(b) for b in batches]

    def cost(rows: list[int]) -> int:
        return len(rows) * max(lengths[i] for i in rows)

    while len(out) < count:
        splittable = [k for k, rows in enumerate(out) if len(rows) > 1]
        if not splittable:
            out.append([])
            continue
        k = max(splittable, key=lambda k: cost(out[k]))
        half = len(out[k]) // 2
        out[k : k + 1] = [out[k][:half], out[k][half:]]
    return out
