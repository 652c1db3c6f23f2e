"""The masked forward: log-probs of target tokens, with logits computed only where targets are.

A causal LM predicts token t from position t - 1. Training needs the log-prob of a few tokens
per row (the assistant's tokens in the cold start, the sampled tokens in RL: retrieved passages
and prompts are not targets), and the vocabulary projection is most of a small model's compute
and memory at 49k entries: `selected_logits` runs the decoder over every token but the output
head only over the hidden states that predict a target.

Rows that begin with the same tokens (the system prompt of every question, about 200 tokens)
can run that prefix once: `prefix_cache` computes its keys and values for one row with their
autograd graph and `broadcast_cache` hands them to every row; the rows' suffixes attend to it.
Log-probs and gradients are those of the full rows (the copies' gradients sum back into the one
prefix), at a fraction of the prompt's compute.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache

Tensor = torch.Tensor


def target_index(target_mask: Tensor) -> tuple[Tensor, Tensor]:
    """(rows, positions) of the hidden states that predict the targets of `target_mask` [B, T]
    (1 where token t is a target; the prediction comes from position t - 1)."""
    mask = target_mask.bool().clone()
    mask[:, 0] = False  # nothing predicts the first token
    rows, cols = torch.nonzero(mask, as_tuple=True)
    return rows, cols - 1


def selected_logits(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    rows: Tensor,
    positions: Tensor,
    *,
    position_ids: Tensor | None = None,
    past_key_values=None,
) -> Tensor:
    """Logits [N, V] at the given (row, position) hidden states of one decoder pass."""
    hidden = model.get_decoder()(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        past_key_values=past_key_values,
        use_cache=past_key_values is not None,
    ).last_hidden_state
    return model.get_output_embeddings()(hidden[rows, positions])


def token_logprobs(logits: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """log softmax(logits / T)[target] in float32, shape [N]; T <= 0 means T = 1 (greedy
    sampling reports the untempered log-probs, as `recipe.generation.base.Generation` does)."""
    return logprobs_and_entropy(logits, targets, temperature)[0]


# Rows of the vocabulary-wide float32 buffers alive at once: the log-probs never exist for all
# targets together, in the forward nor in the backward (at Qwen2.5's 152k entries the whole
# fp32 log-softmax of 8192 targets is 5 GB, its gradient 5 GB more).
CHUNK_ROWS = 64


class _TargetLogSoftmax(torch.autograd.Function):
    """values = x[target] - logsumexp(x), x = logits / T, and the entropy -sum p log p, p =
    softmax(x), a chunk of rows at a time in float32. Backward: d values / d logits =
    (onehot(target) - p) / T, with p recomputed from the logits and the saved logsumexp, so what
    autograd keeps is the logits (in their own dtype) and one float per row."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, temperature: float):
        n = logits.shape[0]
        values = logits.new_empty(n, dtype=torch.float32)
        entropy = torch.empty_like(values)
        lse = torch.empty_like(values)
        for start in range(0, n, CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            x = _scaled(logits[rows], temperature)
            lse[rows] = torch.logsumexp(x, dim=-1)
            logp = x.sub_(lse[rows].unsqueeze(1))
            values[rows] = logp.gather(1, targets[rows].unsqueeze(1)).squeeze(1)
            entropy[rows] = -(logp.exp() * logp).sum(dim=-1)
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        ctx.mark_non_differentiable(entropy)
        return values, entropy

    @staticmethod
    def backward(ctx, grad_values: Tensor, _grad_entropy: Tensor):
        logits, targets, lse = ctx.saved_tensors
        grad = torch.empty_like(logits)
        for start in range(0, logits.shape[0], CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            g = grad_values[rows].unsqueeze(1)
            probs = _scaled(logits[rows], ctx.temperature).sub_(lse[rows].unsqueeze(1)).exp_()
            chunk = probs.mul_(-g).scatter_add_(1, targets[rows].unsqueeze(1), g)
            if _tempered(ctx.temperature):
                chunk.div_(ctx.temperature)
            grad[rows] = chunk
        return grad, None, None


def _tempered(temperature: float) -> bool:
    return temperature > 0 and temperature != 1.0


def _scaled(logits: Tensor, temperature: float) -> Tensor:
    """A float32 copy of `logits` / T (a copy even when they are float32: callers write to it)."""
    x = logits.float() if logits.dtype != torch.float32 else logits.clone()
    return x.div_(temperature) if _tempered(temperature) else x


def logprobs_and_entropy(
    logits: Tensor, targets: Tensor, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """(log softmax(logits / T)[target] in float32 [N], differentiable; the entropy of each row's
    distribution [N], without gradient), `CHUNK_ROWS` rows at a time."""
    return _TargetLogSoftmax.apply(logits, targets, temperature)


def prefix_cache(model, prefix_ids: Tensor) -> DynamicCache:
    """Keys and values of the shared prefix `prefix_ids` [1, P], with their autograd graph."""
    return model.get_decoder()(input_ids=prefix_ids, use_cache=True).past_key_values


def broadcast_cache(shared: DynamicCache, n_rows: int) -> DynamicCache:
    """A fresh cache holding the shared prefix once per row (gradients flow back to it)."""
    cache = DynamicCache()
    for index, layer in enumerate(shared.layers):
        keys = layer.keys.expand(n_rows, -1, -1, -1)
        values = layer.values.expand(n_rows, -1, -1, -1)
        cache.update(keys, values, index)
    return cache


def sequence_logprobs(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    target_mask: Tensor,
    temperature: float = 1.0,
    shared_prefix: int = 0,
) -> tuple[Tensor, Tensor]:
    """(log-probs [B, T] at the targets of `target_mask`, 0 elsewhere; the entropy [N] of the
    sampling distribution at each target, in `target_index` order). Positions are counted over
    real tokens, so left or right padding gives the same.

    `shared_prefix` = P > 0: every row starts with the same P real tokens, none of them a
    target nor the predictor of one (P below the first target's position); they run once.
    """
    rows, positions = target_index(target_mask)
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    cache, run_ids = None, input_ids
    if shared_prefix > 0:
        if positions.numel() and int(positions.min()) < shared_prefix:
            raise ValueError(f"shared_prefix={shared_prefix} covers a target's predictor")
        cache = broadcast_cache(prefix_cache(model, input_ids[:1, :shared_prefix]), len(input_ids))
        run_ids, position_ids = input_ids[:, shared_prefix:], position_ids[:, shared_prefix:]
    logits = selected_logits(
        model,
        run_ids,
        attention_mask,
        rows,
        positions - shared_prefix,
        position_ids=position_ids,
        past_key_values=cache,
    )
    values, entropy = logprobs_and_entropy(logits, input_ids[rows, positions + 1], temperature)
    out = torch.zeros(input_ids.shape, dtype=values.dtype, device=values.device)
    out = out.index_put((rows, positions + 1), values)
    return out, entropy
