"""A few supervised steps that teach the tiny random policy the answer format, so that the
smoke setting's rollouts vary: some well formed, some right, most not, and the rewards of a
question's samples differ (a random policy's are all equal, which gives no gradient).

The target response is ` </think>\n\n<answer> gold </answer>` after each question's prompt;
only its tokens carry loss, and the output head runs on those positions alone (the 49k-word
vocabulary over whole prompts would cost a hundred times more).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from recipe.prompts import question_prompt_ids
from recipe.schema import TagsConfig


def format_examples(tokenizer, questions: Sequence[tuple[str, str]], tags: TagsConfig):
    """(prompt ids + response ids, index of the first response id) per (question, answer)."""
    examples = []
    for question, answer in questions:
        prompt = question_prompt_ids(question, tokenizer, tags, "instruct")
        text = f" {tags.think_end}\n\n{tags.answer_start} {answer} {tags.answer_end}"
        response = tokenizer(text, add_special_tokens=False)["input_ids"]
        examples.append((prompt + response, len(prompt)))
    return examples


def warm_up_format(model, examples, steps: int, lr: float = 1e-2, seed: int = 0) -> list[float]:
    """`steps` AdamW steps over all examples at once; returns the loss of each step."""
    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = torch.stack([_response_loss(model, ids, start) for ids, start in examples]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


def _response_loss(model, ids: list[int], start: int) -> torch.Tensor:
    tokens = torch.tensor([ids])
    hidden = model.model(input_ids=tokens).last_hidden_state[0]
    logits = model.lm_head(hidden[start - 1 : len(ids) - 1])  # position t predicts token t + 1
    return torch.nn.functional.cross_entropy(logits, tokens[0, start:])
