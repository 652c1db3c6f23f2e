"""MicroBatcher over the real dense retriever: a failing batch fails only what fails alone."""

from __future__ import annotations

import asyncio
import threading

from recipe.retrieval.base import QueryRejected
from recipe.retrieval.batching import MicroBatcher

# A lone surrogate: the encoder's (Rust) tokenizer raises on it. The service refuses it at its
# boundary; the batcher is handed it directly here, as it would be any query that fails.
BAD_QUERY = "\ud800 capital"


class GatedSearch:
    """The real search, whose first call waits for `release`: requests submitted meanwhile
    queue up and go into the next call together, whatever the machine's speed."""

    def __init__(self, search) -> None:
        self.search, self.calls, self.release = search, [], threading.Event()

    def __call__(self, queries, k):
        self.calls.append(list(queries))
        if len(self.calls) == 1:
            self.release.wait(timeout=120)  # a safety bound; the test sets it
        return self.search(queries, k)


async def _until(condition, polls: int = 100_000) -> None:
    for _ in range(polls):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition never held")


async def _batch_with_a_bad_request(gated: GatedSearch) -> tuple[list, MicroBatcher]:
    batcher = MicroBatcher(gated, max_batch=256)
    batcher.start()
    try:
        first = asyncio.create_task(batcher.submit(["Paris"], 1))
        await _until(lambda: len(gated.calls) == 1)
        bad = asyncio.create_task(batcher.submit(["Rome", BAD_QUERY], 1))
        good = asyncio.create_task(batcher.submit(["capital of Germany"], 2))
        await _until(lambda: batcher.queued == 2)
        gated.release.set()
        return await asyncio.gather(first, bad, good, return_exceptions=True), batcher
    finally:
        await batcher.stop()


def test_a_failing_batch_fails_only_the_request_that_fails_alone(dense_retriever):
    gated = GatedSearch(dense_retriever.search)
    (first, bad, good), batcher = asyncio.run(_batch_with_a_bad_request(gated))
    # The bad and the good request went into one call, and that call failed.
    assert sorted(gated.calls[1]) == sorted(["Rome", BAD_QUERY, "capital of Germany"])
    assert first[0][0].passage.title == "Paris"
    assert [h.passage.title for h in good[0]][:1] == ["Berlin"] and len(good[0]) == 2
    assert isinstance(bad, QueryRejected) and bad.query == BAD_QUERY
    assert "not valid Unicode text" in bad.reason
    # Bounded work: the failed batch, then each of its two requests alone.
    assert len(gated.calls) == 4 and batcher.failed_batches == 1 and batcher.batches == 2
