"""Dense retrieval: encode the queries, search the faiss index, look the rows up in the doc store."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faiss
import numpy as np

from recipe.retrieval.base import Hit, Passage, RetrievalInputError
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


class NoGpuForIndex(RetrievalInputError):
    """`retriever.faiss_require_gpu` is set and faiss cannot use a GPU here."""


def maybe_to_gpus(index: faiss.Index, cfg: RetrieverConfig) -> faiss.Index:
    """The index on every GPU faiss-gpu sees: sharded (each holds 1/n of the vectors) or
    replicated, vectors in fp16 when `faiss_gpu_fp16`; on the CPU when faiss sees no GPU,
    unless `faiss_require_gpu` (a faiss-cpu install would search 21M vectors on the CPU).
    faiss raises RuntimeError for a type it cannot place (PQ, SQ or HNSW without IVF)."""
    if not cfg.faiss_gpu:
        return index
    gpus = num_gpus()
    if gpus == 0:
        if cfg.faiss_require_gpu:
            raise NoGpuForIndex(
                "retriever.faiss_require_gpu: faiss sees no GPU (faiss "
                f"{faiss.__version__}; faiss-cpu has no GPU support: install faiss-gpu in its "
                "place, or set retriever.faiss_require_gpu=false to search on the CPU)"
            )
        return index
    # Only faiss-gpu builds have the cloner options (faiss-cpu lacks the class).
    options = faiss.GpuMultipleClonerOptions()
    options.shard = cfg.faiss_gpu_shard
    options.useFloat16 = cfg.faiss_gpu_fp16
    log.info(
        "faiss index on %d GPUs (%s, %s)",
        gpus,
        "sharded" if cfg.faiss_gpu_shard else "replicated",
        "fp16" if cfg.faiss_gpu_fp16 else "fp32",
    )
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
