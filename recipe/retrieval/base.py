"""The retrieval interface every retriever and client implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from recipe.exit_status import BAD_INPUT


class RetrievalInputError(ValueError):
    """A mistake in what the user gave the retrieval stack: a corpus, an index folder, an
    encoder, a setting. The entry points print its one-line message and exit 2."""

    exit_status = BAD_INPUT


class QueryRejected(ValueError):
    """The retriever cannot take `query` (the service answers 422 with `reason`)."""

    def __init__(self, query: str, reason: str) -> None:
        super().__init__(reason)
        self.query = query
        self.reason = reason


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
