"""Dense text encoders through FlagEmbedding: queries and passages to float32 vectors.

BGE-large-en-v1.5 (configs/paper) pools the CLS state and prefixes queries with its retrieval
instruction; all-MiniLM-L6-v2 (configs/embedded) mean-pools and takes no instruction. Both are
plain Hugging Face folders loaded by `FlagModel`, so the code path is the same.

A query the tokenizer cannot take (a string with a lone surrogate, which has no UTF-8 form)
raises `QueryRejected` naming it, so the service can answer that request 422 and the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from FlagEmbedding import FlagModel

from recipe.assets import resolve_model_path
from recipe.retrieval.base import Passage, QueryRejected, RetrievalInputError
from recipe.schema import RetrieverConfig

# Every Hugging Face model folder has one; without it the loaders' errors are obscure.
MODEL_CONFIG_FILE = "config.json"
MAX_REASON_CHARS = 300


def _looks_local(name: str) -> bool:
    """A path no hub id can be (hub ids are `name` or `namespace/name`)."""
    return name.startswith(("/", ".")) or name.count("/") > 1


def _load_model(cfg: RetrieverConfig) -> FlagModel:
    path = resolve_model_path(cfg.encoder)
    if _looks_local(path) and not Path(path).exists():
        raise RetrievalInputError(f"retriever.encoder {path} does not exist")
    if Path(path).is_dir() and not (Path(path) / MODEL_CONFIG_FILE).is_file():
        raise RetrievalInputError(
            f"retriever.encoder {path}: cannot load an encoder from it (a folder without "
            f"{MODEL_CONFIG_FILE}, so not a Hugging Face model folder)"
        )
    try:
        return FlagModel(
            path,
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
    # transformers says "not a model" with OSError (missing files, an unknown hub id, no
    # network) or ValueError (a folder without a usable tokenizer).
    except (OSError, ValueError) as e:
        reason = " ".join(str(e).split())[:MAX_REASON_CHARS] or type(e).__name__
        raise RetrievalInputError(
            f"retriever.encoder {path}: cannot load an encoder from it ({reason})"
        ) from e


def _why_rejected(query: str, error: Exception) -> str:
    try:
        query.encode("utf-8")
    except UnicodeEncodeError as e:
        return f"it is not valid Unicode text ({e.reason} at character {e.start})"
    return f"the encoder's tokenizer cannot take it ({type(error).__name__}: {error})"


class DenseEncoder:
    """One FlagModel on one device; `encode_*` return float32 arrays of shape (n, dim)."""

    def __init__(self, cfg: RetrieverConfig) -> None:
        self.cfg = cfg
        self.model = _load_model(cfg)
        self.dim = int(self.model.model.config.hidden_size)

    def _encode(self, method, texts: list[str], max_length: int) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        # Our callers already batch; one inner batch also keeps FlagModel's per-call progress
        # bars (shown only when the input exceeds its batch size) quiet.
        vectors = method(texts, batch_size=len(texts) + 1, max_length=max_length)
        return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim))

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        queries = list(queries)
        try:
            return self._encode(self.model.encode_queries, queries, self.cfg.max_query_tokens)
        except Exception as error:
            rejected = self._first_rejected(queries)
            if rejected is not None:
                raise rejected from error
            raise

    def _first_rejected(self, queries: list[str]) -> QueryRejected | None:
        """The first query the tokenizer raises on alone (tokenizing is cheap next to encoding)."""
        for query in queries:
            try:
                self.model.tokenizer([query], truncation=True, max_length=self.cfg.max_query_tokens)
            except Exception as e:  # noqa: BLE001 - whatever it raises, this query is the cause
                return QueryRejected(query, _why_rejected(query, e))
        return None

    def encode_passages(self, passages: Sequence[Passage]) -> np.ndarray:
        texts = [p.contents for p in passages]
        return self._encode(self.model.encode_corpus, texts, self.cfg.max_passage_tokens)
