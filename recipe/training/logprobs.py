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
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return torch.log_softmax(logits, dim=-1).gather(1, targets.unsqueeze(1)).squeeze(1)


ENTROPY_CHUNK_ROWS = 256  # rows of exp(log-probs) alive at once while the entropy is summed


def logprobs_and_entropy(
    logits: Tensor, targets: Tensor, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """(log softmax(logits / T)[target] in float32 [N], the entropy of each row's distribution
    [N], without gradient). The entropy reads the log-softmax the log-probs already took, a few
    rows at a time: no second full-vocabulary buffer besides the one autograd keeps."""
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1)
    values = logp.gather(1, targets.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        parts = [-(c.exp() * c).sum(dim=-1) for c in logp.detach().split(ENTROPY_CHUNK_ROWS)]
        entropy = torch.cat(parts) if parts else logp.new_zeros(0)
    return values, entropy


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
