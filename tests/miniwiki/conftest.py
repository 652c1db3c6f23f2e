"""Small worlds built once per test run (a few hundred entities: about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniwiki.build import BuiltWorld, build, build_pair
from miniwiki.config import MiniwikiConfig
from miniwiki.presets import tiny_config


@pytest.fixture(scope="session")
def small_cfg(tmp_path_factory) -> MiniwikiConfig:
    return tiny_config(tmp_path_factory.mktemp("miniwiki"))


@pytest.fixture(scope="session")
def small_pair(small_cfg) -> tuple[BuiltWorld, BuiltWorld]:
    return build_pair(small_cfg)


@pytest.fixture(scope="session")
def small_built_dir(small_cfg) -> Path:
    """The small pair written to disk by the real build (files as `make miniwiki` writes)."""
    build(small_cfg)
    return Path(small_cfg.out_dir)
