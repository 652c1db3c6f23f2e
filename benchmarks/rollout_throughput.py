"""Rollout throughput: the multi-turn engine vs one plain batched `generate`.

Same model, same prompts, same sampling settings. The engine's rollouts include real retrieval
turns (BM25 in process): a `ScriptedContinuation` makes the model write a query after
`--free-tokens` sampled tokens of each of its first `--searches` segments; the documents are
inserted and generation resumes, and the last segment runs to `--last-segment` tokens. The plain
baseline is `model.generate` (one call, no retrieval) asked for the engine's mean number of
sampled tokens per sequence (min_new_tokens = max_new_tokens, so exactly that many). Throughput is
sampled tokens per second. The engine runs twice: keeping its KV cache across turns, and
re-encoding every turn's whole context (what calling `generate` once per turn costs). Prefill
repeat = context tokens run through the model / unique tokens of the final sequences.
Beside tokens/s each variant prints its model FLOP/s (`benchmarks.machine_limit`: every token of
the final sequences through the layers once, the head at the sampled ones) and its share of the
matrix-product rates measured in the same run at the model's shapes: over `--limit-tokens` rows
(the compute-bound limit; goal: engine >= 25 % of the faster of bf16 and fp32) and over `--batch` rows (a decode step's
shape).

    python -m benchmarks.rollout_throughput            # SmolLM2-135M (GGUF), medians of 3
    python -m benchmarks.rollout_throughput --tiny     # a tiny random model, seconds
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.machine_limit import Dims, generation_flops, machine_limits, share_line
from demo.world import (
    DEMO_PASSAGES,
    DEMO_RECORDS,
    DemoRecord,
    planned_search_script,
    smollm2_tokenizer,
    tiny_policy,
)
from recipe.assets import smollm2_gguf
from recipe.generation.hf import HFBackend
from recipe.generation.scripted import ScriptedContinuation
from recipe.policy import load_policy
from recipe.prompts import build_prompt, encode_prompt
from recipe.retrieval.bm25 import BM25Retriever
from recipe.rollout import RolloutEngine
from recipe.schema import ModelConfig, RolloutConfig, TagsConfig

VARIANTS = {
    "generate": "plain generate (1 call, no retrieval)",
    "engine": "engine, KV cache kept across turns",
    "engine_no_cache": "engine, context re-encoded every turn",
    "engine_single_turn": "engine, no search (the baseline's job)",
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Rollout throughput: engine vs plain generate.")
    p.add_argument("--tiny", action="store_true", help="tiny random model instead of SmolLM2")
    p.add_argument("--batch", type=int, default=8, help="trajectories generated together")
    p.add_argument("--samples", type=int, default=1, help="samples per question (divides batch)")
    p.add_argument("--searches", type=int, default=2, help="retrieval turns per trajectory")
    p.add_argument("--free-tokens", type=int, default=24, help="sampled tokens before a query")
    p.add_argument("--last-segment", type=int, default=48, help="tokens of the final segment")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--limit-tokens", type=int, default=512, help="rows of the matmul limit")
    return p.parse_args(argv)


def records_for(args) -> list[DemoRecord]:
    """batch / samples records, each searching `--searches` times (queries cycle over the demo's)."""
    pool = [q for r in DEMO_RECORDS for q in r.queries]
    out = []
    for i in range(args.batch // args.samples):
        base = DEMO_RECORDS[i % len(DEMO_RECORDS)]
        queries = [pool[(i + j) % len(pool)] for j in range(args.searches)]
        out.append(DemoRecord(f"b{i}", f"{base.question} (variant {i})", base.answers, queries))
    return out


class NoEarlyEnd:
    """Bans EOS so every run samples the same number of tokens (the baseline's min_new_tokens)."""

    def __init__(self, eos_ids):
        self.eos_ids = sorted(eos_ids)

    def __call__(self, context_ids, output_ids, logits):
        logits[self.eos_ids] = float("-inf")
        return logits


def run_engine(model, tokenizer, records, args, reuse_cache: bool):
    tags = TagsConfig()
    script = planned_search_script(tokenizer, tags, records, "instruct")

    def queries_only(context):  # after the planned searches, no answer: free text to the end
        ids = script(context)
        return ids if tokenizer.decode(ids).count(tags.begin_query) else []

    cfg = RolloutConfig(
        samples_per_prompt=args.samples,
        temperature=args.temperature,
        top_p=args.top_p,
        max_segment_tokens=args.last_segment,
        max_response_tokens=100_000,
        max_retrievals=args.searches,
        batch_size=args.batch,
        stop_at_answer_end=False,
    )
    backend = HFBackend(model, tokenizer, reuse_cache=reuse_cache)
    backend.logits_processors = [
        ScriptedContinuation(queries_only, args.free_tokens),
        NoEarlyEnd(backend.eos_ids),
    ]
    engine = RolloutEngine(backend, BM25Retriever(DEMO_PASSAGES), tags, cfg, topk=args.topk)
    start = time.perf_counter()
    trajectories = engine.rollout(records)
    seconds = time.perf_counter() - start
    sampled = sum(sum(t.action_mask) for t in trajectories)
    unique = sum(len(t.prompt_ids) + len(t.response_ids) - 1 for t in trajectories)
    lengths = [len(t.prompt_ids) + len(t.response_ids) for t in trajectories]
    stats = backend.stats
    return {
        "seconds": seconds,
        "sampled": sampled,
        "inserted": sum(len(t.action_mask) - sum(t.action_mask) for t in trajectories),
        "searches": sum(t.n_searches for t in trajectories),
        "repeat": stats.processed_tokens / unique,
        "prefill_share": stats.prefill_seconds / seconds,
        "padded_share": stats.padded_tokens / (stats.padded_tokens + stats.processed_tokens),
        "flops": generation_flops(Dims.of(model.config), lengths, sampled),
    }


def run_generate(model, tokenizer, records, new_tokens: int, args):
    prompts = [build_prompt(r.question, tokenizer, TagsConfig(), "instruct") for r in records]
    ids = [encode_prompt(tokenizer, p, "instruct") for p in prompts]
    batch = tokenizer.pad({"input_ids": ids}, return_tensors="pt")  # left padding
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(
            **batch,
            do_sample=True,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=None,
            max_new_tokens=new_tokens,
            num_return_sequences=args.samples,
            min_new_tokens=new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
    seconds = time.perf_counter() - start
    sampled = new_tokens * len(records) * args.samples
    lengths = [len(i) + new_tokens for i in ids for _ in range(args.samples)]
    flops = generation_flops(Dims.of(model.config), lengths, sampled)
    return {"seconds": seconds, "sampled": sampled, "flops": flops}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.tiny:
        tokenizer = smollm2_tokenizer()
        model, name = tiny_policy(tokenizer), "tiny random Llama (hidden 32, 2 layers)"
    else:
        folder, gguf = smollm2_gguf()
        model, tokenizer = load_policy(
            ModelConfig(path=str(folder), gguf_file=gguf, dtype="float32")
        )
        name = "SmolLM2-135M-Instruct (GGUF, float32)"
    records = records_for(args)
    torch.manual_seed(0)
    probe = run_engine(model, tokenizer, records, args, reuse_cache=True)  # warm-up, sizes
    new_tokens = round(probe["sampled"] / (len(records) * args.samples))
    # The engine's own decoding loop on the baseline's job: one segment, no search.
    single = argparse.Namespace(**{**vars(args), "searches": 0, "last_segment": new_tokens})
    single_records = records_for(single)
    runs: dict[str, list[dict]] = {k: [] for k in VARIANTS}
    for _ in range(args.repeats):  # interleaved, so load drifts hit every variant alike
        runs["engine"].append(run_engine(model, tokenizer, records, args, True))
        runs["generate"].append(run_generate(model, tokenizer, records, new_tokens, args))
        runs["engine_no_cache"].append(run_engine(model, tokenizer, records, args, False))
        runs["engine_single_turn"].append(
            run_engine(model, tokenizer, single_records, single, True)
        )
    dims = Dims.of(model.config)
    limits = {
        f"{kind} {rows} rows": rate
        for rows in (args.limit_tokens, args.batch)
        for kind, rate in machine_limits(dims, rows).items()
    }
    report(name, args, probe, new_tokens, runs, limits)


def report(name, args, probe, new_tokens, runs, limits) -> None:
    def median_of(key, field):
        return statistics.median(r[field] for r in runs[key])

    speed = {k: statistics.median(r["sampled"] / r["seconds"] for r in v) for k, v in runs.items()}
    print(
        f"model: {name}; torch threads: {torch.get_num_threads()}; batch {args.batch} "
        f"({args.samples} samples/question); "
        f"{args.searches} searches/trajectory (top-{args.topk} BM25); "
        f"{new_tokens} sampled tokens/sequence; {args.repeats} repeats, medians"
    )
    print(
        f"per engine run: {probe['searches']} searches, {probe['inserted']} inserted tokens "
        f"for {probe['sampled']} sampled ones"
    )
    for key, label in VARIANTS.items():
        print(f"  {label:48s} {speed[key]:8.1f} sampled tok/s")
    for key in ("engine", "engine_no_cache", "engine_single_turn"):
        print(
            f"ratio {key} / generate throughput: {speed[key] / speed['generate']:.3f}; "
            f"prefill repeat (processed / unique tokens): {median_of(key, 'repeat'):.3f}; "
            f"time in prefill: {median_of(key, 'prefill_share'):.0%}; "
            f"pad positions: {median_of(key, 'padded_share'):.0%}"
        )
    print(
        f"ratio engine / engine_no_cache throughput: {speed['engine'] / speed['engine_no_cache']:.3f}"
    )
    print("goal: engine / generate >= 0.90")
    rates = ", ".join(f"{k} {v / 1e12:.3f}" for k, v in limits.items())
    print(f"matmul limit at the model's shapes (TFLOP/s, this run): {rates}")
    for key, label in VARIANTS.items():
        flops_per_s = statistics.median(r["flops"] / r["seconds"] for r in runs[key])
        print(share_line(label, flops_per_s, limits))
    print(f"goal: engine >= 25 % of the machine's limit over {args.limit_tokens} rows")


if __name__ == "__main__":
    main()
