"""Hugging Face transformers backend: batched sampling with a KV cache kept across turns.

`model.generate` re-encodes its whole input on every call, and a multi-turn rollout calls it
once per search, so every turn would prefill the prompt, all earlier segments and all earlier
documents again. This backend runs the decoding loop itself over a `DynamicCache` and keeps
that cache after a call; when the next call's contexts extend the contexts it holds (the
rollout engine's next turn: the last sampled token, then the inserted documents), only the new
tokens are run through the model. Rows are left-padded; tokens appended later to rows of
unequal lengths are left-padded within their block, so the cache holds masked holes, which the
2-D attention mask and explicit position ids (count of real tokens before each one) make
invisible to the model. Rows that stop early leave the batch (their cache slices are parked and
stacked back at the end of the call), and the cache layers append into spare capacity.
Full-attention decoders only (Llama, Qwen2, SmolLM2): sliding-window layers count columns, so
holes would shift their window. The library's `TopPLogitsWarper` does the nucleus filtering.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache, TopPLogitsWarper
from transformers.cache_utils import DynamicLayer

from recipe.generation.base import (
    Generation,
    GenerationRequest,
    GenerationStats,
    LogitsProcessor,
    SamplingParams,
    check_requests,
)

# Spare capacity of the KV buffers: appends are amortised O(new tokens) instead of a copy of the
# whole cache per step (transformers' DynamicLayer concatenates), which grows with the context.
CACHE_GROWTH = 2


class _GrowingLayer(DynamicLayer):
    """A DynamicLayer whose keys and values are views into buffers with spare capacity."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None
        self._length = 0

    def update(self, key_states, value_states, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        needed = self._length + key_states.shape[-2]
        if self._key_buffer is None or needed > self._key_buffer.shape[-2]:
            self._grow(key_states, value_states, needed)
        self._key_buffer[..., self._length : needed, :] = key_states
        self._value_buffer[..., self._length : needed, :] = value_states
        self._length = needed
        self._refresh()
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, needed: int) -> None:
        capacity = max(needed, CACHE_GROWTH * self._length)
        keys = key_states.new_zeros(*key_states.shape[:-2], capacity, key_states.shape[-1])
        values = value_states.new_zeros(*value_states.shape[:-2], capacity, value_states.shape[-1])
        if self._key_buffer is not None:
            keys[..., : self._length, :] = self._key_buffer[..., : self._length, :]
            values[..., : self._length, :] = self._value_buffer[..., : self._length, :]
        self._key_buffer, self._value_buffer = keys, values

    def _refresh(self) -> None:
        self.keys = self._key_buffer[..., : self._length, :]
        self.values = self._value_buffer[..., : self._length, :]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized and self._key_buffer is not None:
            self._key_buffer = self._key_buffer[indices, ...]
            self._value_buffer = self._value_buffer[indices, ...]
            self._refresh()


def _new_cache(config, data: list[tuple[torch.Tensor, torch.Tensor]] | None = None):
    """A DynamicCache of growing layers (full-attention models), optionally filled with data."""
    cache = DynamicCache(config=config)
    cache.layers = [_GrowingLayer() for _ in cache.layers]
    for layer, (keys, values) in zip(cache.layers, data or [], strict=False):
        layer.update(keys, values)
    return cache


@dataclass
class _KeptCache:
    cache: DynamicCache
    attention_mask: torch.Tensor  # [rows, columns], 0 at pads and holes
    fed: list[list[int]]  # per row: the real tokens whose keys and values the cache holds


def _inverse_cdf_sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row from one uniform each: the first index whose cumulative mass passes
    u * total. torch.multinomial (and an exponential race) draw a random number per vocabulary
    entry, which dominates a small model's step on CPU. right=True never picks a zero-mass
    entry; the float64 sum keeps u * total below the last cumulative value."""
    cdf = probs.double().cumsum(dim=-1)
    uniform = torch.rand(
        probs.shape[0], 1, generator=generator, dtype=torch.float64, device=generator.device
    )
    index = torch.searchsorted(cdf, uniform * cdf[:, -1:], right=True)
    return index.squeeze(1).clamp(max=probs.shape[1] - 1)


def eos_token_ids(model, tokenizer) -> set[int]:
    """EOS ids from the generation config (often several, e.g. Llama 3) and the tokenizer."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured is not None:
        ids.update(int(i) for i in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids


class HFBackend:
    """`GenerationBackend` over a transformers causal LM (any device; CPU in the embedded run)."""

    def __init__(
        self,
        model,
        tokenizer,
        logits_processors: Sequence[LogitsProcessor] = (),
        reuse_cache: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.logits_processors = list(logits_processors)
        self.reuse_cache = reuse_cache
        self.eos_ids = eos_token_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        self.device = next(model.parameters()).device
        self.stats = GenerationStats()
        self._kept: _KeptCache | None = None

    def reset(self) -> None:
        """Drop the kept cache (frees its memory; the next call prefills from scratch)."""
        self._kept = None

    def close(self) -> None:
        """Drop the model and its cache (a GPU's cached blocks go back to the device), so the
        next model of an evaluation finds the memory free."""
        self._kept = None
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def load_weights(self, model) -> None:
        """The backend runs `model` itself: new weights are already there; a cache kept from
        the old weights is dropped (a copy of other weights is taken over)."""
        if model is not self.model:
            self.model.load_state_dict(model.state_dict())
        self._kept = None

    @torch.no_grad()
    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        if not requests:
            return []
        check_requests(requests)
        self.stats.calls += 1
        was_training = self.model.training
        self.model.eval()  # the trainer may hand over a model in train mode
        try:
            prompts = [list(r.prompt_ids) for r in requests]
            kept, logits = self._prefill(prompts)
            generator = torch.Generator(device=self.device)
            if params.seed is None:
                generator.seed()
            else:
                generator.manual_seed(params.seed)
            outputs, kept = self._decode(kept, prompts, requests, params, logits, generator)
        finally:
            self.model.train(was_training)
        self._kept = kept if self.reuse_cache else None
        return outputs

    def _prefill(self, prompts: list[list[int]]) -> tuple[_KeptCache, torch.Tensor]:
        """Run what the cache does not hold yet; returns the cache and each row's next logits.

        Rows extending kept rows feed only their new tokens. Otherwise the cache starts empty
        and identical prompts (the samples of one question) are encoded once and copied.
        """
        kept = self._kept
        self._kept = None
        rows = self._match_rows(kept, prompts) if kept is not None else None
        if rows is not None:
            kept, suffixes = self._continue(kept, rows, prompts)
            return kept, self._feed(kept, suffixes)
        if kept is not None:
            self.stats.cache_misses += 1
        first_row: dict[tuple[int, ...], int] = {}
        for prompt in prompts:
            first_row.setdefault(tuple(prompt), len(first_row))
        unique = [list(p) for p in first_row]
        kept = _KeptCache(
            _new_cache(self.model.config),
            torch.zeros(len(unique), 0, dtype=torch.long, device=self.device),
            [[] for _ in unique],
        )
        logits = self._feed(kept, unique)
        if len(unique) == len(prompts):
            return kept, logits
        copies = [first_row[tuple(p)] for p in prompts]
        self.stats.reused_tokens += sum(map(len, prompts)) - sum(map(len, unique))
        index = torch.tensor(copies, device=self.device)
        kept.cache.batch_select_indices(index)
        fed = [list(kept.fed[j]) for j in copies]
        return _KeptCache(kept.cache, kept.attention_mask[index], fed), logits[index]

    def _continue(
        self, kept: _KeptCache, rows: list[int], prompts: list[list[int]]
    ) -> tuple[_KeptCache, list[list[int]]]:
        """The kept rows these prompts extend, in prompt order, and what is left to feed."""
        index = torch.tensor(rows, device=self.device)
        kept.cache.batch_select_indices(index)
        fed = [list(kept.fed[j]) for j in rows]
        self.stats.reused_tokens += sum(len(f) for f in fed)
        suffixes = [p[len(f) :] for p, f in zip(prompts, fed, strict=True)]
        return _KeptCache(kept.cache, kept.attention_mask[index], fed), suffixes

    @staticmethod
    def _match_rows(kept: _KeptCache, prompts: list[list[int]]) -> list[int] | None:
        """For each prompt, a kept row whose tokens are a strict prefix of it (or None)."""
        rows: list[int] = []
        n_rows = len(kept.fed)
        start = 0
        for prompt in prompts:
            for offset in range(n_rows):
                j = (start + offset) % n_rows
                fed = kept.fed[j]
                if len(fed) < len(prompt) and prompt[: len(fed)] == fed:
                    rows.append(j)
                    start = j + 1
                    break
            else:
                return None
        return rows

    def _feed(self, kept: _KeptCache, blocks: list[list[int]]) -> torch.Tensor:
        """Run one left-padded block of new tokens per row; returns each row's last logits."""
        width = max(len(b) for b in blocks)
        ids = torch.full((len(blocks), width), self.pad_id, dtype=torch.long)
        block_mask = torch.zeros(len(blocks), width, dtype=torch.long)
        for i, block in enumerate(blocks):
            if block:
                ids[i, width - len(block) :] = torch.tensor(block)
                block_mask[i, width - len(block) :] = 1
            kept.fed[i].extend(block)
        mask = torch.cat([kept.attention_mask, block_mask.to(self.device)], dim=1)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, -width:]
        started = time.perf_counter()
        out = self.model(
            input_ids=ids.to(self.device),
            attention_mask=mask,
            position_ids=positions,
            past_key_values=kept.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[:, -1, :].float()
        kept.attention_mask = mask
        real = int(block_mask.sum())
        self.stats.processed_tokens += real
        self.stats.padded_tokens += block_mask.numel() - real
        self.stats.forward_passes += 1
        if width > 1:
            self.stats.prefill_seconds += time.perf_counter() - started
        else:
            self.stats.decode_seconds += time.perf_counter() - started
        return logits

    def _sample(
        self,
        logits: torch.Tensor,
        prompts: list[list[int]],
        outputs: list[list[int]],
        params: SamplingParams,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scaled = logits / params.temperature if params.temperature > 0 else logits
        logprobs = torch.log_softmax(scaled, dim=-1)
        processed = scaled.clone()
        for i in range(len(prompts)):
            for processor in self.logits_processors:
                processed[i] = processor(prompts[i], outputs[i], processed[i])
        if params.temperature <= 0:
            tokens = processed.argmax(dim=-1)
        else:
            if params.top_p < 1.0:
                processed = TopPLogitsWarper(top_p=params.top_p)(None, processed)
            tokens = _inverse_cdf_sample(torch.softmax(processed, dim=-1), generator)
        return tokens, logprobs.gather(1, tokens[:, None]).squeeze(1)

    def _stop_string(self, output: list[int], stops: tuple[str, ...]) -> str | None:
        """The stop string completed by the last token, read from the segment's tail."""
        if not stops:
            return None
        window = max(len(s) for s in stops) + 1  # every token decodes to at least one char
        tail = self.tokenizer.decode(output[-window:], skip_special_tokens=False)
        return next((s for s in stops if s in tail), None)

    def _decode(self, kept, prompts, requests, params, logits, generator):
        """Sample until every row stops; returns the outputs and the cache of all rows.

        A row that stops is parked: its cache slice leaves the batch, so later steps compute
        only the rows still sampling (plain `generate` keeps computing finished rows as pads).
        """
        n = len(requests)
        outputs: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        results: list[Generation | None] = [None] * n
        rows = list(range(n))  # cache row -> request
        parked: dict[int, _KeptCache] = {}
        while True:
            tokens, token_logprobs = self._sample(
                logits, [prompts[i] for i in rows], [outputs[i] for i in rows], params, generator
            )
            stopped = []
            for r, (token, logprob) in enumerate(
                zip(tokens.tolist(), token_logprobs.tolist(), strict=True)
            ):
                i = rows[r]
                outputs[i].append(token)
                logprobs[i].append(logprob)
                reason, stop = self._finish(outputs[i], token, requests[i])
                if reason is not None:
                    results[i] = Generation(outputs[i], logprobs[i], reason, stop)
                    stopped.append(r)
            self.stats.sampled_tokens += len(rows)
            if len(stopped) == len(rows):
                parked.update(self._split(kept, rows, list(range(len(rows))))[1])
                return results, self._merge([parked[i] for i in range(n)])
            if stopped:
                kept, leaving = self._split(kept, rows, stopped)
                parked.update(leaving)
                rows = [i for r, i in enumerate(rows) if r not in set(stopped)]
            logits = self._feed(kept, [[outputs[i][-1]] for i in rows])

    def _split(self, kept: _KeptCache, rows: list[int], leaving: list[int]):
        """(the cache without the `leaving` positions, {request: its one-row cache})."""
        layers = kept.cache.layers
        out = {
            rows[r]: _KeptCache(
                _new_cache(
                    self.model.config,
                    [(layer.keys[r : r + 1], layer.values[r : r + 1]) for layer in layers],
                ),
                kept.attention_mask[r : r + 1],
                kept.fed[r],
            )
            for r in leaving
        }
        staying = [r for r in range(len(rows)) if r not in set(leaving)]
        if staying:
            index = torch.tensor(staying, device=self.device)
            kept.cache.batch_select_indices(index)
            kept = _KeptCache(
                kept.cache, kept.attention_mask[index], [kept.fed[r] for r in staying]
            )
        return kept, out

    def _merge(self, parts: list[_KeptCache]) -> _KeptCache:
        """Stack one-row caches of unequal lengths, padding on the right with masked columns."""
        width = max(p.attention_mask.shape[1] for p in parts)

        def pad(t: torch.Tensor, dim_from_end: int) -> torch.Tensor:
            missing = width - t.shape[-dim_from_end]
            spec = [0, 0] * (dim_from_end - 1) + [0, missing]
            return torch.nn.functional.pad(t, spec)

        n_layers = len(parts[0].cache.layers)
        layers = [
            (
                torch.cat([pad(p.cache.layers[j].keys, 2) for p in parts]),
                torch.cat([pad(p.cache.layers[j].values, 2) for p in parts]),
            )
            for j in range(n_layers)
        ]
        mask = torch.cat([pad(p.attention_mask, 1) for p in parts])
        return _KeptCache(_new_cache(self.model.config, layers), mask, [p.fed for p in parts])

    def _finish(self, output: list[int], token: int, request: GenerationRequest):
        if token in self.eos_ids:
            return "eos", None
        stop = self._stop_string(output, request.stop)
        if stop is not None:
            return "stop", stop
        if len(output) >= request.max_new_tokens:
            return "length", None
        return None, None
