"""The one retry loop of the outside-service clients (retrieval, judge): what it retries, what
it passes through at once, and what it says when every attempt failed."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from recipe.bounded_http import (
    BackgroundLoop,
    RetriesExhausted,
    ServerError,
    WholeRequestTimeout,
    backoff_delay,
    bounded,
    with_retries,
)


def _failing(errors: list[BaseException], result: str = "ok"):
    """An attempt that raises `errors` in turn, then returns `result`; counts its calls."""
    calls = []

    async def attempt() -> str:
        calls.append(len(calls))
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return result

    return attempt, calls


def test_retryable_errors_are_retried_until_an_attempt_succeeds():
    errors = [ServerError("HTTP 503"), httpx.ConnectError("refused"), WholeRequestTimeout("slow")]
    attempt, calls = _failing(errors)
    assert asyncio.run(with_retries(attempt, max_retries=3, backoff_s=0.0)) == "ok"
    assert len(calls) == 4


def test_after_the_last_retry_the_last_error_is_reported():
    attempt, calls = _failing([ServerError("HTTP 500"), ServerError("HTTP 502")])
    with pytest.raises(RetriesExhausted) as e:
        asyncio.run(with_retries(attempt, max_retries=1, backoff_s=0.0))
    assert (e.value.attempts, str(e.value.last)) == (2, "HTTP 502") and len(calls) == 2


def test_other_errors_pass_through_at_once():
    attempt, calls = _failing([ValueError("HTTP 400: bad request")])
    with pytest.raises(ValueError, match="bad request"):
        asyncio.run(with_retries(attempt, max_retries=5, backoff_s=0.0))
    assert len(calls) == 1


def test_a_synchronous_caller_runs_the_loop_on_its_background_loop():
    loop = BackgroundLoop("test-retries")
    try:
        attempt, calls = _failing([ServerError("HTTP 503")])
        assert loop.run(with_retries(attempt, max_retries=1, backoff_s=0.0)) == "ok"
        assert len(calls) == 2
        with pytest.raises(WholeRequestTimeout):
            loop.run(bounded(asyncio.Event().wait(), 0.05))
    finally:
        loop.close()


def test_the_backoff_doubles_after_the_first_attempt():
    assert [backoff_delay(0.5, n) for n in range(4)] == [0.0, 0.5, 1.0, 2.0]
