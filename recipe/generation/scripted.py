"""A logits processor that makes a model write a planned continuation.

A randomly initialised (or barely trained) model almost never writes a query tag, so the demo,
the tests and the benchmark steer it: after `free_tokens` freely sampled tokens of a segment,
the processor forces the token ids `script(context_ids)` returns, one per step, by masking every
other token. The model, the sampler, the stop strings, the cache and the engine all run for
real; only the choice of some tokens is constrained, as with any constrained decoding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

# Identity-keyed memo of scripts; bounded so a long run does not keep old contexts alive.
MEMO_LIMIT = 4096


class ScriptedContinuation:
    def __init__(self, script: Callable[[Sequence[int]], Sequence[int]], free_tokens: int):
        self.script = script
        self.free_tokens = free_tokens
        self._memo: dict[int, tuple[Sequence[int], Sequence[int]]] = {}

    def _script_for(self, context_ids: Sequence[int]) -> Sequence[int]:
        entry = self._memo.get(id(context_ids))
        if entry is None or entry[0] is not context_ids:
            if len(self._memo) >= MEMO_LIMIT:
                self._memo.clear()
            entry = (context_ids, list(self.script(context_ids)))
            self._memo[id(context_ids)] = entry
        return entry[1]

    def __call__(
        self, context_ids: Sequence[int], output_ids: Sequence[int], logits: torch.Tensor
    ) -> torch.Tensor:
        step = len(output_ids) - self.free_tokens
        if step < 0:
            return logits
        script = self._script_for(context_ids)
        if step >= len(script):
            return logits
        forced = torch.full_like(logits, float("-inf"))
        forced[script[step]] = 0.0
        return forced
