"""Dense retrieval: encode the queries, search the faiss index, look the rows up in the doc store."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faiss
import numpy as np

from recipe.retrieval.base import Hit, Passage
from recipe.schema import RetrieverConfig

log = logging.getLogger(__name__)


def num_gpus() -> int:
    """GPUs faiss can use: 0 with faiss-cpu, which has no `get_num_gpus` worth calling."""
    getter = getattr(faiss, "get_num_gpus", None)
    return int(getter()) if getter is not None else 0


def set_search_parameters(index: faiss.Index, cfg: RetrieverConfig) -> None:
    """nprobe for IVF, efSearch for HNSW; Flat has neither."""
    factory = cfg.faiss_factory.upper()
    params = faiss.ParameterSpace()
    if "IVF" in factory:
        params.set_index_parameter(index, "nprobe", cfg.faiss_nprobe)
    if "HNSW" in factory:
        params.set_index_parameter(index, "efSearch", cfg.hnsw_ef_search)


def maybe_to_gpus(index: faiss.Index, cfg: RetrieverConfig) -> faiss.Index:
    """Shard the index over every GPU faiss-gpu sees (each holds 1/n of the vectors)."""
    gpus = num_gpus() if cfg.faiss_gpu else 0
    if gpus == 0:
        return index
    options = faiss.GpuMultipleClonerOptions()
    options.shard = True
    options.useFloat16 = cfg.fp16
    log.info("sharding the faiss index over %d GPUs", gpus)
    return faiss.index_cpu_to_all_gpus(index, co=options)


class DenseRetriever:
    """`Retriever` over a faiss index whose row i is passage i of `passages` (a doc store)."""

    def __init__(self, encoder, index: faiss.Index, passages: Sequence[Passage]) -> None:
        if index.ntotal != len(passages):
            raise ValueError(f"index holds {index.ntotal} vectors, doc store {len(passages)}")
        self.encoder = encoder
        self.index = index
        self.passages = passages

    def __len__(self) -> int:
        return len(self.passages)

    def search_ids(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores), shape (len(queries), k); rows are -1 where the index has fewer hits."""
        if not queries or k <= 0:
            return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
        vectors = self.encoder.encode_queries(queries)
        scores, rows = self.index.search(vectors, min(k, self.index.ntotal))
        return rows.astype(np.int64), scores.astype(np.float32)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        rows, scores = self.search_ids(queries, k)
        return [
            [
                Hit(self.passages[int(r)], float(s))
                for r, s in zip(row, score, strict=True)
                if r >= 0
            ]
            for row, score in zip(rows, scores, strict=True)
        ]
