"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recipe.assets import AssetNotInstalled, resolve_model_path, smollm2_gguf
from tests.loopback import LoopbackServer

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


@pytest.fixture(scope="session")
def smollm2_tokenizer(request, tmp_path_factory, smollm2_gguf_file):
    """SmolLM2's real tokenizer. Reading it from the GGUF takes seconds, so it is saved once as
    tokenizer.json in pytest's cache folder (a temporary folder when the cache is disabled)."""
    from demo.world import smollm2_tokenizer as from_gguf
    from recipe.policy import load_tokenizer
    from recipe.schema import ModelConfig

    cache = getattr(request.config, "cache", None)
    folder = (
        cache.mkdir("smollm2-tokenizer") if cache else tmp_path_factory.mktemp("smollm2-tokenizer")
    )
    if not (folder / "tokenizer.json").exists():
        from_gguf().save_pretrained(folder)
    return load_tokenizer(ModelConfig(path=str(folder)))


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run step by step: with two intra-op threads on a shared 2-core machine,
    thread hand-offs cost more than the arithmetic (measured 0.7 s vs 19 s for one rollout).
    Modules opt in with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def serve():
    """`serve(app)` runs a FastAPI app on loopback for the test; stopped afterwards."""
    servers: list[LoopbackServer] = []

    def start(app) -> LoopbackServer:
        servers.append(LoopbackServer(app))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()
