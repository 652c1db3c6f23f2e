"""The retrieval service: `python -m recipe.retrieval.server --config FILE [overrides]`.

Endpoints
- `POST /retrieve`, Search-R1's shape (what veRL's search tool calls):
  `{"queries": [...], "topk": 3, "return_scores": true}` ->
  `{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`
  (without scores each entry is the document itself).
- `POST /queries`, R1-Searcher's shape: `{"queries": [...], "k": 3}` ->
  `{"queries": [...], "answers": [["Title\\ntext", ...], ...]}`.
- `GET /health`: `{"status": "ok", "kind", "passages", "max_query_chars", ...}`.

Requests over `retriever.max_queries_per_request` queries answer 413; a query longer than
`retriever.max_query_chars` characters, or a k outside 1..`retriever.max_topk`, answers 422,
and so does a query that is not valid Unicode text (a lone surrogate from a JSON escape) or that
the retriever cannot take (`QueryRejected`: one the encoder's tokenizer raises on). Searches go
through `MicroBatcher`, off the event loop; a batch that fails is retried request by request,
so one bad request does not fail the others.

`main` exits 2 with one line on stderr for a user's mistake (no index, an index of other
inputs, an encoder that does not load), as it does for a bad config. It caps glibc's malloc
arenas at `SERVICE_MALLOC_ARENAS` unless `MALLOC_ARENA_MAX` is set: with glibc's default (up to
8 per core, one per thread that meets contention) the dense service's resident memory crept up
250-430 MB over bursts of requests, and stayed flat with two (`make serve-retriever` sets the
variable itself).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from recipe.config import parse_cli
from recipe.exit_status import run_reporting
from recipe.retrieval.base import Hit, QueryRejected, Retriever
from recipe.retrieval.batching import MicroBatcher
from recipe.schema import RetrieverConfig, RunConfig

log = logging.getLogger(__name__)
SERVICE_MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's malloc.h


def limit_malloc_arenas(arenas: int = SERVICE_MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for the rest of this process (arenas are made lazily, so a cap
    set before the service's threads start holds for them); True when set. `MALLOC_ARENA_MAX`
    in the environment wins, and a C library other than glibc is left as it is."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return mallopt(M_ARENA_MAX, arenas) == 1


class RetrieveRequest(BaseModel):
    queries: list[str]
    topk: int | None = None
    return_scores: bool = False


class QueriesRequest(BaseModel):
    queries: list[str]
    k: int | None = None


def _document(hit: Hit) -> dict:
    return {"id": hit.passage.id, "contents": hit.passage.contents}


def _check_text(i: int, query: str) -> None:
    """A JSON escape can make a lone surrogate, which has no UTF-8 form: no tokenizer takes it
    and no reply could echo it, so it is refused here for every retriever."""
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as e:
        raise HTTPException(
            422, f"query {i} is not valid Unicode text ({e.reason} at character {e.start})"
        ) from e


def _check_limits(cfg: RetrieverConfig, queries: list[str], k: int) -> None:
    if len(queries) > cfg.max_queries_per_request:
        raise HTTPException(
            413,
            f"{len(queries)} queries in one request; the limit is "
            f"{cfg.max_queries_per_request} (retriever.max_queries_per_request)",
        )
    for i, query in enumerate(queries):
        if len(query) > cfg.max_query_chars:
            raise HTTPException(
                422,
                f"query {i} has {len(query)} characters; the limit is {cfg.max_query_chars} "
                "(retriever.max_query_chars)",
            )
        _check_text(i, query)
    if not 1 <= k <= cfg.max_topk:
        raise HTTPException(422, f"k={k} is outside 1..{cfg.max_topk} (retriever.max_topk)")


def _rejection(queries: list[str], error: QueryRejected) -> HTTPException:
    # The query itself is not echoed: a lone surrogate has no UTF-8 form for the reply.
    where = [i for i, query in enumerate(queries) if query == error.query] or ["?"]
    return HTTPException(422, f"query {where[0]} cannot be searched: {error.reason}")


def create_app(retriever: Retriever, cfg: RetrieverConfig) -> FastAPI:
    """The FastAPI app serving `retriever`; `cfg` gives the limits, batching and default k."""
    batcher = MicroBatcher(retriever.search, cfg.server_max_batch, cfg.server_batch_wait_ms / 1e3)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="retrieval service", lifespan=lifespan)
    app.state.batcher = batcher

    async def search(queries: list[str], k: int | None) -> list[list[Hit]]:
        k = cfg.topk if k is None else k
        _check_limits(cfg, queries, k)
        if not queries:
            return []
        try:
            return await batcher.submit(queries, k)
        except QueryRejected as error:
            raise _rejection(queries, error) from error

    @app.post("/retrieve")
    async def retrieve(request: RetrieveRequest) -> dict:
        hits = await search(request.queries, request.topk)
        if request.return_scores:
            result = [[{"document": _document(h), "score": h.score} for h in hs] for hs in hits]
        else:
            result = [[_document(h) for h in hs] for hs in hits]
        return {"result": result}

    @app.post("/queries")
    async def queries(request: QueriesRequest) -> dict:
        hits = await search(request.queries, request.k)
        return {
            "queries": request.queries,
            "answers": [[h.passage.contents for h in hs] for hs in hits],
        }

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "kind": cfg.kind,
            "index_dir": cfg.index_dir,
            "passages": len(retriever) if hasattr(retriever, "__len__") else None,
            "batches_served": batcher.batches,
            "batches_failed": batcher.failed_batches,
            "max_query_chars": cfg.max_query_chars,  # clients cut longer queries to this
        }

    return app


def main(argv: list[str] | None = None) -> int:
    from recipe.retrieval.index import open_index

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = parse_cli(RunConfig, argv if argv is not None else sys.argv[1:]).retriever
    limit_malloc_arenas()
    return run_reporting("server", lambda: _serve(cfg, open_index(cfg)))


def _serve(cfg: RetrieverConfig, retriever) -> int:
    log.info(
        "serving %s (%d passages) on http://%s:%d",
        cfg.index_dir,
        len(retriever),
        cfg.host,
        cfg.port,
    )
    uvicorn.run(create_app(retriever, cfg), host=cfg.host, port=cfg.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
