"""HTTP requests bounded in total time, for the clients of outside services (retrieval, judge).

httpx's `timeout` bounds each phase (connect, each read, each write), not the request: a server
that sends one byte every 20 ms never trips a 0.3 s read timeout and can hold a caller for as
long as its reply lasts. `asyncio.wait_for` cancels the whole request, mid-read included, so
the clients run their `httpx.AsyncClient` on a `BackgroundLoop` (a private event loop in a
daemon thread, so synchronous callers need no event loop of their own) and wrap every attempt
in `bounded`.

The retry loop is shared too: `with_retries` repeats an attempt on what `RETRYABLE` names
(transport errors, whole-request timeouts, and `ServerError`, which a client raises for answers
it deems transient, such as 5xx) after `backoff_delay`'s exponential waits. It is a coroutine;
a synchronous client runs it on its `BackgroundLoop`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


class WholeRequestTimeout(Exception):
    """No complete reply within the bound; the message says which bound."""


class ServerError(Exception):
    """A transient refusal by the server (for example HTTP 5xx), worth another attempt."""


RETRYABLE = (httpx.TransportError, ServerError, WholeRequestTimeout)


def backoff_delay(backoff_s: float, attempt: int) -> float:
    """Seconds to wait before attempt number `attempt` (0 is the first: no wait)."""
    return 0.0 if attempt == 0 else backoff_s * 2 ** (attempt - 1)


class RetriesExhausted(Exception):
    """Every attempt failed with a retryable error; `last` is the final one."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"{attempts} attempts failed ({type(last).__name__}: {last})")
        self.attempts = attempts
        self.last = last


async def with_retries(
    attempt: Callable[[], Awaitable[T]], max_retries: int, backoff_s: float
) -> T:
    """`await attempt()`, tried again after `backoff_delay` on a `RETRYABLE` error, at most
    `max_retries` times; any other error passes through at once (a refusal the same request
    would meet again). Raises `RetriesExhausted` when no attempt succeeded."""
    last: BaseException | None = None
    for number in range(max_retries + 1):
        await asyncio.sleep(backoff_delay(backoff_s, number))
        try:
            return await attempt()
        except RETRYABLE as error:
            last = error
    assert last is not None
    raise RetriesExhausted(max_retries + 1, last)


async def bounded(awaitable: Awaitable[T], timeout_s: float | None) -> T:
    """`await awaitable`, cancelled after `timeout_s` seconds (None: unbounded)."""
    try:
        return await asyncio.wait_for(awaitable, timeout_s)
    except TimeoutError:
        raise WholeRequestTimeout(f"no complete reply within {timeout_s} s") from None


class BackgroundLoop:
    """A private asyncio event loop running in a daemon thread; `run` is callable from any
    thread and blocks until the coroutine is done (or `timeout_s` cut it)."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def closed(self) -> bool:
        return self._loop.is_closed()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(bounded(coroutine, timeout_s), self._loop).result()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
