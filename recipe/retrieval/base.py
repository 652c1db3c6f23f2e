"""The retrieval interface every retriever and client implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Passage:
    """One retrievable unit: a ~100-word chunk of a page."""

    id: str
    title: str
    text: str

    @property
    def contents(self) -> str:
        """FlashRAG / Search-R1 layout: the title on the first line, then the text."""
        return f"{self.title}\n{self.text}"


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float


@runtime_checkable
class Retriever(Protocol):
    """Anything that answers a batch of queries with the top-k passages of each."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]: ...
