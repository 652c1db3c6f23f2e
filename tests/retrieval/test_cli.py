"""The two entry points as a user runs them: build an index, serve it, query both routes."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from recipe.retrieval.build_index import main as build_main
from recipe.retrieval.client import build_retriever
from recipe.retrieval.manifest import read_manifest

from .test_client import closed_port

STARTUP_TIMEOUT_S = 60.0


@pytest.fixture
def served_bm25(bm25_cfg, tmp_path):
    """`python -m recipe.retrieval.server` in its own process over a freshly built index."""
    overrides = [
        "retriever.kind=bm25",
        f"retriever.corpus={bm25_cfg.corpus}",
        f"retriever.index_dir={bm25_cfg.index_dir}",
    ]
    build_main(overrides)
    port = closed_port()
    command = [sys.executable, "-m", "recipe.retrieval.server", *overrides]
    process = subprocess.Popen(command + [f"retriever.port={port}"])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                httpx.get(f"{url}/health", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_build_serve_and_query_both_routes(bm25_cfg, served_bm25):
    assert read_manifest(bm25_cfg.index_dir)["count"] == 16
    local = build_retriever(bm25_cfg)
    remote = build_retriever(replace(bm25_cfg, url=served_bm25))
    queries = ["Which city is the capital of Spain?", "Who found penicillin?"]
    assert [[h.passage.title for h in hs] for hs in remote.search(queries, 2)] == [
        [h.passage.title for h in hs] for hs in local.search(queries, 2)
    ]
    assert remote.search(queries, 1)[0][0].passage.title == "Madrid"
    body = {"queries": queries, "k": 1}
    answers = httpx.post(f"{served_bm25}/queries", json=body, timeout=10).json()["answers"]
    assert answers[1][0].startswith("Penicillin\n")
    health = httpx.get(f"{served_bm25}/health", timeout=10).json()
    assert health["passages"] == 16 and health["kind"] == "bm25"
