"""The base model's gate, before any RL: it must have something for each stage to teach.

Rollouts of the base model on task-world dev questions with the stage prompt, sampled at the
stage temperature by the real rollout engine against a retriever over the task corpus, scored
by the evaluation's own code (`recipe.evaluation.scoring`); this module holds only the gate's checks. The
base must seldom search (there is something for stage 1 to teach), mostly write well-formed
responses (the format is known), and answer clearly better when it does search than when it
does not (there is something for stage 2 to reward). Thresholds are in the `gate` section.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

from data_filtering.records import QARecord
from data_filtering.sources import load_questions
from miniwiki.base_config import GateConfig
from recipe.evaluation.scoring import question_kind, score_trajectory, summarize_by_kind
from recipe.generation import build_backend
from recipe.retrieval.base import Retriever
from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.corpus import read_corpus
from recipe.rollout import Trajectory, build_rollout_engine
from recipe.schema import RunConfig

DEV_FILES = ("hotpotqa_dev.json", "2wiki_dev.json")


def dev_questions(task_dir: str | Path, n: int, seed: int) -> list[QARecord]:
    """A seeded sample of the task world's dev questions, over both data sets."""
    records = [r for name in DEV_FILES for r in load_questions(Path(task_dir) / name)]
    rng = random.Random(seed)
    return rng.sample(records, min(n, len(records)))


def gate_retriever(
    run_cfg: RunConfig, gate_cfg: GateConfig, task_dir: str | Path
) -> tuple[Retriever, str]:
    """(retriever over the task corpus, its description for the report)."""
    if gate_cfg.retriever == "bm25":
        corpus = Path(task_dir) / "corpus.jsonl"
        return BM25Retriever(list(read_corpus(corpus))), f"bm25 over {corpus}"
    if gate_cfg.retriever == "config":
        from recipe.retrieval.client import build_retriever

        desc = (
            f"{run_cfg.retriever.kind} ({run_cfg.retriever.encoder}) {run_cfg.retriever.index_dir}"
        )
        return build_retriever(run_cfg.retriever), desc
    raise ValueError(f"gate.retriever must be bm25 or config, got {gate_cfg.retriever!r}")


def score(trajectory: Trajectory, record: QARecord, run_cfg: RunConfig) -> dict:
    """The evaluation's scores of one rollout (`recipe.evaluation.scoring`), with its question kind.
    `searched` is an executed search; the gate's search rate counts well-formed queries."""
    row = score_trajectory(trajectory, run_cfg.tags, run_cfg.reward)
    return {**row, "kind": question_kind(record)}


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize(rows: list[dict], gate_cfg: GateConfig) -> dict:
    searched = [r for r in rows if r["n_queries"] >= 1]
    silent = [r for r in rows if r["n_queries"] == 0]
    n = len(rows)
    metrics = {
        "rollouts": n,
        "searched_rollouts": len(searched),
        "search_rate": round(len(searched) / n, 4),
        "format_valid_rate": round(sum(r["valid"] for r in rows) / n, 4),
        "cover_em": _mean([r["cover_em"] for r in rows]),
        "cover_em_searched": _mean([r["cover_em"] for r in searched]),
        "cover_em_not_searched": _mean([r["cover_em"] for r in silent]),
        "queries_per_searched_rollout": _mean([float(r["n_queries"]) for r in searched]),
        "stop_reasons": dict(Counter(r["stop_reason"] for r in rows)),
        "violations": dict(Counter(v for r in rows for v in r["violations"])),
        "by_type": _by_type(rows),
    }
    return {"metrics": metrics, "checks": _checks(metrics, gate_cfg)}


def _by_type(rows: list[dict]) -> dict:
    by_kind = summarize_by_kind(rows)
    return {
        kind: {
            "rollouts": summary["questions"],
            "search_rate": _mean([float(r["n_queries"] >= 1) for r in rows if r["kind"] == kind]),
            "cover_em": summary["cover_em"],
        }
        for kind, summary in by_kind.items()
    }


def _checks(m: dict, g: GateConfig) -> dict:
    searched = m["cover_em_searched"] if m["cover_em_searched"] is not None else 0.0
    silent = m["cover_em_not_searched"] if m["cover_em_not_searched"] is not None else 0.0
    checks = {
        "search_rate": [m["search_rate"], f"{g.min_search_rate}..{g.max_search_rate}",
                        g.min_search_rate <= m["search_rate"] <= g.max_search_rate],
        "format_valid_rate": [m["format_valid_rate"], f">= {g.min_format_valid}",
                              m["format_valid_rate"] >= g.min_format_valid],
        "cover_em_searched": [searched, f">= {g.min_searched_cover_em}",
                              searched >= g.min_searched_cover_em],
        "cover_em_gap": [round(searched - silent, 4), f">= {g.min_cover_em_gap}",
                         searched - silent >= g.min_cover_em_gap],
    }  # fmt: skip
    return {
        name: {"value": v, "want": want, "passed": ok} for name, (v, want, ok) in checks.items()
    }


def run_gate(
    model, tokenizer, run_cfg: RunConfig, gate_cfg: GateConfig, task_dir: str | Path
) -> dict:
    """Roll out, score and check; returns the report (`passed` says whether the gate holds)."""
    records = dev_questions(task_dir, gate_cfg.questions, gate_cfg.seed)
    retriever, retriever_desc = gate_retriever(run_cfg, gate_cfg, task_dir)
    rollout_cfg = replace(
        run_cfg.rollout, samples_per_prompt=gate_cfg.samples_per_question, seed=gate_cfg.seed
    )
    gate_run_cfg = replace(run_cfg, rollout=rollout_cfg)
    backend = build_backend(gate_run_cfg, model, tokenizer)
    engine = build_rollout_engine(gate_run_cfg, backend, retriever)
    trajectories = engine.rollout(records)
    by_id = {r.id: r for r in records}
    rows = [score(t, by_id[t.record_id], run_cfg) for t in trajectories]
    report = summarize(rows, gate_cfg)
    report["passed"] = all(c["passed"] for c in report["checks"].values())
    report["setting"] = {
        "questions": len(records),
        "samples_per_question": gate_cfg.samples_per_question,
        "temperature": rollout_cfg.temperature,
        "retriever": retriever_desc,
        "topk": run_cfg.retriever.topk,
        "prompt_style": run_cfg.model.prompt_style,
    }
    report["examples"] = _examples(rows)
    return report


def _examples(rows: list[dict], n: int = 4) -> list:
    """A few responses (searched and not) so the report can be read, not just trusted."""
    picked = [r for r in rows if r["n_queries"] >= 1][: n // 2]
    picked += [r for r in rows if r["n_queries"] == 0][: n - len(picked)]
    keys = ("question", "golds", "response", "cover_em", "valid")
    return [{key: row[key] for key in keys} for row in picked]
