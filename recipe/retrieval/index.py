"""Build an index folder from a corpus, resumably, and open it again as a `Retriever`.

Folder layout (`retriever.index_dir`):
- `docs.jsonl` + `docs.offsets.npy`: the doc store (row -> passage), written first;
- dense: `embeddings.f32`, a float32 memmap of shape (count, dim) filled batch by batch, and
  `index.faiss`, built from it with `retriever.faiss_factory` (inner product);
- bm25: `bm25/`, the bm25s matrices;
- `build_state.json` while a build is under way: how many memmap rows are done (rewritten
  atomically after each flushed batch), so a killed build resumes where it stopped;
- `manifest.json`, written last: the build identity (corpus SHA-256, encoder, factory ...).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from recipe.atomic import atomic_file
from recipe.retrieval.base import Retriever
from recipe.retrieval.bm25 import BM25_SUBDIR, BM25Retriever
from recipe.retrieval.corpus import CorpusStats, read_corpus
from recipe.retrieval.dense import DenseRetriever, maybe_to_gpus, set_search_parameters
from recipe.retrieval.docstore import (
    DOCS_FILE,
    OFFSETS_FILE,
    DocStore,
    docstore_exists,
    write_docstore,
)
from recipe.retrieval.manifest import (
    MANIFEST_FILE,
    MANIFEST_VERSION,
    IndexMismatch,
    build_identity,
    check_manifest,
    corpus_fingerprint,
    differences,
    read_manifest,
    resolved_format,
    write_json_atomic,
)
from recipe.schema import RetrieverConfig

log = logging.getLogger(__name__)

STATE_FILE = "build_state.json"
EMBEDDINGS_FILE = "embeddings.f32"
INDEX_FILE = "index.faiss"
# Rows copied from the memmap per faiss `add` call: bounds the extra RAM, not the result.
ADD_CHUNK_ROWS = 1 << 16
TRAIN_SAMPLE_SEED = 0


class BuildInterrupted(RuntimeError):
    """The build stopped after `max_batches` batches; calling it again resumes."""


def _read_state(index_dir: Path, identity: dict) -> dict:
    """The partial build's state; a partial build of something else is refused."""
    path = index_dir / STATE_FILE
    if not path.is_file():
        return {"identity": identity, "rows_done": 0}
    state = json.loads(path.read_text())
    problems = differences(identity, state["identity"])
    if problems:
        raise IndexMismatch(
            f"{index_dir} holds a partial build of another index:\n  - "
            + "\n  - ".join(problems)
            + "\nDelete the folder or point retriever.index_dir elsewhere."
        )
    return state


def _ensure_docstore(cfg: RetrieverConfig, index_dir: Path, fmt: str, state: dict) -> int:
    if docstore_exists(index_dir) and "count" in state:
        return state["count"]
    stats = CorpusStats()
    passages = read_corpus(cfg.corpus, fmt, passage_words=cfg.passage_words, stats=stats)
    count = write_docstore(passages, index_dir)
    log.info("doc store: %s", stats.summary())
    state.update(count=count, corpus_stats=stats.summary(), rows_done=0)
    write_json_atomic(index_dir / STATE_FILE, state)
    return count


def _embed(cfg, index_dir: Path, state: dict, encoder, max_batches, progress: bool) -> None:
    """Fill the memmap from row `rows_done` on, recording progress after every flushed batch."""
    count, dim = state["count"], encoder.dim
    path = index_dir / EMBEDDINGS_FILE
    if state.get("dim") not in (None, dim):
        raise IndexMismatch(f"partial embeddings have dim {state['dim']}, the encoder {dim}")
    mode = "r+" if path.is_file() and state["rows_done"] > 0 else "w+"
    vectors = np.memmap(path, dtype=np.float32, mode=mode, shape=(count, dim))
    state["dim"] = dim
    store = DocStore(index_dir)
    bar = tqdm(total=count, initial=state["rows_done"], unit="psg", disable=not progress)
    try:
        for batches, start in enumerate(range(state["rows_done"], count, cfg.batch_size)):
            if max_batches is not None and batches >= max_batches:
                raise BuildInterrupted(f"stopped after {batches} batches at row {start}")
            batch = encoder.encode_passages(store.slice(start, start + cfg.batch_size))
            vectors[start : start + len(batch)] = batch
            vectors.flush()
            state["rows_done"] = start + len(batch)
            write_json_atomic(index_dir / STATE_FILE, state)
            bar.update(len(batch))
    finally:
        bar.close()
        store.close()
        del vectors


def _train_sample(vectors: np.ndarray, size: int) -> np.ndarray:
    count = len(vectors)
    if count <= size:
        return np.ascontiguousarray(vectors[:])
    rows = np.sort(np.random.default_rng(TRAIN_SAMPLE_SEED).choice(count, size, replace=False))
    return np.ascontiguousarray(vectors[rows])


def _build_faiss(cfg: RetrieverConfig, index_dir: Path, count: int, dim: int) -> None:
    vectors = np.memmap(index_dir / EMBEDDINGS_FILE, dtype=np.float32, mode="r", shape=(count, dim))
    index = faiss.index_factory(dim, cfg.faiss_factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        log.info("training %s on %d vectors", cfg.faiss_factory, min(count, cfg.faiss_train_size))
        index.train(_train_sample(vectors, cfg.faiss_train_size))
    for start in range(0, count, ADD_CHUNK_ROWS):
        index.add(np.ascontiguousarray(vectors[start : start + ADD_CHUNK_ROWS]))
    with atomic_file(index_dir / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))


def remove_index_files(index_dir: Path) -> None:
    """Delete what `build_index` writes (and nothing else) from `index_dir`."""
    names = [MANIFEST_FILE, STATE_FILE, EMBEDDINGS_FILE, INDEX_FILE, DOCS_FILE, OFFSETS_FILE]
    for name in names:
        (index_dir / name).unlink(missing_ok=True)
    shutil.rmtree(index_dir / BM25_SUBDIR, ignore_errors=True)


def _make_encoder(cfg: RetrieverConfig):
    from recipe.retrieval.encoders import DenseEncoder

    return DenseEncoder(cfg)


def build_index(
    cfg: RetrieverConfig,
    *,
    encoder=None,
    max_batches: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Build (or finish building) `cfg.index_dir`; a complete matching index is left as is.

    `max_batches` stops the encoding pass after that many batches with `BuildInterrupted`,
    leaving exactly the state a killed build leaves; the next call resumes from it.
    `overwrite` replaces a complete index built from other inputs instead of refusing.
    """
    index_dir = Path(cfg.index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    corpus = corpus_fingerprint(cfg.corpus)
    identity = build_identity(cfg, corpus["sha256"], resolved_format(cfg))
    if (index_dir / MANIFEST_FILE).is_file():
        problems = differences(identity, read_manifest(index_dir)["identity"])
        if not problems:
            log.info("index %s is up to date", index_dir)
            return index_dir
        if not overwrite:
            raise IndexMismatch(
                f"{index_dir} already holds a different index:\n  - "
                + "\n  - ".join(problems)
                + "\nPass overwrite (--overwrite) to replace it."
            )
        log.info("replacing the index in %s: %s", index_dir, "; ".join(problems))
        remove_index_files(index_dir)
    state = _read_state(index_dir, identity)
    count = _ensure_docstore(cfg, index_dir, identity["corpus_format"], state)
    if cfg.kind == "bm25":
        BM25Retriever(DocStore(index_dir), k1=cfg.bm25_k1, b=cfg.bm25_b).save(index_dir)
        dim = None
    else:
        encoder = encoder if encoder is not None else _make_encoder(cfg)
        _embed(cfg, index_dir, state, encoder, max_batches, progress)
        dim = state["dim"]
        _build_faiss(cfg, index_dir, count, dim)
    manifest = {
        "version": MANIFEST_VERSION,
        "identity": identity,
        "corpus": corpus,
        "count": count,
        "dim": dim,
        "corpus_stats": state.get("corpus_stats"),
    }
    write_json_atomic(index_dir / MANIFEST_FILE, manifest)
    (index_dir / STATE_FILE).unlink(missing_ok=True)
    return index_dir


def open_index(cfg: RetrieverConfig, *, encoder=None) -> Retriever:
    """The in-process retriever over a built index; refuses one that does not match `cfg`."""
    manifest = read_manifest(cfg.index_dir)
    check_manifest(cfg, manifest)
    store = DocStore(cfg.index_dir)
    if cfg.kind == "bm25":
        return BM25Retriever.load(cfg.index_dir, store)
    index = faiss.read_index(str(Path(cfg.index_dir) / INDEX_FILE))
    set_search_parameters(index, cfg)
    index = maybe_to_gpus(index, cfg)
    encoder = encoder if encoder is not None else _make_encoder(cfg)
    if encoder.dim != manifest["dim"]:
        raise IndexMismatch(f"index dim {manifest['dim']} != encoder dim {encoder.dim}")
    return DenseRetriever(encoder, index, store)
