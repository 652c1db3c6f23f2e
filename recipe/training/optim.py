"""Which parameters train, the optimizer and the learning-rate schedule (cold start and RL)."""

from __future__ import annotations

import torch


def freeze_lower(model, n_layers: int) -> None:
    """Fix the embeddings and the lowest `n_layers` decoder layers (0: train everything).

    Nothing below the lowest trained layer needs a gradient, so backward stops there and the
    step runs faster (`benchmarks/coldstart_step.py` measures by how much); the fixed layers
    also keep the pretrained model's reading of text as it was. With tied embeddings the output
    head is the input embedding, so it is fixed too.
    """
    if n_layers <= 0:
        return
    layers = model.get_decoder().layers
    if n_layers > len(layers):
        raise ValueError(f"frozen_layers={n_layers}, but the model has {len(layers)} layers")
    model.get_input_embeddings().requires_grad_(False)
    for layer in layers[:n_layers]:
        layer.requires_grad_(False)


def trainable_parameters(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(
    params,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """torch's AdamW: DeepSpeed's client optimizer too (its fused CPU Adam compiles for
    minutes, and `foreach` AdamW is as fast on these sizes)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas, eps=eps)


def lr_factor(step: int, warmup: int, total: int, decay: bool) -> float:
    """Linear warm-up over `warmup` steps, then constant or linear decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    if not decay:
        return 1.0
    return max(0.0, (total - step) / max(1, total - warmup))


def build_schedule(optimizer, warmup: int, total: int, decay: bool):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, total, decay)
    )
