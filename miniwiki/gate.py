"""The base model's gate, before any RL (issue 4, section 3).

Rollouts of the base model on task-world dev questions with the stage prompt, sampled at the
stage temperature by the real rollout engine against a retriever over the task corpus. The
base must seldom search (there is something for stage 1 to teach), mostly write well-formed
responses (the format is known), and answer clearly better when it does search than when it
does not (there is something for stage 2 to reward). Thresholds are in the `gate` section.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from data_filtering.records import QARecord
from data_filtering.sources import load_questions
from miniwiki.base_config import GateConfig
from recipe.retrieval.base import Retriever
from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.corpus import read_corpus
from recipe.rollout import Trajectory, build_rollout_engine
from recipe.schema import RunConfig
from rewards.format import check_format
from rewards.metrics import cover_exact_match

DEV_FILES = ("hotpotqa_dev.json", "2wiki_dev.json")


@dataclass
class RolloutOutcome:
    searched: bool
    n_queries: int
    valid: bool
    cover_em: float
    qtype: str
    stop_reason: str
    violations: list[str]


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


def score(trajectory: Trajectory, record: QARecord, run_cfg: RunConfig) -> RolloutOutcome:
    report = check_format(trajectory.response_text, run_cfg.tags, run_cfg.reward.max_answer_words)
    cover = 0.0
    if report.answer is not None:
        cover = cover_exact_match(report.answer, trajectory.golds, run_cfg.reward.metric_profile)
    return RolloutOutcome(
        searched=report.n_queries >= 1,
        n_queries=report.n_queries,
        valid=report.valid,
        cover_em=cover,
        qtype=f"{record.source}/{record.meta.get('type', '?')}",
        stop_reason=trajectory.stop_reason,
        violations=report.violations,
    )


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarize(outcomes: list[RolloutOutcome], gate_cfg: GateConfig) -> dict:
    searched = [o for o in outcomes if o.searched]
    silent = [o for o in outcomes if not o.searched]
    n = len(outcomes)
    metrics = {
        "rollouts": n,
        "searched_rollouts": len(searched),
        "search_rate": round(len(searched) / n, 4),
        "format_valid_rate": round(sum(o.valid for o in outcomes) / n, 4),
        "cover_em": _mean([o.cover_em for o in outcomes]),
        "cover_em_searched": _mean([o.cover_em for o in searched]),
        "cover_em_not_searched": _mean([o.cover_em for o in silent]),
        "queries_per_searched_rollout": _mean([float(o.n_queries) for o in searched]),
        "stop_reasons": dict(Counter(o.stop_reason for o in outcomes)),
        "violations": dict(Counter(v for o in outcomes for v in o.violations)),
        "by_type": _by_type(outcomes),
    }
    return {"metrics": metrics, "checks": _checks(metrics, gate_cfg)}


def _by_type(outcomes: list[RolloutOutcome]) -> dict:
    out = {}
    for qtype in sorted({o.qtype for o in outcomes}):
        group = [o for o in outcomes if o.qtype == qtype]
        out[qtype] = {
            "rollouts": len(group),
            "search_rate": _mean([float(o.searched) for o in group]),
            "cover_em": _mean([o.cover_em for o in group]),
        }
    return out


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
    engine = build_rollout_engine(
        replace(run_cfg, rollout=rollout_cfg), model, tokenizer, retriever
    )
    trajectories = engine.rollout(records)
    by_id = {r.id: r for r in records}
    outcomes = [score(t, by_id[t.record_id], run_cfg) for t in trajectories]
    report = summarize(outcomes, gate_cfg)
    report["passed"] = all(c["passed"] for c in report["checks"].values())
    report["setting"] = {
        "questions": len(records),
        "samples_per_question": gate_cfg.samples_per_question,
        "temperature": rollout_cfg.temperature,
        "retriever": retriever_desc,
        "topk": run_cfg.retriever.topk,
        "prompt_style": run_cfg.model.prompt_style,
    }
    report["examples"] = _examples(trajectories, outcomes)
    return report


def _examples(trajectories: list[Trajectory], outcomes: list[RolloutOutcome], n: int = 4) -> list:
    """A few responses (searched and not) so the report can be read, not just trusted."""
    picked = [i for i, o in enumerate(outcomes) if o.searched][: n // 2]
    picked += [i for i, o in enumerate(outcomes) if not o.searched][: n - len(picked)]
    return [
        {
            "question": trajectories[i].question,
            "golds": trajectories[i].golds,
            "response": trajectories[i].response_text,
            "cover_em": outcomes[i].cover_em,
            "valid": outcomes[i].valid,
        }
        for i in picked
    ]
