"""Forced-search probe: how well a model answers when it is made to search.

The gate measures what the base model does on its own, and only a fifth of its rollouts
search, so its cover-EM of searching rollouts rests on a few dozen samples. This probe fixes the
first words of every response to the cold start's search intro (" I need to search for") and
lets the model write everything else, through the real rollout engine and retriever, so every
rollout searches: it measures reading (queries, documents, the answer copied from them) apart
from the choice to search, on chain questions and comparisons separately.

    python -m miniwiki.probe --model runs/miniwiki/base [--questions 48] [--temperature 1.0]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from data_filtering.sources import load_questions
from miniwiki.base_config import GateConfig, TranscriptTemplates
from miniwiki.gate import DEV_FILES, gate_retriever, score
from miniwiki.transcripts import choice_words
from recipe.config import load_config
from recipe.generation.hf import HFBackend
from recipe.generation.scripted import ScriptedContinuation
from recipe.policy import load_policy
from recipe.prompts import question_prompt_ids
from recipe.rollout import build_rollout_engine
from recipe.schema import RunConfig


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Forced-search probe of a model on task-world dev.")
    p.add_argument("--model", default="runs/miniwiki/base", help="HF folder of the model")
    p.add_argument("--task-dir", default="runs/miniwiki/task", help="task world folder")
    p.add_argument("--config", default="configs/embedded/stage1.yaml", help="run config")
    p.add_argument("--questions", type=int, default=48, help="dev questions per kind")
    p.add_argument("--samples", type=int, default=1, help="rollouts per question")
    p.add_argument("--temperature", type=float, default=1.0, help="0 decodes greedily")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write every rollout (question, golds, response) as jsonl")
    return p.parse_args(argv)


def kind_of(qtype: str) -> str:
    return "comparison" if "comparison" in qtype else "chain"


def main(argv=None) -> dict:
    args = parse_args(argv)
    run_cfg = load_config(RunConfig, args.config)
    model, tokenizer = load_policy(replace(run_cfg.model, path=args.model, gguf_file=None))
    records = [r for name in DEV_FILES for r in load_questions(Path(args.task_dir) / name)]
    random.Random(args.seed).shuffle(records)
    by_kind = defaultdict(list)
    for r in records:
        by_kind[kind_of(r.meta.get("type", ""))].append(r)
    chosen = [r for group in by_kind.values() for r in group[: args.questions]]
    style = run_cfg.model.prompt_style
    prompts = {
        tuple(question_prompt_ids(r.question, tokenizer, run_cfg.tags, style)) for r in chosen
    }
    intro = tokenizer.encode(
        choice_words(TranscriptTemplates().search_intro), add_special_tokens=False
    )
    # Only the response's first segment (its context is exactly a prompt) is steered.
    force = ScriptedContinuation(lambda ctx: intro if tuple(ctx) in prompts else [], 0)
    retriever, retriever_desc = gate_retriever(run_cfg, GateConfig(), args.task_dir)
    rollout_cfg = replace(
        run_cfg.rollout, samples_per_prompt=args.samples, seed=args.seed,
        temperature=args.temperature,
    )  # fmt: skip
    engine = build_rollout_engine(
        run_cfg, HFBackend(model, tokenizer, [force]), retriever, rollout_cfg
    )
    trajectories = engine.rollout(chosen)
    by_id = {r.id: r for r in chosen}
    rows = [score(t, by_id[t.record_id], run_cfg) for t in trajectories]
    report = {"model": args.model, "temperature": args.temperature, "retriever": retriever_desc}
    for kind in sorted({kind_of(r["kind"]) for r in rows}):
        group = [r for r in rows if kind_of(r["kind"]) == kind]
        report[kind] = {
            "rollouts": len(group),
            "cover_em": round(sum(r["cover_em"] for r in group) / len(group), 4),
            "format_valid": round(sum(r["valid"] for r in group) / len(group), 4),
        }
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, "w") as f:
            for r in rows:
                row = {"question": r["question"], "golds": r["golds"], "type": r["kind"],
                       "cover_em": r["cover_em"], "response": r["response"]}  # fmt: skip
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return report


if __name__ == "__main__":
    main()
