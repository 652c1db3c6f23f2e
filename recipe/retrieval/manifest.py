"""The index manifest: what an index was built from, checked before it is used.

An index built with another encoder, pooling, factory or corpus silently returns wrong
passages, so loading compares the manifest with the config and refuses a mismatch, naming each
differing field. The corpus is identified by its SHA-256; the file's size and modification
time are stored too so that an unchanged corpus is recognised without re-hashing it.
"""

from __future__ import annotations

import json
from pathlib import Path

from recipe.atomic import write_json
from recipe.fingerprint import stat_digest
from recipe.retrieval.base import RetrievalInputError
from recipe.retrieval.corpus import detect_format
from recipe.schema import RetrieverConfig

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
# Identity fields that only the last step of a build reads (the faiss index, the BM25
# matrices): the doc store and the embeddings do not depend on them, so a build that differs
# only there keeps those.
INDEX_ONLY_FIELDS = ("faiss_factory", "bm25_k1", "bm25_b")


class IndexMismatch(RetrievalInputError, RuntimeError):
    """The index on disk was built from a different corpus or encoder than the config names."""


class IndexMissing(RetrievalInputError, FileNotFoundError):
    """No complete index (manifest) in the index folder."""


def write_json_atomic(path: Path, data: dict) -> None:
    """Index state survives a crash: flushed to disk before the rename."""
    write_json(path, data, fsync=True, sort_keys=True, ensure_ascii=True)


def corpus_fingerprint(path: str | Path, known: dict | None = None) -> dict:
    """{path, size, mtime_ns, sha256}; reuses `known`'s hash when size and mtime are equal."""
    return {"path": str(path), **stat_digest(path, known)}


def encoder_identity(cfg: RetrieverConfig) -> dict:
    """Everything about the encoder that changes the vectors; stored in the index manifest."""
    return {
        "encoder": cfg.encoder,
        "pooling": cfg.pooling,
        "normalize": cfg.normalize,
        "query_instruction": cfg.query_instruction,
        "max_passage_tokens": cfg.max_passage_tokens,
    }


def build_identity(cfg: RetrieverConfig, corpus_sha256: str, corpus_format: str) -> dict:
    """The fields that must agree between a config and an index built for it."""
    identity = {
        "kind": cfg.kind,
        "corpus_sha256": corpus_sha256,
        "corpus_format": corpus_format,
        "passage_words": cfg.passage_words,
    }
    if cfg.kind == "dense":
        identity |= encoder_identity(cfg) | {"faiss_factory": cfg.faiss_factory}
    else:
        identity |= {"bm25_k1": cfg.bm25_k1, "bm25_b": cfg.bm25_b}
    return identity


def embeddings_identity(identity: dict) -> dict:
    """The part of a build identity that the doc store and the embeddings depend on."""
    return {key: value for key, value in identity.items() if key not in INDEX_ONLY_FIELDS}


def resolved_format(cfg: RetrieverConfig) -> str:
    return detect_format(cfg.corpus) if cfg.corpus_format == "auto" else cfg.corpus_format


def differences(expected: dict, found: dict) -> list[str]:
    return [
        f"{key}: index has {found.get(key)!r}, config wants {value!r}"
        for key, value in expected.items()
        if found.get(key) != value
    ]


def read_manifest(index_dir: str | Path) -> dict:
    if Path(index_dir).is_file():
        raise IndexMissing(f"retriever.index_dir {index_dir} is a file, not an index folder")
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        raise IndexMissing(
            f"no index at {index_dir} (no {MANIFEST_FILE}); build it with "
            f"`make index` / `python -m recipe.retrieval.build_index --config ...`"
        )
    return json.loads(path.read_text())


def check_manifest(cfg: RetrieverConfig, manifest: dict) -> None:
    """Refuse an index whose manifest disagrees with `cfg` (the corpus only when present)."""
    identity = manifest["identity"]
    sha256, fmt = identity["corpus_sha256"], identity["corpus_format"]
    if Path(cfg.corpus).is_file():
        sha256 = corpus_fingerprint(cfg.corpus, manifest["corpus"])["sha256"]
        fmt = resolved_format(cfg)
    expected = build_identity(cfg, sha256, fmt)
    problems = differences(expected, identity)
    if problems:
        raise IndexMismatch(
            f"index {cfg.index_dir} does not match the config ({'; '.join(problems)}); rebuild "
            "it (build_index --overwrite) or point retriever.index_dir elsewhere"
        )
