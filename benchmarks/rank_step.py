"""Stage step time on two ranks vs one rank, same stage config, questions, samples and seed.

Each run is the real stage entry point (`stages.stage1` on `configs/embedded/stage1.yaml`)
into a fresh runs folder, with no dev evaluation, for `--steps` steps:
- one rank: `python -m stages.stage1` (torch takes every core of the machine);
- two ranks: the DeepSpeed launcher, `deepspeed --num_gpus 2 --no_local_rank --module
  stages.stage1` (gloo on CPU; each rank rolls out half of the step's questions on
  `threads_per_rank()` threads, then the gradients are summed over the ranks).
The step time is read from each run's `metrics.jsonl` (`timing/step` and its phases), the first
step left out when there are more (it pays the first-call kernel set-up); the runs alternate
`--repeats` times and the report is the median per phase and the ratio one rank / two ranks.
The trajectories differ between the two (each rank samples from its own seed), so the phases
compare the same amount of work in distribution, not token for token: the sampled and
inserted token counts are printed beside them.

    python -m benchmarks.rank_step [--steps 3] [--prompts 4] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from recipe.ports import free_port

PHASES = ("timing/step", "timing/rollout", "timing/update", "timing/sync")
COUNTS = ("tokens/action", "response_length/mean", "search/calls_per_sample")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/embedded/stage1.yaml")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--prompts", type=int, default=4, help="questions per step (even)")
    p.add_argument("--repeats", type=int, default=1)
    return p.parse_args(argv)


def stage_command(ranks: int, args, runs_dir: Path) -> list[str]:
    overrides = [
        f"trainer.runs_dir={runs_dir}",
        f"trainer.steps={args.steps}",
        f"trainer.prompts_per_step={args.prompts}",
        f"trainer.save_every={args.steps}",
        "trainer.eval_at_start=false",
        "trainer.eval_at_end=false",
        "trainer.resume=off",
        "logging.progress=false",
    ]
    stage = ["stages.stage1", "--config", args.config, *overrides]
    if ranks == 1:
        return [sys.executable, "-m", *stage]
    launcher = str(Path(sys.executable).parent / "deepspeed")
    port = str(free_port())
    launch = [launcher, "--num_gpus", str(ranks), "--no_local_rank", "--master_port", port]
    return [*launch, "--module", *stage]


def run_stage(ranks: int, args) -> list[dict]:
    """The metrics rows of one run (the steps' rows only)."""
    with tempfile.TemporaryDirectory(prefix=f"rank_step_{ranks}_") as tmp:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
        started = time.perf_counter()
        done = subprocess.run(
            stage_command(ranks, args, Path(tmp)), env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            sys.exit(f"{ranks} rank(s): exit {done.returncode}\n{done.stderr[-3000:]}")
        metrics = Path(tmp) / "stage1" / "metrics.jsonl"
        rows = [json.loads(line) for line in metrics.read_text().splitlines()]
        print(f"  {ranks} rank(s): {time.perf_counter() - started:.0f} s wall", flush=True)
        return [r for r in rows if "timing/step" in r]


def medians(runs: list[list[dict]], keys) -> dict[str, float]:
    rows = [r for run in runs for r in (run[1:] if len(run) > 1 else run)]
    return {k: statistics.median(r[k] for r in rows if k in r) for k in keys}


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.prompts % 2:
        sys.exit("--prompts must be even (each rank takes whole questions)")
    runs: dict[int, list[list[dict]]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        print(f"repeat {repeat + 1}/{args.repeats}", flush=True)
        for ranks in (1, 2):
            runs[ranks].append(run_stage(ranks, args))
    one, two = (medians(runs[r], PHASES + COUNTS) for r in (1, 2))
    print(f"{args.steps} steps x {args.prompts} questions, first step left out; medians (s)")
    print(f"{'':28}{'1 rank':>10}{'2 ranks':>10}{'1/2':>8}")
    for key in PHASES:
        ratio = one[key] / two[key] if two[key] else float("nan")
        print(f"{key:28}{one[key]:10.2f}{two[key]:10.2f}{ratio:8.2f}")
    for key in COUNTS:
        print(f"{key:28}{one[key]:10.1f}{two[key]:10.1f}")


if __name__ == "__main__":
    main()
