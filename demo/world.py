"""The tiny search world of the demo (`python -m demo`), the tests and the benchmarks.

A Llama-shaped model built from a config (random weights, SmolLM2's real tokenizer), a dozen
passages for the real in-process BM25 retriever, three multi-hop records with their planned
queries, and the script a `ScriptedContinuation` follows to write them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from recipe.assets import smollm2_gguf
from recipe.policy import load_tokenizer
from recipe.prompts import question_prompt_ids
from recipe.retrieval.base import Passage
from recipe.schema import ModelConfig, TagsConfig

# Tiny-model shape: big enough to exercise multi-layer caches and grouped KV heads.
TINY_HIDDEN = 32
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_KV_HEADS = 2
TINY_MAX_POSITIONS = 8192


@dataclass
class DemoRecord:
    id: str
    question: str
    answers: list[str]
    queries: list[str] = field(default_factory=list)  # what the scripted model searches


DEMO_PASSAGES = [
    Passage("p0", "Velmora", "Velmora is a river port founded by the cartographer Ansel Drake."),
    Passage("p1", "Ansel Drake", "Ansel Drake was a cartographer born in the hill town of Oskar."),
    Passage("p2", "Oskar", "Oskar is a hill town known for its copper bells and slate roofs."),
    Passage("p3", "Lumen Quartet", "The Lumen Quartet is a string ensemble led by Ida Varga."),
    Passage("p4", "Ida Varga", "Ida Varga is a violinist who studied at the Brisk Conservatory."),
    Passage("p5", "Brisk Conservatory", "The Brisk Conservatory stands in the city of Tallow."),
    Passage("p6", "Tallow", "Tallow is a coastal city whose mayor is Pim Osei."),
    Passage("p7", "Pim Osei", "Pim Osei is a former sailor elected mayor of Tallow."),
    Passage("p8", "Copper bells", "Copper bells ring in Oskar every evening at dusk."),
    Passage("p9", "Slate", "Slate roofs cover most houses of the northern hill towns."),
]

DEMO_RECORDS = [
    DemoRecord(
        "q0",
        "In which town was the founder of Velmora born?",
        ["Oskar"],
        ["Velmora founder", "Ansel Drake born"],
    ),
    DemoRecord(
        "q1",
        "Where is the conservatory of the Lumen Quartet's leader?",
        ["Tallow"],
        ["Lumen Quartet leader", "Ida Varga studied", "Brisk Conservatory city"],
    ),
    DemoRecord("q2", "Who is the mayor of Tallow?", ["Pim Osei"], ["Tallow mayor"]),
]


def tiny_policy(
    tokenizer, seed: int = 0, hidden_size: int = TINY_HIDDEN, layers: int = TINY_LAYERS
):
    """A randomly initialised Llama-architecture causal LM over this tokenizer's vocabulary."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=TINY_HEADS,
        num_key_value_heads=TINY_KV_HEADS,
        max_position_embeddings=TINY_MAX_POSITIONS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config).eval()


def smollm2_tokenizer():
    folder, name = smollm2_gguf()
    return load_tokenizer(ModelConfig(path=str(folder), gguf_file=name))


def planned_search_script(tokenizer, tags: TagsConfig, records: Sequence, prompt_style: str):
    """script(context_ids): the record's next planned query, or its answer once all are done.

    Reads the context (test-side steering, not engine logic): which record's prompt it starts
    with, and how many document blocks have been inserted so far.
    """
    prompts = [(question_prompt_ids(r.question, tokenizer, tags, prompt_style), r) for r in records]

    def script(context_ids: Sequence[int]) -> list[int]:
        context = list(context_ids)
        prompt_ids, record = next((p, r) for p, r in prompts if context[: len(p)] == p)
        response = tokenizer.decode(context[len(prompt_ids) :])
        done = response.count(tags.begin_docs)
        if done < len(record.queries):
            text = f" {tags.begin_query}{record.queries[done]}{tags.end_query}"
        else:
            text = f" {tags.think_end}\n\n{tags.answer_start} {record.answers[0]} {tags.answer_end}"
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    return script


def masked_spans(trajectory) -> list[list[int]]:
    """Maximal runs of mask-0 response ids, read from the action mask alone."""
    spans, current = [], []
    for token, keep in zip(trajectory.response_ids, trajectory.action_mask, strict=True):
        if keep:
            if current:
                spans.append(current)
            current = []
        else:
            current.append(token)
    if current:
        spans.append(current)
    return spans
