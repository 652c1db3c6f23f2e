"""Rollout throughput of the vLLM backend vs the HF backend: same model, prompts and retriever.

Both run the real rollout engine on the stage-1 config (`configs/embedded/stage1.yaml`: its
policy `model.path`, `rollout.*` settings and retriever) over the first `--questions` training
questions, with the same seeds; the runs are interleaved so load drifts hit both alike. The
model writes its own queries (the cold-started base searches), so turns, retrieval and
insertions are the pipeline's own. Throughput is sampled (mask 1) tokens per second of
`rollout()`; retrieval time is inside both. The vLLM engine's start-up is outside the timing
(paid once per run); its weight reload after an update (`load_weights`) is timed on its own,
since a training step pays it once. Needs vllm (`make test-vllm` builds .venv-vllm):

    .venv-vllm/bin/python -m benchmarks.rollout_backends [--questions N] [--repeats N] [key=value]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch

from data_filtering.sources import load_questions
from recipe.config import load_config
from recipe.generation import build_backend
from recipe.policy import load_policy
from recipe.retrieval.client import build_retriever
from recipe.rollout import RolloutEngine, build_rollout_engine
from recipe.schema import RunConfig

DEFAULT_CONFIG = "configs/embedded/stage1.yaml"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Rollout tokens/s: vLLM backend vs HF backend.")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--questions", type=int, default=4, help="training questions per rollout")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("overrides", nargs="*", help="config overrides, key.path=value")
    return p.parse_args(argv)


def timed_rollout(engine: RolloutEngine, records) -> dict:
    started = time.perf_counter()
    trajectories = engine.rollout(records)
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "sampled": sum(sum(t.action_mask) for t in trajectories),
        "searches": sum(t.n_searches for t in trajectories),
        "trajectories": len(trajectories),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    cfg = load_config(RunConfig, args.config, args.overrides)
    records = [r for p in cfg.data.train_files for r in load_questions(p, cfg.data.source_format)]
    records = records[: args.questions]
    model, tokenizer = load_policy(cfg.model)
    retriever = build_retriever(cfg.retriever)
    engines = {}
    started = time.perf_counter()
    for name in ("hf", "vllm"):
        run_cfg = dataclasses.replace(cfg, rollout=dataclasses.replace(cfg.rollout, backend=name))
        backend = build_backend(run_cfg, model, tokenizer)
        engines[name] = build_rollout_engine(run_cfg, backend, retriever)
    vllm_start = time.perf_counter() - started
    for engine in engines.values():  # warm-up: first-call kernel set-up, the retriever's cache
        timed_rollout(engine, records)
    runs: dict[str, list[dict]] = {name: [] for name in engines}
    for _ in range(args.repeats):
        for name, engine in engines.items():
            engine.load_state_dict({"calls": 0})  # the same seeds for both, every repeat
            runs[name].append(timed_rollout(engine, records))
    vllm_backend = engines["vllm"].backend
    reloads = []
    for _ in range(args.repeats):
        vllm_backend.load_weights(model)
        reloads.append(vllm_backend.reload_seconds)
    report(cfg, args, runs, vllm_start, statistics.median(reloads))
    vllm_backend.close()


def report(cfg: RunConfig, args, runs: dict, vllm_start: float, reload_s: float) -> None:
    speed = {k: statistics.median(r["sampled"] / r["seconds"] for r in v) for k, v in runs.items()}
    seconds = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    first = runs["hf"][0]
    print(
        f"model: {cfg.model.path} ({cfg.model.dtype}); {args.questions} questions x "
        f"{cfg.rollout.samples_per_prompt} samples, batch {cfg.rollout.batch_size}, "
        f"T={cfg.rollout.temperature}; retriever {cfg.retriever.kind} top-{cfg.retriever.topk}; "
        f"torch threads {torch.get_num_threads()}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; {args.repeats} repeats, medians"
    )
    for name in runs:
        r = runs[name][0]
        print(
            f"  {name:5s} {speed[name]:8.1f} sampled tok/s  ({seconds[name]:.1f} s per rollout, "
            f"{r['sampled']} sampled tokens, {r['searches']} searches, "
            f"{r['trajectories']} trajectories)"
        )
    print(f"ratio vllm / hf rollout throughput: {speed['vllm'] / speed['hf']:.3f}")
    print(
        f"vllm engine start (once per run): {vllm_start:.1f} s; weight reload after an update: "
        f"{reload_s:.2f} s (HF: none, it samples from the copy it holds); "
        f"HF sampled {first['sampled']} tokens in the first repeat"
    )


if __name__ == "__main__":
    main()
