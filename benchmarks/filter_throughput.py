"""Difficulty-filtering throughput: batched rounds vs one question at a time, same everything else.

Both run `data_filtering.difficulty.estimate` with the same reference policy (the embedded
filter config's model, prompt, retriever and sampling), the same questions (a seeded sample from
the config's sources), the same seed, rounds and cap, each into a fresh results file:
- batched (ours): a round of all unfinished questions goes through the rollout engine
  `rollout.batch_size // rollouts_per_round` questions per call;
- one at a time (the plain loop): each engine call holds one question's rollouts, so a
  question's rounds run back to back before the next question starts.
Throughput is questions per second of estimation (model and index loaded once, before both);
the runs alternate so machine noise hits both, and the report is the median of `--repeats`
runs and their ratio. Bucket counts are printed too: the two draw different samples (the batch
a rollout shares changes its random numbers), so they agree in distribution, not row by row.

    python -m benchmarks.filter_throughput [--questions 16] [--max-rollouts 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

from data_filtering.config import FilterRunConfig
from data_filtering.difficulty import EstimationSettings, estimate
from data_filtering.pipeline import sample_questions
from data_filtering.reference import ReferenceRounds
from data_filtering.results import ResultsStore
from recipe.config import load_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/embedded/filter.yaml")
    p.add_argument("--questions", type=int, default=16, help="questions, split over the sources")
    p.add_argument("--rollouts-per-round", type=int, default=1)
    p.add_argument("--max-rollouts", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def benchmark_config(args) -> FilterRunConfig:
    cfg = load_config(FilterRunConfig, args.config)
    per_source = max(1, args.questions // max(1, len(cfg.filter.sources)))
    sources = {
        name: dataclasses.replace(src, questions=per_source)
        for name, src in cfg.filter.sources.items()
    }
    difficult_above = min(cfg.filter.buckets.difficult_above, args.max_rollouts)
    buckets = dataclasses.replace(
        cfg.filter.buckets,
        easy_below=min(cfg.filter.buckets.easy_below, difficult_above),
        difficult_above=difficult_above,
    )
    fc = dataclasses.replace(
        cfg.filter,
        sources=sources,
        rollouts_per_round=args.rollouts_per_round,
        max_rollouts=args.max_rollouts,
        buckets=buckets,
        quotas={},
        progress=False,
    )
    return dataclasses.replace(cfg, filter=fc)


def timed_estimate(questions, rounds, settings: EstimationSettings, folder: Path, cfg):
    started = time.perf_counter()
    run = estimate(
        questions, ResultsStore(folder / "results.jsonl"), rounds, settings, progress=False
    )
    seconds = time.perf_counter() - started
    buckets = Counter(cfg.filter.buckets.bucket(r.first_correct) for r in run.results.values())
    return seconds, run.rollouts_now, dict(sorted(buckets.items()))


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = benchmark_config(args)
    questions, _ = sample_questions(cfg)
    rounds = ReferenceRounds(cfg)
    per_round = cfg.filter.rollouts_per_round
    batched = EstimationSettings(
        per_round, args.max_rollouts, max(1, cfg.rollout.batch_size // per_round)
    )
    modes = {
        "batched": batched,
        "one at a time": dataclasses.replace(batched, questions_per_call=1),
    }
    rounds([questions[0].record], 0, 0)  # load the model and the index, warm up, outside the timing
    seconds: dict[str, list[float]] = {name: [] for name in modes}
    rollouts: dict[str, list[int]] = {name: [] for name in modes}
    buckets: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, settings in modes.items():
                folder = Path(tmp) / f"{repeat}-{name.replace(' ', '_')}"
                s, n, b = timed_estimate(questions, rounds, settings, folder, cfg)
                seconds[name].append(s)
                rollouts[name].append(n)
                buckets[name] = b
    print(
        f"{len(questions)} questions, {per_round} rollout(s) per round, cap {args.max_rollouts}, "
        f"engine batch {cfg.rollout.batch_size} trajectories, {args.threads} threads"
    )
    rate = {}
    for name in modes:
        rate[name] = len(questions) / statistics.median(seconds[name])
        runs = ", ".join(f"{s:.1f}" for s in seconds[name])
        print(
            f"{name:13s}: {rate[name]:.3f} questions/s (median of {args.repeats}: {runs} s; "
            f"rollouts {rollouts[name]}; last buckets {buckets[name]})"
        )
    print(f"ratio batched / one at a time: {rate['batched'] / rate['one at a time']:.2f}")


if __name__ == "__main__":
    main()
