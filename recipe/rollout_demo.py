"""A tiny, self-contained search world: `python -m recipe.rollout --demo`.

A Llama-shaped model built from a config (random weights, SmolLM2's real tokenizer), the real
in-process BM25 retriever over a dozen passages, and a `ScriptedContinuation` that makes the
model write each record's planned queries and then its answer after a few freely sampled
tokens. It prints every trajectory with the inserted (mask 0) spans bracketed and checks that
the masked spans decode to exactly the inserted text. Tests and the benchmark reuse the pieces.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from recipe.assets import smollm2_gguf
from recipe.generation.hf import HFBackend
from recipe.generation.scripted import ScriptedContinuation
from recipe.policy import load_tokenizer
from recipe.prompts import question_prompt_ids
from recipe.retrieval.base import Passage
from recipe.retrieval.bm25 import BM25Retriever
from recipe.schema import ModelConfig, RolloutConfig, TagsConfig

# Tiny-model shape: big enough to exercise multi-layer caches and grouped KV heads.
TINY_HIDDEN = 32
TINY_LAYERS = 2
TINY_HEADS = 4
TINY_KV_HEADS = 2
TINY_MAX_POSITIONS = 8192
MASK_OPEN, MASK_CLOSE = "\u27e6", "\u27e7"  # brackets around inserted text in the printout


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


def main(argv: Sequence[str] | None = None) -> None:
    from recipe.rollout import RolloutEngine, format_trajectory

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="roll out the tiny demo world")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--free-tokens", type=int, default=4, help="sampled tokens per segment")
    args = parser.parse_args(argv)
    if not args.demo:
        parser.error("only --demo is available from the command line")
    tags = TagsConfig()
    tokenizer = smollm2_tokenizer()
    model = tiny_policy(tokenizer, seed=args.seed)
    cfg = RolloutConfig(
        samples_per_prompt=args.samples,
        max_segment_tokens=64,
        max_response_tokens=1024,
        max_retrievals=4,
        batch_size=8,
        seed=args.seed,
    )
    script = planned_search_script(tokenizer, tags, DEMO_RECORDS, "instruct")
    backend = HFBackend(model, tokenizer, [ScriptedContinuation(script, args.free_tokens)])
    engine = RolloutEngine(backend, BM25Retriever(DEMO_PASSAGES), tags, cfg, topk=2)
    for t in engine.rollout(DEMO_RECORDS):
        spans = [tokenizer.decode(s) for s in masked_spans(t)]
        ok = spans == t.inserted_texts
        print(
            f"=== {t.record_id}#{t.sample_index} stop={t.stop_reason} searches={t.n_searches} "
            f"queries={t.queries} docs={t.retrieved_ids} gold={t.golds} mask_check={'ok' if ok else 'FAIL'}"
        )
        print(format_trajectory(t, tokenizer, MASK_OPEN, MASK_CLOSE))
    stats = backend.stats
    print(
        f"backend: {stats.calls} calls, {stats.processed_tokens} tokens processed, "
        f"{stats.reused_tokens} served from the kept cache, {stats.sampled_tokens} sampled"
    )


if __name__ == "__main__":
    main()
