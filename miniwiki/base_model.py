"""SmolLM2-135M-Instruct from its packaged GGUF file to a plain Hugging Face folder.

transformers dequantizes a GGUF checkpoint at load time (`gguf_file=`, needs the `gguf`
package), but the loaded model still carries the GGUF quantization config and cannot be saved
as a normal checkpoint; its weights are therefore copied into a model built from the same
architecture config, which saves as an ordinary folder every later step loads with
`from_pretrained(path)`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from recipe.assets import smollm2_gguf
from recipe.atomic import atomic_dir
from recipe.precision import torch_dtype

CONVERTED_MARKER = "model.safetensors"


def plain_copy(gguf_model, dtype: torch.dtype):
    """A quantization-free model with the same architecture and weights."""
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(gguf_model.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    return model


def convert_smollm2(out_dir: str | Path, dtype: str = "float32") -> Path:
    """Write SmolLM2-135M-Instruct (model + tokenizer) to `out_dir`; skip if already there."""
    out_dir = Path(out_dir)
    if (out_dir / CONVERTED_MARKER).exists():
        return out_dir
    folder, gguf_file = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=gguf_file, dtype=torch.float32
    )
    model = plain_copy(gguf_model, torch_dtype(dtype))
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out_dir
