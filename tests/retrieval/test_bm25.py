"""BM25 retriever over small hand-written corpora and the KILT sample."""

from __future__ import annotations

import pytest

from recipe.retrieval.base import Passage, RetrievalInputError, Retriever
from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.corpus import read_corpus

PASSAGES = [
    Passage("0", "Paris", "Paris is the capital and largest city of France."),
    Passage("1", "Berlin", "Berlin is the capital of Germany, on the Spree river."),
    Passage("2", "Danube", "The Danube flows through Vienna and Budapest to the Black Sea."),
    Passage("3", "Spree", "The Spree is a river that flows through Saxony and Berlin."),
]


def test_ranks_matching_passages_first():
    retriever = BM25Retriever(PASSAGES)
    assert isinstance(retriever, Retriever)
    hits = retriever.search(["capital of France", "river Spree", "Vienna Budapest"], k=2)
    assert [len(h) for h in hits] == [2, 2, 2]
    assert hits[0][0].passage.id == "0"
    assert {h.passage.id for h in hits[1]} == {"1", "3"}
    assert hits[2][0].passage.id == "2"
    assert all(h[0].score >= h[1].score for h in hits)
    assert hits[0][0].score > 0


def test_k_larger_than_corpus_and_empty_batch():
    retriever = BM25Retriever(PASSAGES)
    assert [len(h) for h in retriever.search(["berlin"], k=10)] == [4]
    assert retriever.search([], k=3) == []


def test_save_load_roundtrip(tmp_path):
    retriever = BM25Retriever(PASSAGES)
    retriever.save(tmp_path)
    loaded = BM25Retriever.load(tmp_path, PASSAGES)
    queries = ["capital of Germany", "Black Sea"]
    assert loaded.search(queries, 3) == retriever.search(queries, 3)


def test_finds_kilt_pages_by_title(r1searcher_data):
    path = r1searcher_data / "corpus_samples" / "filtered_kilt_sample_100.jsonl"
    passages = list(read_corpus(path))
    retriever = BM25Retriever(passages)
    hits = retriever.search(["International Atomic Time", "Alain Connes"], k=3)
    assert hits[0][0].passage.title == "International Atomic Time"
    assert hits[1][0].passage.title == "Alain Connes"


def test_no_indexable_word_is_an_input_error():
    with pytest.raises(RetrievalInputError, match="no passages"):
        BM25Retriever([])
    # Stopwords and one-letter words are all bm25s' tokenizer drops.
    with pytest.raises(RetrievalInputError, match="no word BM25 can index"):
        BM25Retriever([Passage("0", "A", "the a"), Passage("1", "I", "of it")])
