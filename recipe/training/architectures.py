"""The shapes of a decoder-only transformer that the memory plan needs, from a Hugging Face
`config.json` or from a known architecture when the model folder is not on this machine yet.

Only the Llama / Qwen2 family is described (pre-norm RMSNorm, grouped-query attention, SwiGLU
MLP): the shapes decide the parameter count, the activations a token leaves per layer, the
vLLM KV cache a token takes and the vocabulary the output head projects to. Nothing here
imports torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Architecture:
    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool
    qkv_bias: bool  # Qwen2 has biases on q, k and v; Llama none

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    def layer_parameters(self) -> int:
        h, q, kv = self.hidden_size, self.q_dim, self.kv_dim
        attention = h * q + 2 * h * kv + q * h
        if self.qkv_bias:
            attention += q + 2 * kv
        mlp = 3 * h * self.intermediate_size
        return attention + mlp + 2 * h  # two RMSNorm weights

    def parameters(self) -> int:
        """Every parameter once (a tied output head shares the embedding's)."""
        embeddings = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else embeddings
        final_norm = self.hidden_size
        return embeddings + head + self.num_layers * self.layer_parameters() + final_norm

    def kv_bytes_per_token(self, element_bytes: int) -> int:
        """vLLM's cache for one token: keys and values of every layer."""
        return 2 * self.num_layers * self.kv_dim * element_bytes


def _qwen2(name, vocab, hidden, inter, layers, heads, kv_heads, tied) -> Architecture:
    return Architecture(
        name, vocab, hidden, inter, layers, heads, kv_heads, hidden // heads, tied, qkv_bias=True
    )


# The config.json values of the published checkpoints (Qwen2.5 model cards' files).
KNOWN = {
    a.name: a
    for a in (
        _qwen2("qwen2.5-0.5b", 151936, 896, 4864, 24, 14, 2, tied=True),
        _qwen2("qwen2.5-1.5b", 151936, 1536, 8960, 28, 12, 2, tied=True),
        _qwen2("qwen2.5-3b", 151936, 2048, 11008, 36, 16, 2, tied=True),
        _qwen2("qwen2.5-7b", 152064, 3584, 18944, 28, 28, 4, tied=False),
        _qwen2("qwen2.5-14b", 152064, 5120, 13824, 48, 40, 8, tied=False),
    )
}


def from_config_dict(config: dict, name: str = "config.json") -> Architecture:
    """The shapes of a Llama / Qwen2-style `config.json` (a multimodal one's `text_config`)."""
    config = config.get("text_config", config)
    try:
        heads = config["num_attention_heads"]
        hidden = config["hidden_size"]
        return Architecture(
            name=name,
            vocab_size=config["vocab_size"],
            hidden_size=hidden,
            intermediate_size=config["intermediate_size"],
            num_layers=config["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=config.get("num_key_value_heads") or heads,
            head_dim=config.get("head_dim") or hidden // heads,
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=bool(config.get("attention_bias", config.get("model_type") == "qwen2")),
        )
    except KeyError as e:
        raise ValueError(f"{name} has no {e.args[0]}: not a decoder the plan describes") from None


def resolve_architecture(model_path: str, known_name: str | None) -> Architecture:
    """`known_name` (a key of KNOWN) when given, else `model_path/config.json`."""
    if known_name is not None:
        if known_name not in KNOWN:
            raise ValueError(
                f"model.architecture {known_name!r} is not one of {', '.join(sorted(KNOWN))}"
            )
        return KNOWN[known_name]
    path = Path(model_path) / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        raise ValueError(
            f"model.path {model_path}: no readable config.json here; set model.architecture "
            f"to one of {', '.join(sorted(KNOWN))}"
        ) from None
    return from_config_dict(config, str(path))
