"""A stage config's rules that depend on more than the config: the rank count the launcher set,
the policy's layer count and whether optional packages the config asks for are installed. They
run when the config is read, before any model loads, so a bad value costs a second, not a model
load on every rank. This module imports nothing heavy
(no torch, transformers or DeepSpeed): the config error must come before those imports.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from recipe.assets import resolve_model_path
from recipe.config import ConfigError, FieldError
from recipe.schema import ModelConfig, RunConfig
from recipe.training.architectures import KNOWN
from recipe.training.run_settings import check_allow_list, run_settings


def world_size() -> int:
    """The rank count the launcher (torchrun, deepspeed) exports; 1 when run directly."""
    raw = os.environ.get("WORLD_SIZE", "1") or "1"
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"WORLD_SIZE={raw!r} in the environment is not a rank count") from None


def configured_layers(model: ModelConfig) -> int | None:
    """The decoder layer count in the model folder's config.json; None when it has none (a
    GGUF file, a hub id): the trainer checks the loaded model then."""
    if model.gguf_file:
        return None
    path = Path(resolve_model_path(model.path)) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    layers = config.get("num_hidden_layers", config.get("text_config", {}).get("num_hidden_layers"))
    return layers if isinstance(layers, int) else None


def check_frozen_layers(cfg: RunConfig, layers: int | None) -> None:
    if layers is not None and cfg.trainer.frozen_layers > layers:
        raise FieldError(
            ("trainer.frozen_layers", "model.path"),
            f"frozen_layers {cfg.trainer.frozen_layers} is more than the {layers} decoder "
            f"layers of {cfg.model.path}",
        )


def check_stage_config(cfg: RunConfig) -> None:
    """`parse_cli`'s check for the stage entry points (FieldError names the keys to blame)."""
    check_allow_list(cfg.trainer.resume_allow_changes, list(run_settings(cfg, [])))
    world = world_size()
    if world < 1:
        raise ConfigError(f"WORLD_SIZE={world} in the environment is not a rank count")
    if cfg.trainer.prompts_per_step % world:
        raise FieldError(
            "trainer.prompts_per_step",
            f"{cfg.trainer.prompts_per_step} questions do not split over WORLD_SIZE={world} "
            f"ranks (each question's samples stay on one rank); use a multiple of {world}",
        )
    check_frozen_layers(cfg, configured_layers(cfg.model))
    if cfg.logging.wandb and importlib.util.find_spec("wandb") is None:
        raise FieldError(
            "logging.wandb", "wandb is not installed: pip install -e '.[wandb]', or set it false"
        )
    if cfg.model.architecture is not None and cfg.model.architecture not in KNOWN:
        raise FieldError(
            "model.architecture",
            f"{cfg.model.architecture!r} is not a known architecture: {', '.join(sorted(KNOWN))}",
        )
