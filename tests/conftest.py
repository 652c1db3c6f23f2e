"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

from recipe.assets import AssetNotInstalled, resolve_model_path, smollm2_gguf

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "R1-Searcher"


@pytest.fixture(scope="session")
def r1searcher_data() -> Path:
    """The released R1-Searcher files (read-only); skips where ../shared is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_gguf_file() -> tuple[Path, str]:
    try:
        return smollm2_gguf()
    except AssetNotInstalled as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    try:
        return Path(resolve_model_path("all-MiniLM-L6-v2"))
    except AssetNotInstalled as e:
        pytest.skip(str(e))
