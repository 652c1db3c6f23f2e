"""Micro-batching for the retrieval service: concurrent requests share one encode + search.

Requests queue up while the worker thread runs a batch; when it is free, everything queued
(up to `max_batch` queries, plus whatever arrives within `wait_s`) goes into the next call.
Duplicate queries across requests are searched once. The search itself runs in a worker
thread, so the event loop keeps accepting requests while the encoder and faiss work.

A batch whose search raises is searched again one request at a time, so one request's bad
query (one the encoder cannot take) fails that request only; the work is bounded by one extra
call per request of the failed batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from recipe.retrieval.base import Hit

SearchFn = Callable[[Sequence[str], int], list[list[Hit]]]


@dataclass
class _Request:
    queries: list[str]
    k: int
    future: asyncio.Future = field(repr=False)


class MicroBatcher:
    def __init__(self, search: SearchFn, max_batch: int, wait_s: float = 0.0) -> None:
        self.search = search
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.batches = 0
        self.failed_batches = 0
        self._queue: asyncio.Queue[_Request] | None = None
        self._task: asyncio.Task | None = None

    @property
    def queued(self) -> int:
        """Requests waiting for the next batch."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, queries: list[str], k: int) -> list[list[Hit]]:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(queries, k, future))
        return await future

    async def _collect(self) -> list[_Request]:
        assert self._queue is not None
        batch = [await self._queue.get()]
        size = len(batch[0].queries)
        deadline = asyncio.get_running_loop().time() + self.wait_s
        while size < self.max_batch:
            if not self._queue.empty():
                request = self._queue.get_nowait()
            else:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            batch.append(request)
            size += len(request.queries)
        return batch

    async def _answer(self, batch: list[_Request]) -> None:
        """Search `batch` in one call and resolve its futures; raises what the search raised."""
        unique = list(dict.fromkeys(q for request in batch for q in request.queries))
        k = max(request.k for request in batch)
        results = await asyncio.to_thread(self.search, unique, k)
        self.batches += 1
        by_query = dict(zip(unique, results, strict=True))
        for request in batch:
            if not request.future.done():
                request.future.set_result([by_query[q][: request.k] for q in request.queries])

    async def _answer_alone(self, request: _Request) -> None:
        try:
            await self._answer([request])
        except Exception as error:  # noqa: BLE001 - this request fails even on its own
            _fail(request, error)

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            try:
                await self._answer(batch)
            except Exception as error:  # noqa: BLE001 - whose fault it is is found below
                self.failed_batches += 1
                if len(batch) == 1:
                    _fail(batch[0], error)
                    continue
                for request in batch:
                    if not request.future.done():  # a client that left is not searched for
                        await self._answer_alone(request)


def _fail(request: _Request, error: Exception) -> None:
    if not request.future.done():
        request.future.set_exception(error)
