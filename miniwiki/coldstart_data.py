"""Cold-start examples: transcripts tokenized the rollout engine's way, with a loss mask.

An example is the stage prompt (`recipe.prompts.question_prompt_ids`, as the engine encodes
it) followed by the transcript's segments joined by `recipe.prompts.render_segments`,
the engine's own helper: every piece is tokenized on its own, so the ids at every segment edge
are the ids a rollout of the same text holds (a trailing blank line tokenized inside a
longer text splits differently than the same blank line inserted on its own). The loss mask is
1 exactly on the assistant's own tokens (its text and the end-of-turn token), 0 on the prompt
and on the documents the environment inserted.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from miniwiki.articles import fact_cue
from miniwiki.build import build_pair
from miniwiki.config import MiniwikiConfig
from miniwiki.transcripts import Hop, Transcript, WarmupQuestion
from recipe.prompts import question_prompt_ids, render_segments
from recipe.schema import TagsConfig
from recipe.training.batch import common_prefix_length
from recipe.training.microbatch import token_micro_batches


@dataclass
class Example:
    ids: list[int]
    loss_mask: list[int]  # 1 where the token is the assistant's own (a training target)
    behaviour: str

    def __len__(self) -> int:
        return len(self.ids)


def warmup_questions(cfg: MiniwikiConfig, split: str = "train") -> list[WarmupQuestion]:
    """The warm-up world's questions of one split, with their evidence triples in hop order
    and the sentence of the corpus that states each.

    The generator is deterministic, so rebuilding it gives exactly the written files' questions;
    the evidence triples of HotpotQA-format questions exist only there (the official record has
    supporting facts, not triples).
    """
    _, warmup = build_pair(cfg)

    def hop(subject: str, relation: str, value: str) -> Hop:
        article = warmup.articles[subject]
        sentence = article.sentences[article.sentence_of(relation)].text
        cue = fact_cue(warmup.world.entities[subject].kind, relation) or ""
        return Hop(subject, relation, value, sentence, cue)

    return [
        WarmupQuestion(
            question=q.text,
            answer=q.answer,
            hops=[hop(e.subject, e.relation, e.value) for e in q.evidences],
            qtype=f"{q.dataset}/{q.qtype}",
        )
        for q in warmup.questions
        if q.split == split
    ]


def encode_transcript(
    tokenizer, transcript: Transcript, tags: TagsConfig, prompt_style: str
) -> Example:
    prompt_ids = question_prompt_ids(transcript.question, tokenizer, tags, prompt_style)
    # The end-of-turn token closes the assistant's turn; the model is taught to emit it.
    pieces = list(transcript.segments) + [([tokenizer.eos_token_id], True)]
    response_ids, action_mask = render_segments(tokenizer, pieces)
    if transcript.untrained_prefix:
        untrained = tokenizer.encode(transcript.untrained_prefix, add_special_tokens=False)
        if response_ids[: len(untrained)] != untrained:
            raise ValueError(
                f"{transcript.untrained_prefix!r} does not tokenize as the start of the response"
            )
        action_mask[: len(untrained)] = [0] * len(untrained)
    return Example(
        ids=prompt_ids + response_ids,
        loss_mask=[0] * len(prompt_ids) + action_mask,
        behaviour=transcript.behaviour,
    )


def shared_prefix_length(examples: Sequence[Example]) -> int:
    """Length of the longest token prefix all examples share and none trains on."""
    if not examples:
        return 0
    length = common_prefix_length([e.ids for e in examples])
    # The prefix is run without targets of its own, so it must hold no trained token, and one
    # token must remain after it to predict the next.
    for e in examples:
        trained = next((i for i, m in enumerate(e.loss_mask) if m), len(e.ids))
        length = min(length, trained - 1)
    return max(length, 0)


def mixed_steps(
    examples: Sequence[Example], prefix: int, step_tokens: int, rng: random.Random
) -> list[list[int]]:
    """Indices of each optimizer step, every step holding the behaviours in the mix's ratio.

    The number of steps is the examples' tokens after the shared prefix over `step_tokens`.
    Each behaviour's shuffled examples are dealt evenly over the steps, so no step is all
    direct answers or all searches: with homogeneous steps (and Adam's large early moves) the
    share of searching the model ends with depends on which behaviour came last, and was
    measured at 84 % for a 25 % mix (attempt a2).
    """
    total = sum(len(e) - prefix for e in examples)
    n_steps = max(1, math.ceil(total / step_tokens))
    steps: list[list[int]] = [[] for _ in range(n_steps)]
    behaviours = sorted({e.behaviour for e in examples})
    for behaviour in behaviours:
        pool = [i for i, e in enumerate(examples) if e.behaviour == behaviour]
        rng.shuffle(pool)
        offset = rng.randrange(n_steps)  # where this behaviour's remainder lands
        for k, i in enumerate(pool):
            steps[(offset + k * n_steps // len(pool)) % n_steps].append(i)
    return [step for step in steps if step]


def micro_batches(
    indices: Sequence[int], examples: Sequence[Example], prefix: int, max_tokens: int
) -> list[list[int]]:
    """One step's indices in forward passes of similar length, each within `max_tokens`
    (rows x longest suffix after the shared prefix), so short rows are not padded to long."""
    widths = {i: len(examples[i]) - prefix for i in indices}
    return token_micro_batches(indices, widths, max_tokens)
