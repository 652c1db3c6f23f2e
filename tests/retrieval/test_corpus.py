"""Corpus readers on the released R1-Searcher samples and on hand-made bad lines."""

from __future__ import annotations

import json

import pytest

from recipe.retrieval.corpus import (
    CorpusFormatError,
    CorpusStats,
    EmptyCorpus,
    detect_format,
    read_corpus,
)

SAMPLES = "corpus_samples"


def test_kilt_pages_split_like_the_released_tsv(r1searcher_data):
    pages = r1searcher_data / SAMPLES / "filtered_kilt_sample_100.jsonl"
    tsv = r1searcher_data / SAMPLES / "train_kilt_full_page_sample_100.tsv"
    assert detect_format(pages) == "kilt" and detect_format(tsv) == "kilt_tsv"
    from_pages = list(read_corpus(pages))
    from_tsv = list(read_corpus(tsv))
    # The released TSV sample is cut mid-line at its end: every complete line must match.
    complete = from_tsv[:-1]
    assert len(complete) == 92
    assert from_pages[: len(complete)] == complete
    assert from_tsv[-1].text and from_pages[len(complete)].text.startswith(from_tsv[-1].text)
    assert all(len(p.text.split()) <= 100 for p in from_pages)
    assert not any("BULLET::::" in p.text or "Section::::" in p.text for p in from_pages)
    assert {p.title for p in from_pages} >= {"A", "Albedo", "Allan Dwan"}


def test_hotpot_abstracts_tsv(r1searcher_data):
    path = r1searcher_data / SAMPLES / "train_np_title_abs_sample_100.tsv"
    stats = CorpusStats()
    passages = list(read_corpus(path, stats=stats))
    assert len(passages) == 100 and stats.bad_lines == 0
    first = passages[0]
    # The first line starts with a byte-order mark and is CSV-quoted with doubled quotes.
    assert first.id == "0" and first.title == "Professional Football League of Ukraine"
    assert '"Професіональна футбольна ліга України"' in first.text
    assert not any(p.text.startswith("Text:") or "Title:" in p.title for p in passages)


def test_flashrag_jsonl_and_bad_lines(tmp_path, caplog):
    path = tmp_path / "corpus.jsonl"
    rows = [
        json.dumps({"id": "a", "contents": '"Paris"\nParis is the capital of France.'}),
        "{not json",
        json.dumps({"id": "b", "contents": "Berlin\nBerlin is in Germany."}),
        json.dumps({"contents": "no id"}),
        "",
        json.dumps({"id": "c", "title": "Rome", "text": "Rome is in Italy."}),
        json.dumps(["a list"]),
    ]
    path.write_text("\n".join(rows) + "\n")
    stats = CorpusStats()
    with caplog.at_level("WARNING"):
        passages = list(read_corpus(path, stats=stats))
    assert [(p.id, p.title) for p in passages] == [("a", "Paris"), ("b", "Berlin"), ("c", "Rome")]
    assert passages[0].contents == "Paris\nParis is the capital of France."
    assert stats.bad_lines == 3 and stats.lines == 6 and stats.passages == 3
    assert [n for n, _ in stats.bad_examples] == [2, 4, 7]
    assert "3 bad lines" in caplog.text


def test_tsv_bad_lines_are_counted(tmp_path):
    path = tmp_path / "psgs.tsv"
    path.write_text("0\tTitle   some text here\nno tab at all\n1\tOther   more text\n\tx   y\n")
    stats = CorpusStats()
    passages = list(read_corpus(path, stats=stats))
    assert [p.id for p in passages] == ["0", "1"] and stats.bad_lines == 2


def test_kilt_passage_words_and_markers(tmp_path):
    path = tmp_path / "kilt.jsonl"
    paragraphs = ["T\n", "Section::::Intro.\n", "BULLET::::- " + " ".join(["w"] * 9) + "\n"]
    path.write_text(json.dumps({"wikipedia_title": "T", "text": paragraphs}) + "\n")
    passages = list(read_corpus(path, passage_words=5))
    assert [p.text for p in passages] == ["T Intro. - w w", "w w w w w", "w w"]
    assert [p.id for p in passages] == ["0", "1", "2"]


def test_unknown_format_is_an_error(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("hello\n")
    with pytest.raises(CorpusFormatError):
        list(read_corpus(path))
    with pytest.raises(CorpusFormatError, match="unknown corpus format"):
        list(read_corpus(path, fmt="csv"))


def test_undecodable_bytes_and_lone_surrogates_are_bad_lines(tmp_path):
    path = tmp_path / "corpus.jsonl"
    good = [json.dumps({"id": i, "contents": f"T{i}\ntext {i}"}).encode() for i in "ab"]
    # An invalid UTF-8 byte, and a JSON escape that decodes to a lone surrogate (no UTF-8
    # encoding exists for it, so neither the doc store nor a tokenizer could take it).
    undecodable = b'{"id": "x", "contents": "T\\ncaf\xe9"}'
    surrogate = b'{"id": "y", "contents": "T\\n\\ud800"}'
    path.write_bytes(b"\n".join([good[0], undecodable, surrogate, good[1]]) + b"\n")
    assert detect_format(path) == "flashrag"
    stats = CorpusStats()
    assert [p.id for p in read_corpus(path, stats=stats)] == ["a", "b"]
    assert stats.bad_lines == 2 and stats.lines == 4
    (line_2, reason_2), (line_3, reason_3) = stats.bad_examples
    assert (line_2, line_3) == (2, 3)
    assert "not UTF-8" in reason_2 and "0xe9" in reason_2
    assert "lone surrogate" in reason_3


def test_empty_corpus_names_itself(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n\n")
    with pytest.raises(EmptyCorpus, match="empty"):
        detect_format(path)
