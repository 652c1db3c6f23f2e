"""The masked forward: log-probs of target tokens, with logits computed only where targets are.

A causal LM predicts token t from position t - 1. Training needs the log-prob of a few tokens
per row (the assistant's tokens in the cold start, the sampled tokens in RL: retrieved passages
and prompts are not targets), and the vocabulary projection is most of a small model's compute
and memory at 49k entries: `selected_logits` runs the decoder over every token but the output
head only over the hidden states that predict a target.
"""

from __future__ import annotations

import torch

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


@torch.no_grad()
def token_entropy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy of each row's sampling distribution softmax(logits / T), shape [N]."""
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def sequence_logprobs(
    model, input_ids: Tensor, attention_mask: Tensor, target_mask: Tensor, temperature: float = 1.0
) -> tuple[Tensor, Tensor]:
    """(log-probs [B, T] at the targets of `target_mask`, 0 elsewhere; the logits [N, V] behind
    them). Positions are counted over real tokens, so left or right padding gives the same."""
    rows, positions = target_index(target_mask)
    position_ids = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
    logits = selected_logits(
        model, input_ids, attention_mask, rows, positions, position_ids=position_ids
    )
    values = token_logprobs(logits, input_ids[rows, positions + 1], temperature)
    out = torch.zeros(input_ids.shape, dtype=values.dtype, device=values.device)
    out = out.index_put((rows, positions + 1), values)
    return out, logits
