"""Dev evaluation of a policy during and after training, and the paired comparison of two.

One trajectory per question at `trainer.eval_temperature` (0: greedy) through the same rollout
engine, prompt, retriever and top-k as training. Every question gets its scores (EM, cover-EM
and F1 under the reward's normalisation profile, whether it searched, whether its format is
valid, whether a gold answer occurs in the passages it read); the summary holds their means.
Two evaluations over the same questions compare question by question: the paired difference
of a metric with a percentile-bootstrap 95 % interval (resampling questions), which is far
tighter than two separate intervals because question difficulty cancels.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recipe.rollout import RolloutEngine, Trajectory, answer_in_documents
from rewards.format import check_format
from rewards.metrics import cover_exact_match, exact_match, f1_score
from rewards.spec import RewardConfig, TagsConfig

SUMMARY_METRICS = ("f1", "em", "cover_em", "searched", "searches", "valid", "answer_in_docs")
ANSWER_METRICS = {"em": exact_match, "cover_em": cover_exact_match, "f1": f1_score}
REPORT_PROFILES = ("squad", "r1searcher")  # rows also carry "<metric>@<profile>" for both
BOOTSTRAP_SAMPLES = 2000


def sample_questions(records: Sequence, n: int, seed: int) -> list:
    """A seeded sample of `n` records (all of them when there are fewer), in a fixed order."""
    records = list(records)
    if n >= len(records):
        return records
    return random.Random(seed).sample(records, n)


def score_trajectory(t: Trajectory, tags: TagsConfig, reward_cfg: RewardConfig) -> dict:
    """One question's scores: EM, cover-EM and F1 under the reward's profile (plain keys) and
    under both normalisation profiles ("f1@squad" ...), search, format and document checks."""
    report = check_format(t.response_text, tags, rules=reward_cfg)
    answer, profile = report.answer or "", reward_cfg.metric_profile

    def scored(metric, profile):
        return ANSWER_METRICS[metric](answer, t.golds, profile) if answer else 0.0

    return {
        "id": t.record_id,
        "question": t.question,
        "golds": t.golds,
        "prediction": report.answer,
        **{metric: scored(metric, profile) for metric in ANSWER_METRICS},
        **{f"{m}@{p}": scored(m, p) for p in REPORT_PROFILES for m in ANSWER_METRICS},
        "searched": float(t.n_searches > 0),
        "searches": float(t.n_searches),
        "valid": float(report.valid),
        "n_queries": report.n_queries,  # well-formed ones (the checker's count)
        "answer_in_docs": float(answer_in_documents(t, profile)),
        "stop_reason": t.stop_reason,
        "violations": report.violations,
        "response": t.response_text,
    }


def evaluate(
    engine: RolloutEngine,
    records: Sequence,
    tags: TagsConfig,
    reward_cfg: RewardConfig,
    progress: bool = True,
) -> list[dict]:
    """One scored trajectory per record, with the engine set to one sample per question."""
    saved = engine.cfg
    engine.cfg = dataclasses.replace(saved, samples_per_prompt=1)
    size = max(1, saved.batch_size)
    trajectories: list[Trajectory] = []
    try:
        with tqdm(total=len(records), desc="dev", unit="question", disable=not progress) as bar:
            for start in range(0, len(records), size):
                trajectories += engine.rollout(records[start : start + size])
                bar.update(min(size, len(records) - start))
    finally:
        engine.cfg = saved
    kinds = {str(r.id): question_kind(r) for r in records}
    return [
        {**score_trajectory(t, tags, reward_cfg), "kind": kinds[t.record_id]} for t in trajectories
    ]


def question_kind(record) -> str:
    """ "source/type" (e.g. hotpotqa_dev/bridge) from the labels the record carries."""
    meta = getattr(record, "meta", None) or {}
    return f"{getattr(record, 'source', '?')}/{meta.get('type', '?')}"


def summarize_by_kind(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    kinds = sorted({r.get("kind", "?") for r in rows})
    return {k: summarize([r for r in rows if r.get("kind", "?") == k]) for k in kinds}


def summarize(rows: Sequence[dict]) -> dict[str, float]:
    """Means of every metric the rows hold (SUMMARY_METRICS, the per-profile and judge ones)."""
    n = max(1, len(rows))
    keys = [k for k in (*SUMMARY_METRICS, *_profile_keys(), "judge") if rows and k in rows[0]]
    out = {"questions": len(rows)}
    out.update({k: round(sum(r[k] for r in rows) / n, 4) for k in keys})
    return out


def _profile_keys() -> list[str]:
    return [f"{m}@{p}" for p in REPORT_PROFILES for m in ANSWER_METRICS]


def paired_difference(
    ours: Sequence[dict],
    theirs: Sequence[dict],
    metric: str,
    seed: int = 0,
    samples: int = BOOTSTRAP_SAMPLES,
) -> dict[str, float]:
    """mean(ours - theirs) over the questions both hold, with a percentile-bootstrap 95 %
    interval from `samples` resamplings of those questions drawn with `seed`."""
    by_id = {r["id"]: r[metric] for r in theirs}
    diffs = np.array([r[metric] - by_id[r["id"]] for r in ours if r["id"] in by_id])
    if diffs.size == 0:
        raise ValueError("the two evaluations share no question")
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, diffs.size, size=(samples, diffs.size))
    means = diffs[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {
        "questions": int(diffs.size),
        "difference": round(float(diffs.mean()), 4),
        "ci95_low": round(float(low), 4),
        "ci95_high": round(float(high), 4),
    }


def read_predictions(path: str | Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
