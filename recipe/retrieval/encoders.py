"""Dense text encoders through FlagEmbedding: queries and passages to float32 vectors.

BGE-large-en-v1.5 (configs/paper) pools the CLS state and prefixes queries with its retrieval
instruction; all-MiniLM-L6-v2 (configs/embedded) mean-pools and takes no instruction. Both are
plain Hugging Face folders loaded by `FlagModel`, so the code path is the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from FlagEmbedding import FlagModel

from recipe.assets import resolve_model_path
from recipe.retrieval.base import Passage
from recipe.schema import RetrieverConfig


class DenseEncoder:
    """One FlagModel on one device; `encode_*` return float32 arrays of shape (n, dim)."""

    def __init__(self, cfg: RetrieverConfig) -> None:
        self.cfg = cfg
        self.model = FlagModel(
            resolve_model_path(cfg.encoder),
            pooling_method=cfg.pooling,
            normalize_embeddings=cfg.normalize,
            query_instruction_for_retrieval=cfg.query_instruction or None,
            devices=[d.strip() for d in cfg.device.split(",")],
            # FlagModel turns the weights back to float32 itself when the device is the CPU.
            use_fp16=cfg.fp16,
            batch_size=cfg.batch_size,
            query_max_length=cfg.max_query_tokens,
            passage_max_length=cfg.max_passage_tokens,
        )
        self.dim = int(self.model.model.config.hidden_size)

    def _encode(self, method, texts: list[str], max_length: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        # Our callers already batch; one inner batch also keeps FlagModel's per-call progress
        # bars (shown only when the input exceeds its batch size) quiet.
        vectors = method(texts, batch_size=len(texts) + 1, max_length=max_length)
        return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim))

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self._encode(self.model.encode_queries, list(queries), self.cfg.max_query_tokens)

    def encode_passages(self, passages: Sequence[Passage]) -> np.ndarray:
        texts = [p.contents for p in passages]
        return self._encode(self.model.encode_corpus, texts, self.cfg.max_passage_tokens)
