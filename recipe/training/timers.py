"""Named phase timers (veRL style): `with timers("rollout"): ...` adds to `timing/rollout`."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseTimers:
    def __init__(self) -> None:
        self._seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._seconds[name] += time.perf_counter() - started

    def pop(self) -> dict[str, float]:
        """{"timing/<phase>": seconds} since the last pop; the counters restart at 0."""
        out = {f"timing/{name}": round(s, 4) for name, s in self._seconds.items()}
        self._seconds.clear()
        return out
