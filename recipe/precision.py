"""Which floating-point format pays on this machine: `model.dtype: auto`, `trainer.autocast_bf16: auto`.

bf16 halves the bytes a weight takes, but it is only faster where the hardware multiplies bf16
natively: CUDA GPUs from Ampere on, and CPUs with AMX or AVX512-BF16. Elsewhere PyTorch converts
every bf16 operand to fp32 inside the matrix product, and the conversion costs more than the
product: on a 2-core AVX2 CPU (AMD EPYC) `python -m benchmarks.machine_limit` measured 0.016
TFLOP/s in bf16 against 0.098 in fp32 at the model's shapes, while on a 2-core Xeon with AMX bf16
reached 1.5-1.8 and fp32 about 0.25 (docs/results.md). `auto` therefore picks bf16 exactly where
it is native, fp32 everywhere else; an explicit value is always kept.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

AUTO = "auto"
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def _torch():
    """torch, imported on first use: the entry points check configs before it loads."""
    return importlib.import_module("torch")


def bf16_is_native(device: str = "cpu") -> bool:
    """True when `device` ("cpu" or "cuda") multiplies bf16 matrices in hardware."""
    torch = _torch()
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def default_device() -> str:
    return "cuda" if _torch().cuda.is_available() else "cpu"


def resolve_dtype(name: str, device: str | None = None) -> str:
    """`name` as a concrete dtype name: "auto" becomes "bfloat16" where bf16 is native on
    `device` (default: CUDA when there is a GPU, else the CPU), "float32" elsewhere."""
    if name != AUTO:
        return name
    return "bfloat16" if bf16_is_native(device or default_device()) else "float32"


def torch_dtype(name: str, device: str | None = None) -> torch.dtype:
    return getattr(_torch(), resolve_dtype(name, device))


def autocast_enabled(setting: bool | str, device: str) -> bool:
    """`trainer.autocast_bf16` on `device`: True/False as given, "auto" where bf16 is native."""
    if setting == AUTO:
        return bf16_is_native(device)
    return bool(setting)


def describe(device: str) -> str:
    """One line for a run's log: what the hardware offers and so what `auto` means here."""
    if device == "cuda":
        native = bf16_is_native("cuda")
        what = "a CUDA GPU " + ("with" if native else "without") + " bf16 support"
    else:
        native = bf16_is_native("cpu")
        kernels = _torch().backends.cpu.get_cpu_capability()
        what = f"a CPU with {kernels} kernels" + (
            " and native bf16 (AMX or AVX512-BF16)" if native else " and no native bf16"
        )
    return f"precision: {what}: auto means {'bfloat16' if native else 'float32'}"
