"""Build an index folder from a corpus, resumably, and open it again as a `Retriever`.

Folder layout (`retriever.index_dir`):
- `docs.jsonl` + `docs.offsets.npy`: the doc store (row -> passage), written first;
- dense: `embeddings.f32`, a float32 memmap of shape (count, dim) filled batch by batch, and
  `index.faiss`, built from it with `retriever.faiss_factory` (inner product);
- bm25: `bm25/`, the bm25s matrices;
- `build_state.json` while a build is under way: how many memmap rows are done (rewritten
  atomically after each flushed batch), so a killed build resumes where it stopped;
- `manifest.json`, written last: the build identity (corpus SHA-256, encoder, factory ...).

Checked before the expensive part (the embedding pass): the corpus and folder paths, the
encoder (loaded first), the faiss factory (built for the encoder's dimension, then checked
against the passage count) and a corpus that yields no passage. The doc store and the
embeddings depend on the corpus and the encoder only, so a build that changes the factory (or
the BM25 parameters) keeps them: a partial build resumes, a complete one is rebuilt from them
under `overwrite`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import faiss
import numpy as np
from tqdm import tqdm

from recipe.atomic import atomic_file
from recipe.retrieval.base import RetrievalInputError, Retriever
from recipe.retrieval.bm25 import BM25_SUBDIR, BM25Retriever
from recipe.retrieval.corpus import CorpusStats, EmptyCorpus, read_corpus
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
    embeddings_identity,
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
# faiss errors read "Error in <signature> at <file>:<line>: <reason>"; the reason is shown.
FAISS_REASON = re.compile(r" at \S+:\d+: (?P<reason>.*)$", re.DOTALL)
# Bad lines quoted in the error for a corpus of no passages (the log has up to ten).
EMPTY_CORPUS_EXAMPLES = 1


class BuildInterrupted(RuntimeError):
    """The build stopped after `max_batches` batches; calling it again resumes."""


def _check_paths(cfg: RetrieverConfig) -> None:
    corpus, index_dir = Path(cfg.corpus), Path(cfg.index_dir)
    if not corpus.exists():
        raise RetrievalInputError(f"retriever.corpus {corpus} does not exist")
    if corpus.is_dir():
        raise RetrievalInputError(f"retriever.corpus {corpus} is a folder, not a corpus file")
    if index_dir.exists() and not index_dir.is_dir():
        raise RetrievalInputError(f"retriever.index_dir {index_dir} is a file, not a folder")


def _faiss_reason(error: RuntimeError) -> str:
    text = str(error).strip()
    match = FAISS_REASON.search(text)
    return (match["reason"] if match else text).strip().splitlines()[0]


def check_factory(cfg: RetrieverConfig, dim: int, count: int | None = None) -> None:
    """Refuse a factory faiss cannot build for `dim` or (given `count`) cannot train."""
    factory = cfg.faiss_factory
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise RetrievalInputError(
            f"retriever.faiss_factory {factory!r}: faiss cannot build it for dimension {dim} "
            f"({_faiss_reason(e)})"
        ) from e
    ivf = faiss.try_extract_index_ivf(index)
    if count is None or ivf is None:
        return
    train = min(count, cfg.faiss_train_size)
    if ivf.nlist > train:
        raise RetrievalInputError(
            f"retriever.faiss_factory {factory!r}: {ivf.nlist} IVF lists need at least "
            f"{ivf.nlist} training vectors, there are {train} ({count} passages, "
            f"retriever.faiss_train_size={cfg.faiss_train_size})"
        )


def _read_state(index_dir: Path, identity: dict, overwrite: bool) -> dict:
    """The partial build's state; a partial build of something else is refused or cleared."""
    wanted = embeddings_identity(identity)
    path = index_dir / STATE_FILE
    if not path.is_file():
        return {"identity": wanted, "rows_done": 0}
    state = json.loads(path.read_text())
    problems = differences(wanted, state["identity"])
    if not problems:
        state["identity"] = wanted
        return state
    if not overwrite:
        raise IndexMismatch(
            f"{index_dir} holds a partial build of another index ({'; '.join(problems)}); "
            "pass overwrite (--overwrite) to replace it"
        )
    log.info("replacing the partial build in %s: %s", index_dir, "; ".join(problems))
    remove_index_files(index_dir)
    return {"identity": wanted, "rows_done": 0}


def _clear_for_rebuild(index_dir: Path, manifest: dict, identity: dict) -> None:
    """Make way for a build of `identity` where `manifest`'s index stands; its doc store and
    embeddings stay (as a finished partial build) when they do not depend on what changed."""
    problems = differences(identity, manifest["identity"])
    log.info("replacing the index in %s: %s", index_dir, "; ".join(problems))
    count, dim = manifest["count"], manifest["dim"]
    embeddings = index_dir / EMBEDDINGS_FILE
    size = None if dim is None else count * dim * np.dtype(np.float32).itemsize
    complete = size is None or (embeddings.is_file() and embeddings.stat().st_size == size)
    if differences(embeddings_identity(identity), manifest["identity"]) or not complete:
        remove_index_files(index_dir)
        return
    state = {"identity": embeddings_identity(identity), "rows_done": count, "count": count}
    state |= {"dim": dim, "corpus_stats": manifest.get("corpus_stats")}
    # The state first: a crash after it leaves a resumable build, never a lost memmap.
    write_json_atomic(index_dir / STATE_FILE, state)
    for name in (MANIFEST_FILE, INDEX_FILE):
        (index_dir / name).unlink(missing_ok=True)
    shutil.rmtree(index_dir / BM25_SUBDIR, ignore_errors=True)
    log.info("keeping the doc store and the embeddings (%d passages)", count)


def _ensure_docstore(cfg: RetrieverConfig, index_dir: Path, fmt: str, state: dict) -> int:
    if docstore_exists(index_dir) and "count" in state:
        return state["count"]
    stats = CorpusStats()
    passages = read_corpus(cfg.corpus, fmt, passage_words=cfg.passage_words, stats=stats)
    count = write_docstore(passages, index_dir)
    if count == 0:
        for name in (DOCS_FILE, OFFSETS_FILE):
            (index_dir / name).unlink(missing_ok=True)
        raise EmptyCorpus(
            f"{cfg.corpus}: no passages read with the {fmt!r} reader "
            f"({stats.summary(EMPTY_CORPUS_EXAMPLES)}); check retriever.corpus_format"
        )
    log.info("doc store: %s", stats.summary())
    state.update(count=count, corpus_stats=stats.summary(), rows_done=0)
    write_json_atomic(index_dir / STATE_FILE, state)
    return count


def _embed(cfg, index_dir: Path, state: dict, encoder, max_batches, progress: bool) -> None:
    """Fill the memmap from row `rows_done` on, recording progress after every flushed batch."""
    count, dim = state["count"], encoder.dim
    path = index_dir / EMBEDDINGS_FILE
    if not path.is_file():  # rows recorded as done are only trusted with their file
        state["rows_done"] = 0
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


def build_faiss_index(vectors: np.ndarray, factory: str, train_size: int) -> faiss.Index:
    """A `factory` index (inner product) over `vectors` (a memmap is fine): trained on a seeded
    sample of `train_size` rows when it needs training, then filled chunk by chunk. faiss's
    RuntimeError passes through. The index builder and benchmarks/index_options.py share it."""
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        log.info("training %s on %d vectors", factory, min(len(vectors), train_size))
        index.train(_train_sample(vectors, train_size))
    for start in range(0, len(vectors), ADD_CHUNK_ROWS):
        index.add(np.ascontiguousarray(vectors[start : start + ADD_CHUNK_ROWS]))
    return index


def _build_faiss(cfg: RetrieverConfig, index_dir: Path, count: int, dim: int) -> None:
    vectors = np.memmap(index_dir / EMBEDDINGS_FILE, dtype=np.float32, mode="r", shape=(count, dim))
    try:
        index = build_faiss_index(vectors, cfg.faiss_factory, cfg.faiss_train_size)
    except RuntimeError as e:
        raise RetrievalInputError(
            f"retriever.faiss_factory {cfg.faiss_factory!r}: faiss cannot build the index "
            f"({_faiss_reason(e)}); the embeddings are kept, a rerun with another factory "
            "only builds the index"
        ) from e
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
    `overwrite` replaces an index (complete or partial) built from other inputs instead of
    refusing; the doc store and embeddings stay when they do not depend on what changed.
    A user's mistake raises `RetrievalInputError` before anything is written where it can.
    """
    _check_paths(cfg)
    index_dir = Path(cfg.index_dir)
    corpus = corpus_fingerprint(cfg.corpus)
    identity = build_identity(cfg, corpus["sha256"], resolved_format(cfg))
    manifest = read_manifest(index_dir) if (index_dir / MANIFEST_FILE).is_file() else None
    if manifest is not None:
        problems = differences(identity, manifest["identity"])
        if not problems:
            log.info("index %s is up to date", index_dir)
            return index_dir
        if not overwrite:
            raise IndexMismatch(
                f"{index_dir} already holds a different index ({'; '.join(problems)}); "
                "pass overwrite (--overwrite) to replace it"
            )
    if cfg.kind == "dense":
        encoder = encoder if encoder is not None else _make_encoder(cfg)
        check_factory(cfg, encoder.dim)
    index_dir.mkdir(parents=True, exist_ok=True)
    if manifest is not None:
        _clear_for_rebuild(index_dir, manifest, identity)
    state = _read_state(index_dir, identity, overwrite)
    count = _ensure_docstore(cfg, index_dir, identity["corpus_format"], state)
    if cfg.kind == "bm25":
        BM25Retriever(DocStore(index_dir), k1=cfg.bm25_k1, b=cfg.bm25_b).save(index_dir)
        dim = None
    else:
        check_factory(cfg, encoder.dim, count)
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
    store = DocStore(cfg.index_dir, expected_count=manifest.get("count"))
    if cfg.kind == "bm25":
        return BM25Retriever.load(cfg.index_dir, store)
    index = faiss.read_index(str(Path(cfg.index_dir) / INDEX_FILE))
    set_search_parameters(index, cfg)
    try:
        index = maybe_to_gpus(index, cfg)
    except RuntimeError as e:  # a type faiss-gpu has no GPU version of
        raise RetrievalInputError(
            f"retriever.faiss_factory {cfg.faiss_factory!r}: faiss cannot place it on the GPU "
            f"({_faiss_reason(e)}); GPU indexes are Flat and IVF (IVF...,Flat / SQ8 / PQ), "
            "or set retriever.faiss_gpu=false to search it on the CPU"
        ) from e
    encoder = encoder if encoder is not None else _make_encoder(cfg)
    if encoder.dim != manifest["dim"]:
        raise IndexMismatch(f"index dim {manifest['dim']} != encoder dim {encoder.dim}")
    return DenseRetriever(encoder, index, store)
