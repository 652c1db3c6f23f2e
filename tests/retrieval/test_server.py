"""Both HTTP shapes, health, limits and micro-batching against a real uvicorn server."""

from __future__ import annotations

import platform
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.server import SERVICE_MALLOC_ARENAS, create_app, limit_malloc_arenas
from recipe.schema import RetrieverConfig

from .conftest import FACTS, passages_of


class SlowRetriever:
    """A real retriever that takes `delay_s` per call, so requests queue up behind it."""

    def __init__(self, inner, delay_s: float) -> None:
        self.inner, self.delay_s, self.calls = inner, delay_s, []

    def __len__(self) -> int:
        return len(self.inner)

    def search(self, queries, k):
        self.calls.append(list(queries))
        time.sleep(self.delay_s)
        return self.inner.search(queries, k)


def test_search_r1_and_r1_searcher_shapes(dense_retriever, dense_cfg, serve):
    server = serve(create_app(dense_retriever, dense_cfg))
    queries = ["capital of Germany", "highest mountain"]
    expected = dense_retriever.search(queries, 2)
    with httpx.Client(base_url=server.url, timeout=30) as client:
        scored = client.post(
            "/retrieve", json={"queries": queries, "topk": 2, "return_scores": True}
        )
        assert scored.status_code == 200
        result = scored.json()["result"]
        assert [[e["document"]["id"] for e in r] for r in result] == [
            [h.passage.id for h in hs] for hs in expected
        ]
        assert result[0][0]["document"]["contents"] == expected[0][0].passage.contents
        assert abs(result[0][0]["score"] - expected[0][0].score) < 1e-5

        plain = client.post("/retrieve", json={"queries": queries, "topk": 2}).json()["result"]
        assert plain == [[e["document"] for e in r] for r in result]

        r1 = client.post("/queries", json={"queries": queries, "k": 2}).json()
        assert r1["queries"] == queries
        assert r1["answers"] == [[h.passage.contents for h in hs] for hs in expected]
        assert r1["answers"][0][0].startswith("Berlin\n")

        default_k = client.post("/queries", json={"queries": ["Tokyo"]}).json()["answers"]
        assert len(default_k[0]) == dense_cfg.topk

        health = client.get("/health").json()
        assert health["status"] == "ok" and health["passages"] == len(FACTS)


def test_limits_answer_4xx_with_a_message(serve):
    cfg = RetrieverConfig(kind="bm25", max_queries_per_request=3, max_query_chars=20, max_topk=5)
    server = serve(create_app(BM25Retriever(passages_of()), cfg))
    with httpx.Client(base_url=server.url, timeout=30) as client:
        too_many = client.post("/retrieve", json={"queries": ["a", "b", "c", "d"]})
        assert too_many.status_code == 413
        assert "max_queries_per_request" in too_many.json()["detail"]
        too_long = client.post("/queries", json={"queries": ["ok", "x" * 21], "k": 1})
        assert too_long.status_code == 422 and "query 1 has 21 characters" in too_long.text
        bad_k = client.post("/retrieve", json={"queries": ["ok"], "topk": 6})
        assert bad_k.status_code == 422 and "max_topk" in bad_k.text
        malformed = client.post("/retrieve", json={"queries": "not a list"})
        assert malformed.status_code == 422
        fine = client.post("/retrieve", json={"queries": ["x" * 20, "Paris"], "topk": 5})
        assert fine.status_code == 200 and [len(r) for r in fine.json()["result"]] == [5, 5]
        empty = client.post("/retrieve", json={"queries": []})
        assert empty.status_code == 200 and empty.json() == {"result": []}


def test_concurrent_requests_are_batched(serve):
    slow = SlowRetriever(BM25Retriever(passages_of()), delay_s=0.5)
    cfg = replace(RetrieverConfig(), kind="bm25")
    server = serve(create_app(slow, cfg))
    titles = [title for title, _ in FACTS[1:9]]
    answers: dict[str, str] = {}

    def ask(title: str) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = {"queries": [title, "Paris"], "k": 1}
            answers[title] = client.post("/queries", json=body).json()["answers"][0][0]

    threads = [threading.Thread(target=ask, args=(t,)) for t in titles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answers[t].startswith(f"{t}\n") for t in titles)
    # Requests that queued while a batch ran went into one call, with "Paris" searched once.
    assert len(slow.calls) < len(titles)
    assert all(call.count("Paris") == 1 for call in slow.calls)
    assert sorted(q for call in slow.calls for q in call if q != "Paris") == sorted(titles)


# Valid JSON whose string is a lone surrogate: it has no UTF-8 form, so the encoder's (Rust)
# tokenizer raises on it and a reply that echoes it cannot be written.
LONE_SURROGATE_BODY = b'{"queries": ["Paris", "\\ud800 capital"], "k": 1, "topk": 1}'
JSON_HEADERS = {"content-type": "application/json"}


def test_a_query_with_no_utf8_form_answers_422(dense_retriever, dense_cfg, serve):
    bm25_cfg = RetrieverConfig(kind="bm25")
    for retriever, cfg in [(dense_retriever, dense_cfg), (BM25Retriever(passages_of()), bm25_cfg)]:
        server = serve(create_app(retriever, cfg))
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for route in ("/queries", "/retrieve"):
                reply = client.post(route, content=LONE_SURROGATE_BODY, headers=JSON_HEADERS)
                assert reply.status_code == 422, (cfg.kind, route, reply.text)
                assert "query 1 is not valid Unicode text" in reply.json()["detail"]
            fine = client.post("/queries", json={"queries": ["Paris"], "k": 1}).json()
            assert fine["answers"][0][0].startswith("Paris\n")


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc arenas")
def test_the_service_caps_malloc_arenas_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(shutil.which("make") is None, reason="make")
def test_make_serve_retriever_starts_the_service_with_two_malloc_arenas():
    repo = Path(__file__).resolve().parents[2]
    plan = subprocess.run(
        ["make", "-n", "serve-retriever"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    [command] = [line for line in plan.splitlines() if "-m recipe.retrieval.server" in line]
    assert f"MALLOC_ARENA_MAX={SERVICE_MALLOC_ARENAS} " in command
