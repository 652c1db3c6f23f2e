"""Cold-start training throughput: all layers trained vs the lowest layers kept fixed.

Same model (SmolLM2-135M-Instruct, fp32), same examples (cold-start transcripts about a tiny
warm-up world, built the way `make base` builds them), same loop (`miniwiki.coldstart.train`).
Throughput is tokens run through the model per second of training; the runs alternate so that
machine noise hits both, and the report is the median of `--repeats` runs and its ratio.

    python -m benchmarks.coldstart_step                 # frozen_layers 0 vs 12, medians of 3
    python -m benchmarks.coldstart_step --frozen 0 6 15
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
from pathlib import Path

import torch

from miniwiki import build as world_build
from miniwiki.base import build_examples
from miniwiki.base_model import convert_smollm2
from miniwiki.coldstart import train
from miniwiki.presets import tiny_config
from recipe.config import load_config
from recipe.policy import load_policy, load_tokenizer
from recipe.schema import ModelConfig, RunConfig


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Cold-start throughput: frozen lower layers vs none.")
    p.add_argument("--frozen", type=int, nargs="+", default=[0, 12], help="frozen_layers values")
    p.add_argument("--transcripts", type=int, default=24, help="examples per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--model-dir", default="runs/miniwiki/smollm2", help="converted SmolLM2")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    convert_smollm2(args.model_dir)
    source = ModelConfig(path=args.model_dir, dtype="float32")
    base_model, _ = load_policy(source)
    tokenizer = load_tokenizer(source)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = tiny_config(Path(tmp) / "world")
        world_build.build(cfg)
        cfg.coldstart.transcripts = args.transcripts
        run_cfg = load_config(RunConfig, cfg.coldstart.run_config)
        examples, _, _ = build_examples(cfg, run_cfg, tokenizer)
    speeds: dict[int, list[float]] = {n: [] for n in args.frozen}
    for repeat in range(args.repeats):
        for n in args.frozen:
            model = copy.deepcopy(base_model)
            settings = dataclasses.replace(cfg.coldstart, frozen_layers=n)
            stats = train(model, examples, settings, tokenizer.pad_token_id)
            speeds[n].append(stats.tokens / stats.seconds)
            print(f"repeat {repeat} frozen_layers={n}: {speeds[n][-1]:.0f} tokens/s")
    reference = statistics.median(speeds[args.frozen[0]])
    print(f"\n{len(examples)} examples, {stats.tokens} tokens per run, {args.threads} threads")
    print(f"{'frozen_layers':>13} {'tokens/s (median)':>18} {'ratio':>6}")
    for n in args.frozen:
        median = statistics.median(speeds[n])
        print(f"{n:>13} {median:>18.0f} {median / reference:>6.2f}")


if __name__ == "__main__":
    main()
