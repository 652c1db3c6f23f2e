"""Index build, resume after an interruption, manifests, factories and the doc store."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from recipe.retrieval.base import Passage, RetrievalInputError
from recipe.retrieval.corpus import EmptyCorpus
from recipe.retrieval.docstore import DocStore, write_docstore
from recipe.retrieval.index import (
    EMBEDDINGS_FILE,
    STATE_FILE,
    BuildInterrupted,
    build_index,
    open_index,
)
from recipe.retrieval.manifest import MANIFEST_FILE, IndexMismatch, IndexMissing, read_manifest

from .conftest import FACTS, write_flashrag


class CountingEncoder:
    """The real encoder, counting the passages it was asked to encode."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.dim = encoder.dim
        self.encoded = 0

    def encode_passages(self, passages):
        self.encoded += len(passages)
        return self.encoder.encode_passages(passages)

    def encode_queries(self, queries):
        return self.encoder.encode_queries(queries)


def _embeddings(cfg) -> np.ndarray:
    manifest = read_manifest(cfg.index_dir)
    shape = (manifest["count"], manifest["dim"])
    return np.array(np.memmap(Path(cfg.index_dir) / EMBEDDINGS_FILE, np.float32, "r", shape=shape))


def test_docstore_roundtrip(tmp_path):
    passages = [Passage("a", "T1", "x\ny \u2028 é"), Passage("b", "T2", 'quote " and \t tab')]
    assert write_docstore(iter(passages), tmp_path) == 2
    store = DocStore(tmp_path)
    assert len(store) == 2 and list(store) == passages
    assert store[-1] == passages[1] and store.slice(0, 5) == passages
    with pytest.raises(IndexError):
        store[2]


def test_dense_index_finds_the_right_passages(dense_retriever, dense_cfg):
    hits = dense_retriever.search(["capital of Japan", "who wrote Hamlet", "biggest planet"], 3)
    assert [h[0].passage.title for h in hits] == ["Tokyo", "Hamlet", "Jupiter"]
    assert all(h[0].score >= h[1].score >= h[2].score for h in hits)
    manifest = read_manifest(dense_cfg.index_dir)
    assert manifest["count"] == len(FACTS) and manifest["dim"] == 384
    assert manifest["identity"]["faiss_factory"] == "Flat"
    assert not (Path(dense_cfg.index_dir) / STATE_FILE).exists()


def test_interrupted_build_resumes_to_the_clean_result(
    dense_cfg, dense_retriever, minilm_encoder, tmp_path
):
    cfg = replace(dense_cfg, index_dir=str(tmp_path / "resumed"))
    with pytest.raises(BuildInterrupted):
        build_index(cfg, encoder=minilm_encoder, max_batches=2, progress=False)
    state = json.loads((tmp_path / "resumed" / STATE_FILE).read_text())
    assert state["rows_done"] == 2 * cfg.batch_size
    with pytest.raises(IndexMissing):
        open_index(cfg, encoder=minilm_encoder)

    counting = CountingEncoder(minilm_encoder)
    build_index(cfg, encoder=counting, progress=False)
    assert counting.encoded == len(FACTS) - 2 * cfg.batch_size
    np.testing.assert_allclose(_embeddings(cfg), _embeddings(dense_cfg), atol=1e-5)
    resumed = open_index(cfg, encoder=minilm_encoder)
    queries = ["river through Budapest", "antibiotic discovery", "board game"]
    assert [[h.passage.id for h in hs] for hs in resumed.search(queries, 4)] == [
        [h.passage.id for h in hs] for hs in dense_retriever.search(queries, 4)
    ]
    # A finished build is left alone.
    again = CountingEncoder(minilm_encoder)
    build_index(cfg, encoder=again, progress=False)
    assert again.encoded == 0


def test_mismatched_index_is_refused(dense_cfg, dense_retriever, minilm_encoder, tmp_path):
    with pytest.raises(IndexMismatch, match="pooling: index has 'mean', config wants 'cls'"):
        open_index(replace(dense_cfg, pooling="cls"), encoder=minilm_encoder)
    with pytest.raises(IndexMismatch, match="faiss_factory"):
        open_index(replace(dense_cfg, faiss_factory="HNSW32"), encoder=minilm_encoder)
    other_corpus = write_flashrag(tmp_path / "other.jsonl", FACTS[:-1])
    with pytest.raises(IndexMismatch, match="corpus_sha256"):
        open_index(replace(dense_cfg, corpus=str(other_corpus)), encoder=minilm_encoder)
    with pytest.raises(IndexMismatch, match="already holds a different index"):
        build_index(replace(dense_cfg, corpus=str(other_corpus)), encoder=minilm_encoder)
    with pytest.raises(IndexMissing, match="no index at"):
        open_index(replace(dense_cfg, index_dir=str(tmp_path / "none")))


def test_partial_build_of_another_index_is_refused(dense_cfg, minilm_encoder, tmp_path):
    cfg = replace(dense_cfg, index_dir=str(tmp_path / "partial"))
    with pytest.raises(BuildInterrupted):
        build_index(cfg, encoder=minilm_encoder, max_batches=1, progress=False)
    with pytest.raises(IndexMismatch, match="partial build"):
        build_index(replace(cfg, normalize=False), encoder=minilm_encoder, progress=False)


@pytest.mark.parametrize("factory", ["IVF2,Flat", "HNSW8", "SQ8"])
def test_trained_factories(factory, dense_cfg, dense_retriever, minilm_encoder, tmp_path):
    cfg = replace(dense_cfg, index_dir=str(tmp_path / "f"), faiss_factory=factory, faiss_nprobe=2)
    build_index(cfg, encoder=minilm_encoder, progress=False)
    retriever = open_index(cfg, encoder=minilm_encoder)
    queries = ["capital of Italy", "keyboard instrument"]
    top = [hs[0].passage.title for hs in retriever.search(queries, 1)]
    assert top == ["Rome", "Piano"]


def test_bm25_index_dir(bm25_cfg):
    build_index(bm25_cfg, progress=False)
    retriever = open_index(bm25_cfg)
    hits = retriever.search(["Shakespeare tragedy", "honey"], 2)
    assert [h[0].passage.title for h in hits] == ["Hamlet", "Honey bee"]
    assert read_manifest(bm25_cfg.index_dir)["identity"]["kind"] == "bm25"
    with pytest.raises(IndexMismatch, match="kind"):
        open_index(replace(bm25_cfg, kind="dense"))


def test_overwrite_replaces_an_index_of_other_inputs(bm25_cfg, tmp_path):
    build_index(bm25_cfg, progress=False)
    smaller = write_flashrag(tmp_path / "smaller.jsonl", FACTS[:5])
    cfg = replace(bm25_cfg, corpus=str(smaller))
    with pytest.raises(IndexMismatch, match="overwrite"):
        build_index(cfg, progress=False)
    build_index(cfg, progress=False, overwrite=True)
    assert read_manifest(cfg.index_dir)["count"] == 5
    assert len(open_index(cfg).search(["Paris"], 10)[0]) == 5


def test_a_corpus_of_no_passages_is_a_build_error(bm25_cfg, dense_cfg, minilm_encoder, tmp_path):
    # The right file read with the wrong reader: every line is skipped.
    wrong_reader = replace(bm25_cfg, corpus_format="kilt")
    with pytest.raises(EmptyCorpus, match=r"'kilt' reader.*16 bad lines skipped"):
        build_index(wrong_reader, progress=False)
    assert not (Path(bm25_cfg.index_dir) / MANIFEST_FILE).exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    cfg = replace(dense_cfg, corpus=str(empty), corpus_format="flashrag")
    cfg = replace(cfg, index_dir=str(tmp_path / "dense"))
    with pytest.raises(EmptyCorpus, match=r"no passages.*'flashrag' reader.*0 lines"):
        build_index(cfg, encoder=minilm_encoder, progress=False)
    assert not (tmp_path / "dense" / MANIFEST_FILE).exists()


def test_bad_lines_leave_no_temporary_file(bm25_cfg, tmp_path):
    corpus = write_flashrag(tmp_path / "corpus.jsonl")
    with open(corpus, "ab") as f:
        f.write(b'{"id": "x", "contents": "T\\n\xff"}\n')
    cfg = replace(bm25_cfg, corpus=str(corpus))
    build_index(cfg, progress=False)
    manifest = read_manifest(cfg.index_dir)
    assert manifest["count"] == len(FACTS) and "1 bad lines" in manifest["corpus_stats"]
    assert not list(Path(cfg.index_dir).glob("*.tmp"))


@pytest.mark.parametrize(
    ("factory", "message"),
    [("Flatt", "could not parse"), ("IVF64,Flat", "64 IVF lists need at least 64")],
)
def test_a_bad_factory_is_refused_before_embedding(
    factory, message, dense_cfg, minilm_encoder, tmp_path
):
    cfg = replace(dense_cfg, index_dir=str(tmp_path / "f"), faiss_factory=factory)
    counting = CountingEncoder(minilm_encoder)
    with pytest.raises(RetrievalInputError, match=message):
        build_index(cfg, encoder=counting, progress=False)
    assert counting.encoded == 0


def test_a_changed_factory_reuses_the_embeddings(dense_cfg, minilm_encoder, tmp_path):
    cfg = replace(dense_cfg, index_dir=str(tmp_path / "f"))
    with pytest.raises(BuildInterrupted):
        build_index(cfg, encoder=minilm_encoder, max_batches=1, progress=False)
    # A partial build under another factory resumes: the embeddings do not depend on it.
    counting = CountingEncoder(minilm_encoder)
    hnsw = replace(cfg, faiss_factory="HNSW8")
    build_index(hnsw, encoder=counting, progress=False)
    assert counting.encoded == len(FACTS) - cfg.batch_size
    # A complete index under another factory: refused without overwrite, rebuilt from the
    # same embeddings with it.
    sq8 = replace(cfg, faiss_factory="SQ8")
    with pytest.raises(IndexMismatch, match="overwrite"):
        build_index(sq8, encoder=counting, progress=False)
    counting.encoded = 0
    build_index(sq8, encoder=counting, progress=False, overwrite=True)
    assert counting.encoded == 0
    assert read_manifest(cfg.index_dir)["identity"]["faiss_factory"] == "SQ8"
    np.testing.assert_allclose(_embeddings(sq8), _embeddings(dense_cfg), atol=1e-5)
    top = open_index(sq8, encoder=minilm_encoder).search(["capital of Italy"], 1)[0][0]
    assert top.passage.title == "Rome"


def test_overwrite_clears_a_partial_build_of_another_index(dense_cfg, minilm_encoder, tmp_path):
    cfg = replace(dense_cfg, index_dir=str(tmp_path / "partial"))
    with pytest.raises(BuildInterrupted):
        build_index(cfg, encoder=minilm_encoder, max_batches=1, progress=False)
    counting = CountingEncoder(minilm_encoder)
    other = replace(cfg, normalize=False)
    build_index(other, encoder=counting, progress=False, overwrite=True)
    assert counting.encoded == len(FACTS)
    assert read_manifest(cfg.index_dir)["identity"]["normalize"] is False


def test_a_factory_that_fails_to_train_keeps_the_embeddings(dense_cfg, minilm_encoder, tmp_path):
    # PQ8 trains 256 centroids per sub-quantizer: 16 passages are too few, found in training.
    cfg = replace(dense_cfg, index_dir=str(tmp_path / "f"), faiss_factory="IVF2,PQ8")
    with pytest.raises(RetrievalInputError, match="embeddings are kept"):
        build_index(cfg, encoder=minilm_encoder, progress=False)
    counting = CountingEncoder(minilm_encoder)
    build_index(replace(cfg, faiss_factory="IVF2,Flat"), encoder=counting, progress=False)
    assert counting.encoded == 0
    assert read_manifest(cfg.index_dir)["identity"]["faiss_factory"] == "IVF2,Flat"


def test_a_truncated_doc_store_is_refused_when_opened(bm25_cfg, capsys):
    from recipe.retrieval.docstore import DOCS_FILE, OFFSETS_FILE, DocStoreDamaged
    from recipe.retrieval.server import main as serve_main

    build_index(bm25_cfg, progress=False)
    folder = Path(bm25_cfg.index_dir)
    docs, offsets = folder / DOCS_FILE, folder / OFFSETS_FILE
    whole_docs, whole_offsets = docs.read_bytes(), offsets.read_bytes()
    docs.write_bytes(whole_docs[:-40])  # the last passage cut off: a copy that stopped
    with pytest.raises(DocStoreDamaged, match=rf"{docs} is {len(whole_docs) - 40} bytes where"):
        open_index(bm25_cfg)
    args = [f"retriever.{k}={getattr(bm25_cfg, k)}" for k in ("kind", "corpus", "index_dir")]
    assert serve_main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"server: {docs} is ") and "build_index --overwrite" in err
    docs.write_bytes(whole_docs)
    offsets.write_bytes(whole_offsets[:-16])
    with pytest.raises(DocStoreDamaged, match=rf"{offsets} is unreadable"):
        open_index(bm25_cfg)
    # Both files cut at the same passage agree with each other, not with the manifest's count.
    count = len(FACTS)
    offsets.write_bytes(whole_offsets)
    store = DocStore(folder)
    kept = [store[i] for i in range(count - 1)]
    store.close()
    write_docstore(kept, folder)
    with pytest.raises(DocStoreDamaged, match=f"lists {count - 1} passages where the index"):
        open_index(bm25_cfg)
