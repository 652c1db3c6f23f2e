"""The machine's own limit: matrix-product FLOP/s at the model's shapes, and model FLOPs.

Machines here differ (AMX or not, cores shared), so a throughput means little alone: the
benchmarks divide the model FLOP/s a phase reaches by the matrix-product rate measured in the
same run, at the model's own linear shapes (`F.linear` over `--tokens` rows, as the model
calls it), in bf16 and fp32.

Model FLOPs count the work a phase needs, not what an implementation spends: 2 FLOPs per
multiply-add of every linear layer for every token that must pass it, causal attention
(QK^T and AV over the earlier positions only), the output head only where logits are used.
A backward pass costs twice its forward for a layer whose weights train (input and weight
gradients) and once for the head when only its input gradient is needed; layers below the
lowest trainable one need no backward at all.

    python -m benchmarks.machine_limit [--config configs/embedded/stage1.yaml] [--tokens 512]
    python -m benchmarks.machine_limit --quick     # a tiny shape set, seconds
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Dims:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, config) -> Dims:
        """From a Hugging Face decoder config (Llama, Qwen2 and their kin)."""
        heads = config.num_attention_heads
        return cls(
            hidden=config.hidden_size,
            intermediate=config.intermediate_size,
            layers=config.num_hidden_layers,
            heads=heads,
            kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
            vocab=config.vocab_size,
        )

    def layer_linears(self) -> list[tuple[int, int]]:
        """(in, out) of each linear layer of one decoder layer: q, k, v, o, gate, up, down."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return [(h, q), (h, kv), (h, kv), (q, h), (h, i), (h, i), (i, h)]

    def shapes(self) -> list[tuple[int, int]]:
        """Every distinct linear shape the model runs, the output head included."""
        return sorted(set(self.layer_linears())) + [(self.hidden, self.vocab)]


QUICK_DIMS = Dims(
    hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, head_dim=16, vocab=256
)


def forward_flops(
    dims: Dims, lengths: Sequence[int], head_tokens: int, shared_prefix: int = 0, causal=True
) -> dict[str, float]:
    """FLOPs of one forward over rows of `lengths` tokens: per decoder layer and for the head.

    `shared_prefix` tokens open every row and are computed once; `causal=False` counts the full
    attention square (what a FLOP counter sees of an unmasked matmul)."""
    tokens = sum(lengths) - shared_prefix * max(0, len(lengths) - 1)
    linear = 2 * tokens * sum(i * o for i, o in dims.layer_linears())
    pairs = sum(n * (n + 1) / 2 if causal else n * n for n in lengths)
    attention = 2 * 2 * pairs * dims.heads * dims.head_dim
    return {"layer": linear + attention, "head": 2 * head_tokens * dims.hidden * dims.vocab}


def update_flops(
    dims: Dims,
    lengths: Sequence[int],
    action_tokens: int,
    frozen_layers: int = 0,
    head_trainable: bool = False,
    shared_prefix: int = 0,
) -> float:
    """Model FLOPs of a forward + backward over the batch, logits at the action tokens only."""
    f = forward_flops(dims, lengths, action_tokens, shared_prefix)
    trained = max(0, dims.layers - frozen_layers)
    forward = dims.layers * f["layer"] + f["head"]
    backward = 2 * trained * f["layer"] + (2 if head_trainable else 1) * f["head"]
    return forward + backward


def generation_flops(dims: Dims, lengths: Sequence[int], sampled_tokens: int) -> float:
    """Model FLOPs of producing sequences of `lengths` tokens: each token passes the layers once
    (prompt, inserted passages and sampled tokens alike), the head runs for the sampled ones."""
    f = forward_flops(dims, lengths, sampled_tokens)
    return dims.layers * f["layer"] + f["head"]


def matmul_rate(
    shapes: Sequence[tuple[int, int]], tokens: int, dtype: torch.dtype, repeats: int = 3, iters=1
) -> float:
    """FLOP/s of `F.linear` over `tokens` rows at each (in, out) shape, median of `repeats`."""
    g = torch.Generator().manual_seed(0)
    pairs = [
        (torch.randn(tokens, i, generator=g).to(dtype), torch.randn(o, i, generator=g).to(dtype))
        for i, o in shapes
    ]
    flops = iters * sum(2 * tokens * i * o for i, o in shapes)
    for x, w in pairs:  # warm-up: kernel selection and packing happen on the first call
        F.linear(x, w)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for x, w in pairs:
            for _ in range(iters):
                F.linear(x, w)
        rates.append(flops / (time.perf_counter() - started))
    return statistics.median(rates)


def machine_limits(dims: Dims, tokens: int, repeats: int = 3, iters: int = 1) -> dict[str, float]:
    """{"bf16": FLOP/s, "fp32": FLOP/s} of matrix products at the model's shapes."""
    return {
        name: matmul_rate(dims.shapes(), tokens, dtype, repeats, iters)
        for name, dtype in DTYPES.items()
    }


def fastest(limits: dict[str, float]) -> str:
    """The machine's limit is its faster format: bf16 with AMX (1.5-1.8 vs 0.25 TFLOP/s on 2
    Xeon cores), fp32 without native bf16 (0.098 vs 0.016 on 2 AVX2 EPYC cores)."""
    return max(limits, key=limits.__getitem__)


def share_line(label: str, flops_per_s: float, limits: dict[str, float]) -> str:
    """One report line: model TFLOP/s, its share of each measured limit and of the faster."""
    shares = ", ".join(f"{v and flops_per_s / v:.1%} of {k}" for k, v in limits.items())
    best = fastest(limits)
    return (
        f"{label}: {flops_per_s / 1e12:.3f} model TFLOP/s ({shares} matmul limit; "
        f"{limits[best] and flops_per_s / limits[best]:.1%} of the machine's limit, {best})"
    )


def limits_line(limits: dict[str, float], tokens: int) -> str:
    rates = ", ".join(f"{k} {v / 1e12:.3f}" for k, v in limits.items())
    return f"matmul limit at the model's shapes, {tokens} rows (TFLOP/s, this run): {rates}"


def _dims_for(config_path: str) -> Dims:
    """The shapes of the config's model, from its config.json alone (no weights loaded)."""
    from transformers import AutoConfig

    from recipe.assets import resolve_model_path
    from recipe.config import load_config
    from recipe.schema import RunConfig

    cfg = load_config(RunConfig, config_path)
    try:
        config = AutoConfig.from_pretrained(
            resolve_model_path(cfg.model.path), gguf_file=cfg.model.gguf_file
        )
    except (OSError, ValueError) as e:
        raise SystemExit(
            f"machine_limit: model.path {cfg.model.path} of {config_path} has no model config "
            f"({type(e).__name__}); build it first (`make base` for the embedded setting) or "
            "pass --quick"
        ) from None
    return Dims.of(config)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/embedded/stage1.yaml", help="whose model shapes")
    p.add_argument("--tokens", type=int, default=512, help="rows of each matrix product")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    p.add_argument("--quick", action="store_true", help="tiny shapes, 64 rows, one repeat")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        dims, tokens, repeats = QUICK_DIMS, 64, 1
    else:
        dims, tokens, repeats = _dims_for(args.config), args.tokens, args.repeats
    limits = machine_limits(dims, tokens, repeats)
    print(f"shapes (in, out): {dims.shapes()}; torch threads {torch.get_num_threads()}")
    print(limits_line(limits, tokens))
    return limits


if __name__ == "__main__":
    main()
