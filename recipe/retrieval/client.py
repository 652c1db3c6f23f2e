"""The retriever rollouts use: in process or over HTTP, behind an LRU cache.

`build_retriever(retriever_cfg)` returns
- `retriever.url` null: the index in `retriever.index_dir` opened in this process;
- `retriever.url` set: `HttpRetriever`, which checks `GET /health` at start-up (a server
  without it, such as Search-R1's `retrieval_server.py`, is checked with one probe query
  instead) and bounds every attempt (connect, send, the whole reply) by `timeout_s`, so a server that trickles its reply
  cannot hold a step; it retries transport errors, timeouts and 5xx answers `max_retries` times
  with exponential backoff, then raises `RetrievalUnavailable`, so training fails fast within
  (max_retries + 1) * timeout_s plus the backoff instead of hanging on a dead service;
wrapped in `CachedRetriever`: queries cut to `max_query_chars` characters on both routes (the
service refuses longer ones; the encoder reads only the first `max_query_tokens` tokens anyway),
one backend call per turn for the distinct uncached queries, and an LRU cache keyed by
(query, k) of `cache_size` entries (0 disables the cache).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence

import httpx

from recipe.bounded_http import (
    BackgroundLoop,
    RetriesExhausted,
    ServerError,
    bounded,
    with_retries,
)
from recipe.exit_status import STOPPED
from recipe.retrieval.base import Hit, Passage, Retriever
from recipe.schema import RetrieverConfig

START_HINT = "start it with `make serve-retriever`, or set retriever.url: null to search in process"


class RetrievalError(RuntimeError):
    """The retrieval service failed a rollout's search; the message says how."""

    exit_status = STOPPED
    exit_note = "the search failed; rerun to resume (what was written so far is kept)"


class RetrievalUnavailable(RetrievalError):
    """The retrieval service could not be reached (or kept failing) within the retry budget."""


class RetrievalRequestError(RetrievalError):
    """The service refused a request (4xx); retrying the same request would not help."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RetrievalCheckFailed(RetrievalError):
    """The start-up check failed: no `GET /health`, and a probe query did not work either."""


class RetrievalResponseError(RetrievalError):
    """A 200 reply that is not the service's JSON: `retriever.url` is likely another server."""


PROBE_QUERY = "retrieval service check"
NO_HEALTH_ROUTE = (404, 405)


def content_id(contents: str) -> str:
    """A stable id for a document served without one (Search-R1's BM25 server returns title,
    text and contents only): the same passage gets the same id in every reply and run."""
    return "sha1:" + hashlib.sha1(contents.encode("utf-8")).hexdigest()[:16]


def _passage_of(document: dict) -> Passage:
    contents = document["contents"]
    title, _, text = contents.partition("\n")
    pid = document.get("id")
    return Passage(content_id(contents) if pid is None else str(pid), title, text)


def _hits_of(result: object, n_queries: int) -> list[list[Hit]]:
    """`/retrieve`'s `result` as hits; ValueError when it is not that shape."""
    if not isinstance(result, list) or len(result) != n_queries:
        raise ValueError(f"`result` is not a list of {n_queries} lists")
    try:
        return [[Hit(_passage_of(e["document"]), float(e["score"])) for e in es] for es in result]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"an entry lacks document.contents / score ({e!r})") from e


class HttpRetriever:
    """Client of `recipe.retrieval.server`'s `POST /retrieve` (Search-R1's shape).

    Requests run on a `recipe.bounded_http.BackgroundLoop`, each attempt bounded as a whole
    (httpx alone bounds each read, not the request).
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float,
        max_retries: int,
        backoff_s: float,
        max_queries_per_request: int,
        health_check: bool = True,
    ) -> None:
        if timeout_s <= 0 or max_retries < 0 or backoff_s < 0 or max_queries_per_request < 1:
            raise ValueError(
                "HttpRetriever needs timeout_s > 0, max_retries >= 0, backoff_s >= 0 and "
                f"max_queries_per_request >= 1; got {timeout_s}, {max_retries}, {backoff_s}, "
                f"{max_queries_per_request}"
            )
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.chunk = max_queries_per_request
        self.requests = 0
        self.server_limits: dict = {}
        self._loop = BackgroundLoop("retrieval-client")
        self._client = self._loop.run(self._open_client())
        if health_check:
            self.server_limits = self.health()

    async def _open_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=self.timeout_s)

    async def _attempt(self, method: str, path: str, body: dict | None) -> httpx.Response:
        self.requests += 1
        response = await bounded(self._client.request(method, path, json=body), self.timeout_s)
        if response.status_code >= 500:
            raise ServerError(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code >= 400:
            raise RetrievalRequestError(
                f"{method} {self.url}{path} refused with HTTP {response.status_code}: "
                f"{response.text[:500]}",
                response.status_code,
            )
        return response

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        attempt = functools.partial(self._attempt, method, path, body)
        try:
            response = self._loop.run(with_retries(attempt, self.max_retries, self.backoff_s))
        except RetriesExhausted as e:
            raise RetrievalUnavailable(
                f"retrieval service {self.url} failed {e.attempts} attempts "
                f"({type(e.last).__name__}: {e.last}); {START_HINT}"
            ) from None
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise RetrievalResponseError(
                f"{method} {self.url}{path} answered {response.status_code} with "
                f"{response.text[:200]!r}, not a JSON object; is retriever.url the retrieval "
                "service (`make serve-retriever`)?"
            )
        return reply

    def health(self) -> dict:
        """The service's `GET /health` reply (its limits); a server without the route (Search-R1's
        `retrieval_server.py`) is checked with one probe query instead and reports no limits."""
        try:
            return self._request("GET", "/health")
        except RetrievalRequestError as e:
            if e.status not in NO_HEALTH_ROUTE:
                raise
        try:
            self.search([PROBE_QUERY], 1)
        except RetrievalError as e:
            raise RetrievalCheckFailed(
                f"{self.url} has no GET /health and a probe query failed: {e}; set "
                "retriever.health_check=false to start without the check"
            ) from None
        return {}

    def _server_max_chars(self) -> int | None:
        """The query limit the service reported at its health check (it refuses longer)."""
        limit = self.server_limits.get("max_query_chars")
        return limit if isinstance(limit, int) and limit > 0 else None

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        hits: list[list[Hit]] = []
        for start in range(0, len(queries), self.chunk):
            chunk = [q[: self._server_max_chars()] for q in queries[start : start + self.chunk]]
            body = {"queries": chunk, "topk": k, "return_scores": True}
            reply = self._request("POST", "/retrieve", body)
            try:
                hits.extend(_hits_of(reply.get("result"), len(chunk)))
            except ValueError as e:
                raise RetrievalResponseError(
                    f"POST {self.url}/retrieve answered a body that is not the service's "
                    f"shape: {e}; is retriever.url the retrieval service?"
                ) from None
        return hits

    def close(self) -> None:
        if self._loop.closed:
            return
        self._loop.run(self._client.aclose(), timeout_s=self.timeout_s)
        self._loop.close()


class CachedRetriever:
    """Cuts queries to `max_query_chars`, dedupes a batch's queries, serves repeats from an
    LRU cache, asks `inner` for the rest."""

    def __init__(
        self, inner: Retriever, cache_size: int, max_query_chars: int | None = None
    ) -> None:
        self.inner = inner
        self.cache_size = cache_size
        self.max_query_chars = max_query_chars
        self.cache: OrderedDict[tuple[str, int], list[Hit]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def _lookup(self, queries: Sequence[str], k: int) -> dict[str, list[Hit]]:
        found: dict[str, list[Hit]] = {}
        with self._lock:
            for query in dict.fromkeys(queries):
                cached = self.cache.get((query, k))
                if cached is not None:
                    self.cache.move_to_end((query, k))
                    found[query] = cached
        return found

    def _store(self, results: dict[str, list[Hit]], k: int) -> None:
        if self.cache_size <= 0:
            return
        with self._lock:
            for query, hits in results.items():
                self.cache[(query, k)] = hits
                self.cache.move_to_end((query, k))
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        queries = [q[: self.max_query_chars] for q in queries]
        found = self._lookup(queries, k)
        missing = [q for q in dict.fromkeys(queries) if q not in found]
        self.hits += len(queries) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = dict(zip(missing, self.inner.search(missing, k), strict=True))
            self._store(fresh, k)
            found |= fresh
        return [list(found[q]) for q in queries]


def build_retriever(cfg: RetrieverConfig) -> Retriever:
    """The configured retriever (in process or HTTP), cached; see the module docstring."""
    if cfg.url:
        inner: Retriever = HttpRetriever(
            cfg.url,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_s=cfg.retry_backoff_s,
            max_queries_per_request=cfg.max_queries_per_request,
            health_check=cfg.health_check,
        )
    else:
        from recipe.retrieval.index import open_index

        inner = open_index(cfg)
    return CachedRetriever(inner, cfg.cache_size, cfg.max_query_chars)
