"""The generation-backend interface the rollout engine talks to.

It is shaped after vLLM's offline API so that a vLLM backend is a thin adapter:
`LLM.generate(prompts=[TokensPrompt(prompt_token_ids=...)], sampling_params=[SamplingParams(
temperature, top_p, seed, max_tokens, stop, include_stop_str_in_output=True, logprobs=0)])`.
Each call is stateless from the caller's side (the full context is passed every turn); a
backend may reuse work across calls internally (vLLM's prefix cache, the HF backend's kept
KV cache), which never changes what is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import torch

FinishReason = Literal["stop", "eos", "length"]


@dataclass(frozen=True)
class SamplingParams:
    """Shared by every request of one call."""

    temperature: float = 1.0  # 0 samples greedily
    top_p: float = 1.0
    seed: int | None = None  # None: nondeterministic


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: Sequence[int]  # the whole context: prompt, then the response so far
    max_new_tokens: int
    stop: tuple[str, ...] = ()  # strings that end the segment; kept in the output


@dataclass
class Generation:
    """What one request sampled.

    `logprobs[i]` is log p(token_ids[i]) under the policy at the sampling temperature,
    log_softmax(logits / T) (log_softmax(logits) when T = 0), before top-p and before any
    logits processor: the quantity a trainer recomputes as the behaviour policy's log-prob.
    """

    token_ids: list[int]
    logprobs: list[float]
    finish_reason: FinishReason
    stop_string: str | None = None  # the stop string that ended it (finish_reason "stop")


@dataclass
class GenerationStats:
    """Work counters, cumulative over calls (the benchmark reads them)."""

    calls: int = 0
    processed_tokens: int = 0  # context tokens run through the model (prefill + decode)
    reused_tokens: int = 0  # context tokens served from a kept KV cache instead
    sampled_tokens: int = 0
    forward_passes: int = 0
    cache_misses: int = 0  # calls whose contexts did not extend the kept cache
    padded_tokens: int = 0  # pad positions run through the model alongside real tokens
    prefill_seconds: float = 0.0  # forward passes over blocks of new context (prompt, documents)
    decode_seconds: float = 0.0  # forward passes of one sampled token per row
    extra: dict[str, float] = field(default_factory=dict)


class LogitsProcessor(Protocol):
    """Per-request hook on the next-token logits (vLLM's per-request processor signature)."""

    def __call__(
        self, prompt_ids: Sequence[int], output_ids: Sequence[int], logits: torch.Tensor
    ) -> torch.Tensor: ...


def check_requests(requests: Sequence[GenerationRequest]) -> None:
    """What every backend refuses before it starts work."""
    if any(r.max_new_tokens < 1 for r in requests):
        raise ValueError("every request needs max_new_tokens >= 1")


@runtime_checkable
class GenerationBackend(Protocol):
    tokenizer: object
    stats: GenerationStats

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]: ...

    def reset(self) -> None:
        """Forget state kept between calls (a KV cache); the engine calls it after a rollout."""
        ...

    def load_weights(self, model) -> None:
        """Sample from `model`'s current weights from the next call on (the trainer calls it
        after each update with the generation copy it built the backend over)."""
        ...
