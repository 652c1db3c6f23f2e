"""The client against a server that speaks only Search-R1's protocol (its retrieval_server.py):
`POST /retrieve` with {"queries", "topk", "return_scores"}, no `GET /health`, and BM25
documents of {"title", "text", "contents"} without an id."""

from __future__ import annotations

from dataclasses import replace

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.client import (
    HttpRetriever,
    RetrievalCheckFailed,
    build_retriever,
    content_id,
)
from recipe.schema import RetrieverConfig

from .conftest import passages_of


class QueryRequest(BaseModel):
    queries: list[str]
    topk: int | None = None
    return_scores: bool = False


def searchr1_app(retriever, default_topk: int = 3) -> FastAPI:
    """Search-R1's retrieval server reduced to its protocol, over a real BM25 index."""
    app = FastAPI()
    app.state.requests = []

    @app.post("/retrieve")
    def retrieve(request: QueryRequest) -> dict:
        app.state.requests.append(request.model_dump())
        results = retriever.search(request.queries, request.topk or default_topk)
        resp = []
        for hits in results:
            docs = [
                {"title": h.passage.title, "text": h.passage.text, "contents": h.passage.contents}
                for h in hits
            ]
            if request.return_scores:
                resp.append(
                    [{"document": d, "score": h.score} for d, h in zip(docs, hits, strict=True)]
                )
            else:
                resp.append(docs)
        return {"result": resp}

    return app


def http(url: str, **overrides) -> HttpRetriever:
    options = dict(timeout_s=5.0, max_retries=0, backoff_s=0.01, max_queries_per_request=4)
    return HttpRetriever(url, **(options | overrides))


def test_a_searchr1_server_passes_the_start_up_check_and_serves_hits_without_ids(serve):
    bm25 = BM25Retriever(passages_of())
    app = searchr1_app(bm25)
    server = serve(app)
    client = http(server.url)  # health_check on: no /health there, a probe query instead
    assert len(app.state.requests) == 1 and app.state.requests[0]["topk"] == 1
    queries = ["capital of Japan", "river through Vienna"]
    got = client.search(queries, 2)
    want = bm25.search(queries, 2)
    for hits, expected in zip(got, want, strict=True):
        assert [(h.passage.title, h.passage.text) for h in hits] == [
            (e.passage.title, e.passage.text) for e in expected
        ]
        assert [h.score for h in hits] == pytest.approx([e.score for e in expected])
        # The id is derived from the content: stable across replies, distinct per passage.
        assert [h.passage.id for h in hits] == [content_id(e.passage.contents) for e in expected]
    assert client.search(queries[:1], 2)[0][0].passage.id == got[0][0].passage.id
    assert len({h.passage.id for hits in got for h in hits}) == 4
    client.close()


def test_the_configured_retriever_runs_against_a_searchr1_server(serve):
    server = serve(searchr1_app(BM25Retriever(passages_of())))
    cfg = replace(RetrieverConfig(), url=server.url, max_retries=0, timeout_s=5.0)
    retriever = build_retriever(cfg)
    [hits] = retriever.search(["Who wrote Hamlet?"], 3)
    assert hits[0].passage.title == "Hamlet"
    retriever.inner.close()


def test_a_server_with_neither_health_nor_a_working_probe_names_the_setting(serve):
    app = FastAPI()
    app.post("/search")(lambda: {"result": []})  # another service's route: /retrieve is a 404
    server = serve(app)
    with pytest.raises(RetrievalCheckFailed) as error:
        http(server.url)
    message = str(error.value)
    assert "no GET /health and a probe query failed" in message
    assert "retriever.health_check=false" in message
    http(server.url, health_check=False).close()  # the named way out starts
