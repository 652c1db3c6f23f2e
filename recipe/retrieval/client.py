"""The retriever rollouts use: in process or over HTTP, behind an LRU cache.

`build_retriever(retriever_cfg)` returns
- `retriever.url` null: the index in `retriever.index_dir` opened in this process;
- `retriever.url` set: `HttpRetriever`, which checks `GET /health` at start-up, gives every
  request `timeout_s`, retries transport errors and 5xx answers `max_retries` times with
  exponential backoff, then raises `RetrievalUnavailable`, so training fails fast instead of
  hanging on a dead service;
wrapped in `CachedRetriever`: one backend call per turn for the distinct uncached queries,
and an LRU cache keyed by (query, k) of `cache_size` entries (0 disables the cache).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

import httpx

from recipe.retrieval.base import Hit, Passage, Retriever
from recipe.schema import RetrieverConfig


class RetrievalUnavailable(RuntimeError):
    """The retrieval service could not be reached (or kept failing) within the retry budget."""


class RetrievalRequestError(RuntimeError):
    """The service refused a request (4xx); retrying the same request would not help."""


class _ServerError(Exception):
    pass


def _passage_of(document: dict) -> Passage:
    title, _, text = document["contents"].partition("\n")
    return Passage(str(document["id"]), title, text)


class HttpRetriever:
    """Client of `recipe.retrieval.server`'s `POST /retrieve` (Search-R1's shape)."""

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
        self.url = url.rstrip("/")
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.chunk = max_queries_per_request
        self.requests = 0
        self.client = httpx.Client(base_url=self.url, timeout=timeout_s)
        if health_check:
            self.health()

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        last_error: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                self.requests += 1
                response = self.client.request(method, path, json=body)
                if response.status_code >= 500:
                    raise _ServerError(f"HTTP {response.status_code}: {response.text[:200]}")
                if response.status_code >= 400:
                    raise RetrievalRequestError(
                        f"{method} {self.url}{path} refused with HTTP {response.status_code}: "
                        f"{response.text[:500]}"
                    )
                return response.json()
            except (httpx.TransportError, _ServerError) as error:
                last_error = error
        raise RetrievalUnavailable(
            f"retrieval service {self.url} failed {self.max_retries + 1} attempts "
            f"({type(last_error).__name__}: {last_error}); start it with "
            "`make serve-retriever`, or set retriever.url: null to search in process"
        )

    def health(self) -> dict:
        return self._request("GET", "/health")

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        hits: list[list[Hit]] = []
        for start in range(0, len(queries), self.chunk):
            body = {"queries": list(queries[start : start + self.chunk]), "topk": k}
            result = self._request("POST", "/retrieve", body | {"return_scores": True})["result"]
            hits.extend(
                [Hit(_passage_of(e["document"]), float(e["score"])) for e in entries]
                for entries in result
            )
        return hits

    def close(self) -> None:
        self.client.close()


class CachedRetriever:
    """Dedupes a batch's queries, serves repeats from an LRU cache, asks `inner` for the rest."""

    def __init__(self, inner: Retriever, cache_size: int) -> None:
        self.inner = inner
        self.cache_size = cache_size
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
    return CachedRetriever(inner, cfg.cache_size)
