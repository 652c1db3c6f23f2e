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
