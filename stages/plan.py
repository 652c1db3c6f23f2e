"""The memory plan of a stage config: one row per resident of a GPU in the rollout and the
update phase, then `peak per GPU X GB of G GB: fits` (exit 0) or `...: does not fit; lower
<settings>` (exit 2).

    python -m stages.plan --config configs/paper/stage2.yaml [--gpus 8] [--gpu-memory-gb 80]
        [--colocated-index-gb 43] [key.path=value ...]

`--gpus` is the rank count (one rank a GPU, all nodes together: ZeRO partitions over them);
`--colocated-index-gb` is the index a retrieval service keeps on the same GPUs (the paper's
fp16 flat KILT index: 43 GB, spread over them). The stage entry points run the same plan at
start-up on GPUs and refuse a config that does not fit. Nothing heavy is imported here.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from recipe.config import parse_cli
from recipe.schema import RunConfig
from recipe.training.memory_plan import GB, MemoryPlan, plan_for_config
from stages.config_checks import world_size

DEFAULT_CONFIG = "configs/paper/stage2.yaml"
FLAGS = {"--gpus": int, "--gpu-memory-gb": float, "--colocated-index-gb": float}
USAGE = (
    "usage: python -m stages.plan [--config FILE] [--gpus N] [--gpu-memory-gb G] "
    "[--colocated-index-gb I] [section.key=value ...]"
)


def split_flags(argv: Sequence[str]) -> tuple[dict, list[str]]:
    """The plan's own flags (`--gpus 8` or `--gpus=8`), and the rest for the config parser."""
    flags, rest, i = {}, [], 0
    while i < len(argv):
        name, _, value = argv[i].partition("=")
        if name in FLAGS:
            if not value:
                if i + 1 >= len(argv):
                    raise ValueError(f"{name} needs a value")
                value, i = argv[i + 1], i + 1
            try:
                flags[name] = FLAGS[name](value)
            except ValueError:
                raise ValueError(f"{name} {value!r} is not a number") from None
            if flags[name] <= 0 and name != "--colocated-index-gb":
                raise ValueError(f"{name} must be positive")
        else:
            rest.append(argv[i])
        i += 1
    return flags, rest


def plan_refusal(plan: MemoryPlan) -> str | None:
    """The one line a stage prints when it refuses to start; None when the plan fits."""
    return None if plan.fits() else f"memory plan: {plan.verdict()} (python -m stages.plan)"


def startup_refusal(cfg: RunConfig, gpus: int, gpu_bytes: int) -> str | None:
    """The stage's check before loading anything: the refusal line, or None to go on (also
    when the shapes are unknown: a note says the plan was skipped)."""
    try:
        plan = plan_for_config(cfg, gpus, gpu_bytes)
    except ValueError as e:
        print(f"memory plan skipped: {e}", file=sys.stderr)
        return None
    return plan_refusal(plan)


def gpu_startup_refusal(cfg: RunConfig) -> str | None:
    """`startup_refusal` on this rank's GPU, with one GPU a rank (`WORLD_SIZE` of them); None
    without a GPU (CPU runs are not planned)."""
    import torch

    if not torch.cuda.is_available():
        return None
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    gpu_bytes = torch.cuda.get_device_properties(local).total_memory
    return startup_refusal(cfg, world_size(), gpu_bytes)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv):
        print(USAGE + "\n" + __doc__.split("\n\n", 2)[-1].strip())
    try:
        flags, rest = split_flags(argv)
    except ValueError as e:
        print(f"stages.plan: {e}\n{USAGE}", file=sys.stderr)
        return 2
    cfg = parse_cli(RunConfig, rest, default=DEFAULT_CONFIG)
    index = flags.get("--colocated-index-gb")
    try:
        plan = plan_for_config(
            cfg,
            gpus=flags.get("--gpus", 8),
            gpu_bytes=int(flags.get("--gpu-memory-gb", 80) * GB),
            colocated_index_bytes=None if index is None else int(index * GB),
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"stages.plan: {e}", file=sys.stderr)
        return 2
    print(plan.table())
    return 0 if plan.fits() else 2


if __name__ == "__main__":
    sys.exit(main())
