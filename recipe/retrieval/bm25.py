"""Lexical retrieval: Okapi BM25 through the `bm25s` package, behind the `Retriever` protocol."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

from recipe.retrieval.base import Hit, Passage, RetrievalInputError

# bm25s' own default tokenisation: lower-cased words of two or more characters.
DEFAULT_STOPWORDS = "english"
BM25_SUBDIR = "bm25"


def _tokenize(texts: Sequence[str], stopwords: str | None):
    return bm25s.tokenize(
        list(texts), lower=True, stopwords=stopwords, return_ids=False, show_progress=False
    )


class BM25Retriever:
    """BM25 over passages held in memory, or over a doc store for large corpora.

    `passages` is anything indexable by row (a list, or `recipe.retrieval.docstore.DocStore`)
    whose row order matches the BM25 index.
    """

    def __init__(
        self,
        passages: Sequence[Passage],
        *,
        stopwords: str | None = DEFAULT_STOPWORDS,
        k1: float = 1.5,
        b: float = 0.75,
        _model: bm25s.BM25 | None = None,
    ) -> None:
        self.passages = passages
        self.stopwords = stopwords
        if _model is None:
            # bm25s fails on these two with a bare `max() arg is an empty sequence`.
            if not passages:
                raise RetrievalInputError("BM25 over no passages: the corpus is empty")
            _model = bm25s.BM25(k1=k1, b=b)
            tokens = _tokenize([p.contents for p in passages], stopwords)
            if not any(tokens):
                raise RetrievalInputError(
                    f"BM25 over {len(passages)} passages with no word BM25 can index (it "
                    "drops stopwords and one-letter words)"
                )
            _model.index(tokens, show_progress=False)
        self.model = _model

    def __len__(self) -> int:
        return len(self.passages)

    def search_ids(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores), each of shape (len(queries), min(k, corpus size)), best first."""
        k = min(k, len(self.passages))
        if not queries or k <= 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        tokens = _tokenize(queries, self.stopwords)
        rows, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=0)
        return np.asarray(rows, np.int64), np.asarray(scores, np.float32)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        rows, scores = self.search_ids(queries, k)
        return [
            [Hit(self.passages[int(r)], float(s)) for r, s in zip(row, score, strict=True)]
            for row, score in zip(rows, scores, strict=True)
        ]

    def save(self, index_dir: str | Path) -> Path:
        """Write the BM25 matrices under `index_dir/bm25` (the passages live in the doc store)."""
        out = Path(index_dir) / BM25_SUBDIR
        self.model.save(str(out), show_progress=False)
        return out

    @classmethod
    def load(
        cls,
        index_dir: str | Path,
        passages: Sequence[Passage],
        *,
        stopwords: str | None = DEFAULT_STOPWORDS,
        mmap: bool = True,
    ) -> BM25Retriever:
        model = bm25s.BM25.load(str(Path(index_dir) / BM25_SUBDIR), mmap=mmap, show_progress=False)
        return cls(passages, stopwords=stopwords, _model=model)
