"""Load the policy model and its tokenizer from a Hugging Face folder (or a GGUF file in one)."""

from __future__ import annotations

from contextlib import contextmanager

from transformers import AutoModelForCausalLM, AutoTokenizer

from recipe.assets import resolve_model_path
from recipe.model_files import check_model_files
from recipe.precision import torch_dtype
from recipe.schema import ModelConfig


class PolicyLoadError(FileNotFoundError):
    """The model or tokenizer at `model.path` cannot be loaded: a missing or damaged folder, a
    hub id this machine cannot download, a file transformers cannot read. The message names the
    path; entry points report it in one line and exit 2, as for any missing input."""


@contextmanager
def _loading(model_cfg: ModelConfig):
    # transformers raises OSError for a missing folder or hub id and ValueError for a file it
    # cannot read; either is an input the user names, not a bug.
    try:
        yield
    except (OSError, ValueError) as e:
        raise PolicyLoadError(f"model.path {model_cfg.path}: {e}") from e


def load_tokenizer(model_cfg: ModelConfig):
    """The policy's tokenizer, padded on the left (batched generation appends on the right)."""
    with _loading(model_cfg):
        path = resolve_model_path(model_cfg.path)
        tokenizer = AutoTokenizer.from_pretrained(path, gguf_file=model_cfg.gguf_file)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        # Pads are masked out of attention and loss, so any existing token will do; EOS is the
        # usual choice and keeps the vocabulary (and the embedding matrix) unchanged.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_policy(model_cfg: ModelConfig):
    """(model, tokenizer) in eval mode with the configured dtype.

    transformers 5 takes `dtype=` (formerly `torch_dtype=`); `gguf_file=` dequantizes a GGUF
    checkpoint (needs the `gguf` package), which is how SmolLM2 ships in the embedded setting.
    """
    with _loading(model_cfg):
        path = resolve_model_path(model_cfg.path)
        check_model_files(path)  # a truncated weight file is named, not a loader traceback
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=torch_dtype(model_cfg.dtype), gguf_file=model_cfg.gguf_file
        )
    model.eval()
    tokenizer = load_tokenizer(model_cfg)
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer
