"""Fixtures of the filtering tests: the tiny filtering world (tests/data_filtering/filter_world.py)
built once per test run, and one torch thread for its tiny model (see tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.data_filtering.filter_world import build_demo_index, save_tiny_model


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread_per_module(one_torch_thread):
    yield


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("tiny_model"), smollm2_tokenizer)


@pytest.fixture(scope="session")
def demo_index(tmp_path_factory):
    return build_demo_index(tmp_path_factory.mktemp("demo_index"))
