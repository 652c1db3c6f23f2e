"""Fixtures of the rollout tests: a tiny model built from a config over SmolLM2's tokenizer."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread_per_module(one_torch_thread):
    """Every rollout test module runs tiny models with one torch thread (see tests/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def tiny_model(smollm2_tokenizer):
    from demo.world import tiny_policy

    return tiny_policy(smollm2_tokenizer, seed=0)
