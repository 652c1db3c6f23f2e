"""Fixtures of the rollout tests: SmolLM2's real tokenizer and a tiny model built from a config."""

from __future__ import annotations

import pytest
import torch

from recipe.policy import load_tokenizer
from recipe.schema import ModelConfig


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run step by step: with two intra-op threads on a shared 2-core machine,
    thread hand-offs cost more than the arithmetic (measured 0.7 s vs 19 s for one rollout)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smollm2_tokenizer(request, smollm2_gguf_file):
    """SmolLM2's tokenizer. Reading it from the GGUF takes seconds, so it is saved once as
    tokenizer.json in pytest's cache folder and read from there afterwards."""
    from recipe.rollout_demo import smollm2_tokenizer as from_gguf

    folder = request.config.cache.mkdir("smollm2-tokenizer")
    if not (folder / "tokenizer.json").exists():
        from_gguf().save_pretrained(folder)
    return load_tokenizer(ModelConfig(path=str(folder)))


@pytest.fixture(scope="session")
def tiny_model(smollm2_tokenizer):
    from recipe.rollout_demo import tiny_policy

    return tiny_policy(smollm2_tokenizer, seed=0)
