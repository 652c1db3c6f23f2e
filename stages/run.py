"""The composition root of a stage: a config, its questions, its reward, the trainer.

    python -m stages.stage1 [--config configs/embedded/stage1.yaml] [key.path=value ...]

Questions come through `data_filtering` (any supported file format), the reward from the
`rewards` registry, the retriever from the config (in process or over HTTP), the policy from
`model.path` (a Hugging Face folder; stage 2's is stage 1's `final/` export). On GPUs the
memory plan (`python -m stages.plan`) runs first. Exit status: 0 when the stage finished, 2 for
a bad config or missing input, a plan that does not fit, a run folder another launch holds, or
a resume under settings the run did not start with (one line, no traceback), 1 when training
stopped (the message says why, a full disk included; a rerun resumes from the last checkpoint).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from data_filtering.sources import load_questions
from recipe.config import parse_cli
from recipe.exit_status import run_reporting
from recipe.launch_env import launcher_rank
from recipe.run_lock import folder_lock
from recipe.schema import RunConfig
from rewards.stage import build_reward
from stages.config_checks import check_frozen_layers, check_stage_config
from stages.plan import gpu_startup_refusal


def load_records(files: Sequence[str], fmt: str, limit: int | None = None) -> list:
    records = [r for path in files for r in load_questions(path, fmt)]
    return records[:limit] if limit is not None else records


def run_stage(cfg: RunConfig, **trainer_kwargs) -> dict:
    """Build the stage's parts from `cfg` and train; returns the run summary."""
    # torch, transformers and DeepSpeed load in `_run_stage`, after the config was checked.
    rank = launcher_rank()  # the process group starts with the engine
    run_dir = Path(cfg.trainer.runs_dir) / cfg.trainer.run_name
    with folder_lock(run_dir, rank, "training run"):  # before the model loads: fail fast
        return _run_stage(cfg, trainer_kwargs)


def _run_stage(cfg: RunConfig, trainer_kwargs: dict) -> dict:
    from recipe.policy import load_policy
    from recipe.precision import default_device
    from recipe.precision import describe as describe_precision
    from recipe.retrieval.client import build_retriever
    from recipe.training.engine import training_dtype
    from recipe.training.trainer import Trainer

    data = cfg.data
    train = load_records(data.train_files, data.source_format, data.max_questions)
    dev = load_records(data.eval_files, data.source_format)
    reward = build_reward(cfg.reward, cfg.tags)
    retriever = build_retriever(cfg.retriever)  # before the model: a dead service fails fast
    # Loaded in the dtype DeepSpeed trains in; `model.dtype` is the generation copy's.
    dtype = training_dtype(cfg.trainer)
    model, tokenizer = load_policy(dataclasses.replace(cfg.model, dtype=dtype))
    # A GGUF file has no config.json for the check before loading.
    check_frozen_layers(cfg, getattr(model.config, "num_hidden_layers", None))
    if launcher_rank() == 0:  # once the inputs loaded: an input error stays one line
        print(describe_precision(default_device()), file=sys.stderr)
    trainer = Trainer(cfg, model, tokenizer, retriever, reward, train, dev, **trainer_kwargs)
    return trainer.fit()


def main(default_config: str, argv: Sequence[str] | None = None) -> int:
    cfg = parse_cli(RunConfig, argv, default=default_config, check=check_stage_config)
    name = f"stages ({cfg.trainer.run_name})"
    refusal = gpu_startup_refusal(cfg)  # before any model loads; every rank decides alike
    if refusal:
        if launcher_rank() == 0:  # one line, not one per rank
            print(f"{name}: {refusal}", file=sys.stderr)
        return 2
    return run_reporting(name, lambda: _train(cfg))


def _train(cfg: RunConfig) -> int:
    summary = run_stage(cfg)
    if summary:  # rank 0 returns the summary; the other ranks return nothing to print
        print(json.dumps(summary, indent=2))
    return 0
