"""The client: HTTP timeouts and retries against real loopback servers, and the LRU cache."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from recipe.config import ConfigError, load_config
from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.client import (
    CachedRetriever,
    HttpRetriever,
    RetrievalRequestError,
    RetrievalResponseError,
    RetrievalUnavailable,
    build_retriever,
)
from recipe.retrieval.index import build_index
from recipe.retrieval.server import create_app
from recipe.schema import RetrieverConfig, RunConfig
from tests.loopback import TricklingServer, closed_port

from .conftest import passages_of

BM25_CFG = RetrieverConfig(kind="bm25", max_queries_per_request=4)


class CountingRetriever:
    """A real retriever that records every batch it was asked for."""

    def __init__(self, inner) -> None:
        self.inner, self.calls = inner, []

    def __len__(self) -> int:
        return len(self.inner)

    def search(self, queries, k):
        self.calls.append((list(queries), k))
        return self.inner.search(queries, k)


class SlowRetriever(CountingRetriever):
    def search(self, queries, k):
        time.sleep(2.0)
        return super().search(queries, k)


def failing_first(app, n: int):
    """The real service app, answering 503 to its first `n` requests."""
    seen = {"requests": 0}

    @app.middleware("http")
    async def fail_first(request: Request, call_next):
        seen["requests"] += 1
        if seen["requests"] <= n:
            return JSONResponse({"detail": "warming up"}, status_code=503)
        return await call_next(request)

    return app, seen


def http(url, **overrides) -> HttpRetriever:
    options = dict(timeout_s=5.0, max_retries=2, backoff_s=0.01, max_queries_per_request=4)
    return HttpRetriever(url, **(options | overrides))


def test_http_results_equal_in_process(dense_retriever, dense_cfg, serve):
    server = serve(create_app(dense_retriever, replace(dense_cfg, max_queries_per_request=4)))
    client = http(server.url)
    queries = ["capital of Spain", "gas giant", "lava", "Fleming", "Seine", "hive", "64 squares"]
    remote = client.search(queries, 3)  # 7 queries: two requests of at most 4
    local = dense_retriever.search(queries, 3)
    assert [[h.passage for h in hs] for hs in remote] == [[h.passage for h in hs] for hs in local]
    np.testing.assert_allclose(
        [[h.score for h in hs] for hs in remote], [[h.score for h in hs] for hs in local], atol=1e-5
    )


def test_unreachable_service_fails_fast_with_a_clear_message():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(RetrievalUnavailable, match="failed 3 attempts.*make serve-retriever"):
        http(url, max_retries=2)
    client = http(url, health_check=False, max_retries=1)
    with pytest.raises(RetrievalUnavailable, match="ConnectError"):
        client.search(["anything"], 3)
    assert client.requests == 2


def test_retries_through_5xx(serve):
    app, seen = failing_first(create_app(BM25Retriever(passages_of()), BM25_CFG), n=2)
    server = serve(app)
    client = http(server.url, max_retries=2)  # the health check takes the two failures
    assert seen["requests"] == 3 and client.requests == 3
    assert client.search(["Danube river"], 1)[0][0].passage.title == "Danube"

    app, seen = failing_first(create_app(BM25Retriever(passages_of()), BM25_CFG), n=5)
    server = serve(app)
    with pytest.raises(RetrievalUnavailable, match="HTTP 503"):
        http(server.url, max_retries=1)
    assert seen["requests"] == 2


def test_slow_service_times_out(serve):
    slow = SlowRetriever(BM25Retriever(passages_of()))
    server = serve(create_app(slow, BM25_CFG))
    client = http(server.url, timeout_s=0.3, max_retries=1)  # /health is not slow
    with pytest.raises(RetrievalUnavailable, match="no complete reply within 0.3 s"):
        client.search(["Paris"], 1)
    assert client.requests == 3


def test_refused_request_is_not_retried(serve):
    cfg = replace(BM25_CFG, max_topk=5)
    app, seen = failing_first(create_app(BM25Retriever(passages_of()), cfg), n=0)
    client = http(serve(app).url)
    with pytest.raises(RetrievalRequestError, match="HTTP 422.*max_topk"):
        client.search(["Paris"], 6)
    assert seen["requests"] == 2  # the health check and one refused search


def test_cache_serves_repeats_without_calling_the_backend():
    backend = CountingRetriever(BM25Retriever(passages_of()))
    cached = CachedRetriever(backend, cache_size=3)
    first = cached.search(["Paris", "Rome", "Paris"], 2)
    assert backend.calls == [(["Paris", "Rome"], 2)]  # one call per turn, deduplicated
    assert first[0] == first[2] and first[0][0].passage.title == "Paris"
    assert cached.search(["Rome", "Paris"], 2) == [first[1], first[0]]
    assert len(backend.calls) == 1 and cached.hits == 3 and cached.misses == 2
    cached.search(["Paris"], 1)  # another k is another entry
    assert backend.calls[-1] == (["Paris"], 1)
    cached.search(["Tokyo", "Chess"], 2)  # evicts the least recently used: ("Rome", 2)
    cached.search(["Rome", "Tokyo"], 2)
    assert backend.calls[-1] == (["Rome"], 2)
    assert cached.search(["Jupiter"], 2) == backend.inner.search(["Jupiter"], 2)


def test_cache_size_zero_disables_caching_but_still_batches():
    backend = CountingRetriever(BM25Retriever(passages_of()))
    cached = CachedRetriever(backend, cache_size=0)
    cached.search(["Paris", "Paris", "Rome"], 2)
    cached.search(["Paris"], 2)
    assert backend.calls == [(["Paris", "Rome"], 2), (["Paris"], 2)]
    assert len(cached.cache) == 0


def test_build_retriever_in_process_and_http(bm25_cfg, serve):
    build_index(bm25_cfg, progress=False)
    local = build_retriever(bm25_cfg)
    assert isinstance(local, CachedRetriever) and local.cache_size == bm25_cfg.cache_size
    server = serve(create_app(local.inner, bm25_cfg))
    remote = build_retriever(replace(bm25_cfg, url=server.url))
    assert isinstance(remote.inner, HttpRetriever)
    queries = ["capital of Italy", "keyboard instrument"]
    assert [[h.passage for h in hs] for hs in remote.search(queries, 3)] == [
        [h.passage for h in hs] for hs in local.search(queries, 3)
    ]


# ---------------------------------------------------------------- hostile and broken servers


BODY = b'{"status": "ok"}' + b" " * 400
TRICKLES = {
    "status_line": b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 400 + b"\r\n\r\n",
    "body": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY,
}


@pytest.mark.parametrize("part", sorted(TRICKLES))
def test_a_trickled_reply_is_cut_at_timeout_s_at_start_up_and_per_search(part):
    # httpx's timeout bounds each read; a byte every 20 ms never trips a 0.3 s read timeout, so
    # before the whole-request bound the client read all ~420 bytes (8 s) per attempt.
    server = TricklingServer(TRICKLES[part])
    try:
        with pytest.raises(RetrievalUnavailable, match="no complete reply within 0.3 s"):
            http(server.url, timeout_s=0.3, max_retries=1)
        client = http(server.url, timeout_s=0.3, max_retries=1, health_check=False)
        with pytest.raises(RetrievalUnavailable, match="failed 2 attempts"):
            client.search(["Paris"], 1)
        client.close()
    finally:
        server.close()
    assert len(server.sent) == 4  # two attempts each
    assert max(server.sent) < len(TRICKLES[part]) // 2, server.sent


def answering(health: object, retrieve: object):
    """A FastAPI app that answers 200 with the given bodies (a str is sent as plain text)."""
    from fastapi import FastAPI
    from fastapi.responses import PlainTextResponse

    app = FastAPI()

    def reply(body):
        return PlainTextResponse(body) if isinstance(body, str) else JSONResponse(body)

    app.get("/health")(lambda: reply(health))
    app.post("/retrieve")(lambda: reply(retrieve))
    return app


def test_a_200_that_is_not_json_names_the_url_and_what_came_back(serve):
    server = serve(answering("<html>welcome</html>", {}))
    with pytest.raises(
        RetrievalResponseError, match=r"answered 200 with '<html>welcome.*not a JSON"
    ):
        http(server.url)


@pytest.mark.parametrize(
    "body",
    [
        {"answers": []},  # R1-Searcher's /queries shape, not /retrieve's
        {"result": [[{"document": {"id": "d0"}, "score": 1.0}]]},  # no contents
        {"result": [[{"document": {"id": "d0", "contents": "T\nx"}}]]},  # no score
        {"result": []},  # fewer lists than queries
        {"result": "nothing"},
    ],
)
def test_a_200_of_the_wrong_shape_is_a_response_error(serve, body):
    client = http(serve(answering({"status": "ok"}, body)).url, max_retries=0)
    with pytest.raises(RetrievalResponseError, match="not the service's shape"):
        client.search(["Paris"], 1)
    assert client.requests == 2  # not retried: the same server would answer the same


def test_negative_retries_are_refused_in_the_config_and_by_the_client():
    with pytest.raises(
        ConfigError, match=r"retriever.max_retries \(from command line\): must be >= 0"
    ):
        load_config(RunConfig, overrides=["retriever.max_retries=-1"])
    with pytest.raises(
        ConfigError, match=r"retriever.timeout_s \(from command line\): must be > 0"
    ):
        load_config(RunConfig, overrides=["retriever.timeout_s=0"])
    with pytest.raises(ValueError, match="max_retries >= 0"):
        http("http://127.0.0.1:1", max_retries=-1, health_check=False)


def test_an_overlong_query_gets_the_same_hits_on_both_routes(bm25_cfg, serve):
    # The service refuses queries over max_query_chars (422); before, the HTTP route ended the
    # rollout turn with that error while the in-process route searched the whole text.
    build_index(bm25_cfg, progress=False)
    local = build_retriever(bm25_cfg)
    server = serve(create_app(local.inner, bm25_cfg))
    remote = build_retriever(replace(bm25_cfg, url=server.url))
    long_query = "capital of Italy " + "filler " * 1000
    assert len(long_query) > bm25_cfg.max_query_chars
    assert [[h.passage for h in hs] for hs in remote.search([long_query], 3)] == [
        [h.passage for h in hs] for hs in local.search([long_query], 3)
    ]
    cut = long_query[: bm25_cfg.max_query_chars]
    assert [h.passage for h in local.inner.search([cut], 3)[0]] == [
        h.passage for h in local.search([long_query], 3)[0]
    ]


def test_the_client_cuts_queries_to_the_limit_the_service_reports(serve):
    cfg = replace(BM25_CFG, max_query_chars=10)
    client = http(serve(create_app(BM25Retriever(passages_of()), cfg)).url)
    assert client.server_limits["max_query_chars"] == 10
    assert client.search(["Danube river and much more text"], 1)[0][0].passage.title == "Danube"
