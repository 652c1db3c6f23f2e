"""A tiny pair of worlds (about a second to build) for tests and quick debugging.

`tiny_config(out_dir)` is the shipped `configs/embedded/miniwiki.yaml` with every count shrunk
by command-line style overrides, so it exercises the same loading path as `make miniwiki`.
"""

from __future__ import annotations

from pathlib import Path

from miniwiki.config import MiniwikiConfig
from recipe.config import load_config

SHIPPED_YAML = Path(__file__).resolve().parents[1] / "configs" / "embedded" / "miniwiki.yaml"
TINY_ENTITIES = {"countries": 4, "cities": 20, "persons": 260, "films": 60, "bands": 20,
                 "companies": 25}  # fmt: skip
WARMUP_SCALE = 0.6
QUESTION_TYPES = ("hotpotqa.bridge", "hotpotqa.comparison", "twowiki.compositional",
                  "twowiki.inference", "twowiki.comparison", "twowiki.bridge_comparison")  # fmt: skip


def tiny_overrides(
    out_dir: str | Path, task_seed: int = 7, warmup_seed: int = 8, per_split: tuple = (12, 4, 4)
) -> list[str]:
    """Overrides for a tiny task world and a smaller warm-up world; `per_split` per type."""
    out = [f"out_dir={out_dir}", f"task.seed={task_seed}", f"warmup.seed={warmup_seed}"]
    for world, scale in (("task", 1.0), ("warmup", WARMUP_SCALE)):
        out += [f"{world}.entities.{k}={max(3, int(v * scale))}" for k, v in TINY_ENTITIES.items()]
        for qtype in QUESTION_TYPES:
            for split, n in zip(("train", "dev", "test"), per_split, strict=True):
                out.append(f"{world}.questions.{qtype}.{split}={n}")
    return out


def tiny_config(out_dir: str | Path, task_seed: int = 7, **kwargs) -> MiniwikiConfig:
    return load_config(MiniwikiConfig, SHIPPED_YAML, tiny_overrides(out_dir, task_seed, **kwargs))
