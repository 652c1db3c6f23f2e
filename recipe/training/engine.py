"""The DeepSpeed engine of the policy: process group, config, client optimizer and schedule.

One process without a launcher gets the single-rank environment DeepSpeed expects (RANK,
LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT); gloo on CPU, NCCL on GPU. The client
optimizer is torch's AdamW (DeepSpeed's fused CPU Adam compiles for minutes). Gradient
accumulation is the trainer's (`managed_gradient_accumulation: false`): a step's passes vary
in number with their lengths (micro-batching by tokens), each `backward` accumulates and one
`step` applies the update (DeepSpeed 0.19.8 or later, the floor in setup.cfg).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from recipe.ports import free_port
from recipe.schema import TrainerConfig
from recipe.training.optim import build_optimizer, build_schedule, trainable_parameters

SINGLE_RANK_ENV = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}


def init_distributed() -> None:
    import deepspeed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return
    if "RANK" not in os.environ:
        for key, value in SINGLE_RANK_ENV.items():
            os.environ.setdefault(key, value)
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    if backend == "gloo":
        _unlink_shm_allreduce_buffer()


# DeepSpeed's CPU all-reduce (deepspeed/ops/csrc/cpu/comm/shm.cpp, used when every rank is on one
# node) creates one shared-memory workspace per rank under this name and never unlinks it: each
# run with several ranks left its buffers (69 MB each for the embedded model) in /dev/shm, which is memory, until
# they filled it (DeepSpeed PR 4115's thread says so). The peers map each other's buffers inside
# init_distributed; once all have, a rank can unlink its own name: the mappings live on until the
# processes exit, however they exit.
SHM_ALLREDUCE_BUFFER = "/dev/shm/deepspeed_allreduce_buffer_{uid}_{addr}_{port}_{rank}"


def _unlink_shm_allreduce_buffer() -> None:
    path = Path(
        SHM_ALLREDUCE_BUFFER.format(
            uid=os.getuid(),
            addr=os.environ.get("MASTER_ADDR", ""),
            port=os.environ.get("MASTER_PORT", ""),
            rank=torch.distributed.get_rank(),
        )
    )
    torch.distributed.barrier()  # every rank has mapped its peers' buffers
    path.unlink(missing_ok=True)


def read_deepspeed_json(cfg: TrainerConfig) -> dict:
    path = Path(cfg.deepspeed_config)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"trainer.deepspeed_config: {path} not found") from None


def training_dtype(cfg: TrainerConfig) -> str:
    """The dtype DeepSpeed trains the module in: bfloat16 or float16 when its JSON enables
    them (the optimizer then keeps fp32 master weights), float32 otherwise. Loading the policy
    in it avoids an fp32 copy of a 7B model on every rank before DeepSpeed casts it."""
    ds = read_deepspeed_json(cfg)
    if ds.get("bf16", {}).get("enabled", False):
        return "bfloat16"
    if ds.get("fp16", {}).get("enabled", False):
        return "float16"
    return "float32"


def deepspeed_config(cfg: TrainerConfig, samples_per_step: int) -> dict:
    ds = read_deepspeed_json(cfg)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # The batch sizes are bookkeeping here (the trainer accumulates); they must be consistent.
    ds["train_micro_batch_size_per_gpu"] = max(1, samples_per_step // world)
    ds["gradient_accumulation_steps"] = 1
    ds["train_batch_size"] = ds["train_micro_batch_size_per_gpu"] * world
    ds["gradient_clipping"] = cfg.max_grad_norm
    ds["managed_gradient_accumulation"] = False
    if ds.get("zero_optimization", {}).get("stage", 0):
        # ZeRO partitions any torch optimizer's state; DeepSpeed only vouches for its own.
        ds.setdefault("zero_allow_untested_optimizer", True)
    ds.setdefault("steps_per_print", 10**9)
    return ds


def build_engine(model, cfg: TrainerConfig, samples_per_step: int):
    """(DeepSpeed engine, its lr scheduler) over the model's trainable parameters."""
    import deepspeed

    init_distributed()
    params = trainable_parameters(model)
    optimizer = build_optimizer(
        params, cfg.lr, cfg.weight_decay, tuple(cfg.adam_betas), cfg.adam_eps
    )
    # The schedule advances once per optimizer step: ppo_epochs x updates_per_rollout per RL step.
    total = cfg.steps * cfg.ppo_epochs * cfg.updates_per_rollout
    schedule = build_schedule(optimizer, cfg.warmup_steps, total, cfg.lr_decay)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=schedule,
        model_parameters=params,
        config=deepspeed_config(cfg, samples_per_step),
    )
    return engine, scheduler
