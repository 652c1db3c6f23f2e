"""Trainer update throughput: the trainer's update vs a plain PyTorch loop, same model and batch.

Both run one optimizer step over the same padded batch (prompt + response rows whose action
mask covers the sampled tokens and leaves out inserted passages) in the same micro-batches,
under the same bf16 autocast over fp32 weights and the same frozen lower layers:
- ours: `Trainer.update` (DeepSpeed engine, the shared system prompt run once per pass,
  logits only at the action tokens, token-mean PPO-clip over the step);
- plain: `model(...).logits` over every position, log_softmax, gather, the same loss,
  `loss.backward()`, clipping and `torch.optim.AdamW.step()`.
Throughput is action (sampled) tokens per second of update; the runs alternate so machine
noise hits both, and the report is the median of `--repeats` runs and their ratio. Beside
tokens/s it prints each update's model FLOP/s (`benchmarks.machine_limit`: the work the update
needs, the same for both) and its share of the matrix-product rate measured in the same run at
the model's shapes (goal: ours >= 35 % of the faster of bf16 and fp32). With a stage run's `metrics.jsonl` it also
prints each phase's median share of the step time.

    python -m benchmarks.trainer_update [--rows 32] [--repeats 3] [--metrics runs/stage1/metrics.jsonl]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.machine_limit import Dims, limits_line, machine_limits, share_line, update_flops
from recipe.algorithms import compute_advantages, ppo_clip_loss
from recipe.config import load_config
from recipe.policy import load_policy
from recipe.precision import autocast_enabled
from recipe.retrieval.base import Passage
from recipe.retrieval.bm25 import BM25Retriever
from recipe.schema import RunConfig
from recipe.training.batch import TrainBatch
from recipe.training.microbatch import token_micro_batches
from recipe.training.trainer import Trainer
from rewards.stage import build_reward


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/embedded/stage1.yaml")
    p.add_argument("--rows", type=int, default=32, help="trajectories in the batch")
    p.add_argument("--prompt", type=int, default=220, help="prompt tokens per row")
    p.add_argument("--question", type=int, default=25, help="prompt tokens not shared")
    p.add_argument("--response", type=int, default=420, help="response tokens per row")
    p.add_argument("--inserted", type=float, default=0.55, help="share of inserted tokens")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--metrics", default="runs/stage1/metrics.jsonl")
    p.add_argument("--limit-tokens", type=int, default=512, help="rows of the matmul limit")
    return p.parse_args(argv)


def synthetic_batch(args, vocab: int, seed: int = 0) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    lengths = [
        args.prompt + args.response - int(i * args.response / (2 * args.rows))
        for i in range(args.rows)
    ]
    width = max(lengths)
    ids = torch.randint(0, vocab, (args.rows, width), generator=g)
    # Every prompt opens with the same system turn and differs only in its question.
    shared = max(0, args.prompt - args.question)
    ids[:, :shared] = ids[0, :shared]
    attention = torch.zeros_like(ids)
    action = torch.zeros_like(ids)
    for b, n in enumerate(lengths):
        attention[b, :n] = 1
        action[b, args.prompt : n] = (
            torch.rand(n - args.prompt, generator=g) > args.inserted
        ).long()
    return TrainBatch(
        input_ids=ids,
        attention_mask=attention,
        action_mask=action,
        old_logprobs=torch.zeros(ids.shape),
        group_index=torch.arange(args.rows) // 4,
        rewards=torch.rand(args.rows, generator=g),
        lengths=lengths,
        shared_prefix=shared,
    )


def plain_update(model, optimizer, batch: TrainBatch, cfg: RunConfig) -> None:
    """What a plain loop does: full logits, masked token mean, backward, clip, step."""
    advantages, _ = compute_advantages(
        cfg.algo, batch.rewards, batch.action_mask, batch.group_index
    )
    total = int(batch.action_mask.sum())
    for rows in token_micro_batches(
        range(len(batch)), batch.lengths, cfg.trainer.micro_batch_tokens
    ):
        sub = batch.select(rows)
        with torch.autocast(
            "cpu", dtype=torch.bfloat16, enabled=autocast_enabled(cfg.trainer.autocast_bf16, "cpu")
        ):
            logits = model(sub.input_ids, attention_mask=sub.attention_mask).logits
        logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(2, sub.input_ids[:, 1:, None])
        logp = torch.nn.functional.pad(logp.squeeze(2), (1, 0))
        loss, _ = ppo_clip_loss(
            logp, logp.detach(), advantages[rows, : logp.shape[1]], sub.action_mask
        )
        (loss * int(sub.action_mask.sum()) / total).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(params, cfg.trainer.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def phase_shares(path: Path) -> dict[str, float]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = [r for r in rows if "timing/step" in r]
    phases = sorted({k for r in rows for k in r if k.startswith("timing/") and k != "timing/step"})
    return {p: statistics.median(r.get(p, 0.0) / r["timing/step"] for r in rows) for p in phases}


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(RunConfig, args.config)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.trainer.runs_dir, cfg.logging.tensorboard = tmp, False
        model, tokenizer = load_policy(type(cfg.model)(**{**vars(cfg.model), "dtype": "float32"}))
        plain = copy.deepcopy(model)
        retriever = BM25Retriever([Passage("p", "t", "unused")])
        trainer = Trainer(cfg, model, tokenizer, retriever, build_reward(cfg.reward, cfg.tags), [0])
        for layer in plain.get_decoder().layers[: cfg.trainer.frozen_layers]:
            layer.requires_grad_(False)
        plain.get_input_embeddings().requires_grad_(False)
        plain.train()
        optimizer = torch.optim.AdamW(
            [p for p in plain.parameters() if p.requires_grad], lr=cfg.trainer.lr
        )
        batch = synthetic_batch(args, model.config.vocab_size)
        tokens = int(batch.action_mask.sum())
        dims = Dims.of(model.config)
        head_trainable = plain.get_output_embeddings().weight.requires_grad
        flops = update_flops(
            dims, batch.lengths, tokens, cfg.trainer.frozen_layers, head_trainable,
            batch.shared_prefix,
        )  # fmt: skip
        limits = machine_limits(dims, args.limit_tokens)
        seconds = {"ours": [], "plain": []}
        for _ in range(args.repeats):
            for name in ("ours", "plain"):
                started = time.perf_counter()
                if name == "ours":
                    trainer.update(batch, None)
                else:
                    plain_update(plain, optimizer, batch, cfg)
                seconds[name].append(time.perf_counter() - started)
    rate = {k: tokens / statistics.median(v) for k, v in seconds.items()}
    print(f"batch: {args.rows} rows, {sum(batch.lengths)} tokens, {tokens} action tokens")
    for name in ("ours", "plain"):
        runs = ", ".join(f"{s:.1f}" for s in seconds[name])
        print(f"{name:5s}: {rate[name]:7.0f} action tokens/s (median of {args.repeats}: {runs} s)")
    print(f"ratio ours / plain: {rate['ours'] / rate['plain']:.2f}")
    print(limits_line(limits, args.limit_tokens))
    print(f"model FLOPs per update: {flops / 1e12:.3f} T")
    for name in ("ours", "plain"):
        print(share_line(name, flops / statistics.median(seconds[name]), limits))
    print("goal: ours >= 35 % of the machine's limit (its faster format)")
    metrics = Path(args.metrics)
    if metrics.is_file():
        shares = phase_shares(metrics)
        print(f"phase shares of the step ({metrics}, medians):")
        for phase, share in shares.items():
            print(f"  {phase}: {share:.1%}")


if __name__ == "__main__":
    main()
