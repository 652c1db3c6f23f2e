"""`python -m demo`: roll out the tiny search world and show what the engine masks.

The tiny model (random weights) is steered by a `ScriptedContinuation` to write each record's
planned queries and then its answer after a few freely sampled tokens; the real BM25 retriever
answers the queries. Every trajectory is printed with its inserted (mask 0) spans bracketed,
with a check that the masked spans decode to exactly the inserted text.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from demo.world import (
    DEMO_PASSAGES,
    DEMO_RECORDS,
    masked_spans,
    planned_search_script,
    smollm2_tokenizer,
    tiny_policy,
)
from recipe.generation.hf import HFBackend
from recipe.generation.scripted import ScriptedContinuation
from recipe.retrieval.bm25 import BM25Retriever
from recipe.rollout import RolloutEngine, format_trajectory
from recipe.schema import RolloutConfig, TagsConfig

MASK_OPEN, MASK_CLOSE = "\u27e6", "\u27e7"  # brackets around inserted text in the printout


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--free-tokens", type=int, default=4, help="sampled tokens per segment")
    args = parser.parse_args(argv)
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
