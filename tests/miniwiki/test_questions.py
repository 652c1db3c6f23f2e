"""Questions: counts, disjoint splits, answerable from the corpus, truly multi-hop."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from miniwiki.articles import contains_phrase
from miniwiki.formats import supporting_facts
from miniwiki.questions import SPLITS, type_counts

CHAIN_TYPES = ("bridge", "compositional", "inference")


def test_counts_per_type_and_split_match_the_config(small_pair, small_cfg):
    for built, cfg in zip(small_pair, (small_cfg.task, small_cfg.warmup), strict=True):
        got = Counter((q.dataset, q.qtype, q.split) for q in built.questions)
        for (dataset, qtype), counts in type_counts(cfg.questions).items():
            for split in SPLITS:
                assert got[(dataset, qtype, split)] == getattr(counts, split), (dataset, qtype)


def test_no_question_is_in_two_splits(small_pair):
    for built in small_pair:
        texts = [q.text for q in built.questions]
        keys = [q.key for q in built.questions]
        assert len(set(texts)) == len(texts)
        assert len(set(keys)) == len(keys)


def _supporting_passages(built, q):
    facts = supporting_facts(q, built.articles)
    found = []
    for title, sent in facts:
        holders = [p for p in built.passages if p.title == title and p.holds(sent)]
        assert len(holders) == 1, (q.text, title, sent)
        found.append(holders[0])
    return facts, found


def test_every_question_is_answerable_from_its_supporting_passages(small_pair):
    for built in small_pair:
        for q in built.questions:
            facts, passages = _supporting_passages(built, q)
            text = " ".join(p.contents for p in passages)
            if q.answer in ("yes", "no"):
                assert len(q.compared) == 2
                assert all(contains_phrase(text, v) for v in q.compared), q.text
                assert (q.compared[0] == q.compared[1]) == (q.answer == "yes")
            else:
                assert contains_phrase(text, q.answer), (q.text, q.answer)
            # Each evidence triple is stated by the sentence its supporting fact cites.
            for ev in q.evidences:
                art = built.articles[ev.subject]
                assert contains_phrase(art.sentences[art.sentence_of(ev.relation)].text, ev.value)


def test_hops_live_in_different_passages_and_one_search_is_not_enough(small_pair):
    for built in small_pair:
        chains = [q for q in built.questions if q.qtype in CHAIN_TYPES]
        assert chains
        for q in chains:
            _, passages = _supporting_passages(built, q)
            assert len({p.title for p in passages}) == 2
            assert not contains_phrase(q.text, q.answer)
            # No passage naming the topic entity (what one search would find) holds the answer.
            naming_topic = [p for p in built.passages if contains_phrase(p.contents, q.topic)]
            assert naming_topic
            assert not [p.id for p in naming_topic if contains_phrase(p.contents, q.answer)]


def test_comparisons_pick_the_right_entity(small_pair):
    for built in small_pair:
        picks = [q for q in built.questions if q.compared and q.answer not in ("yes", "no")]
        assert picks
        for q in picks:
            a, b = q.evidences[0].subject, q.evidences[1].subject
            assert q.answer in (a, b)
            ya, yb = (int(v) for v in q.compared)
            assert ya != yb
            earlier = a if ya < yb else b
            later = b if earlier == a else a
            assert q.answer in (earlier, later)
        kinds = Counter(q.answer for q in built.questions if q.answer in ("yes", "no"))
        assert kinds["yes"] > 0 and kinds["no"] > 0


def test_bridge_comparisons_cite_four_facts_in_four_articles(small_pair):
    built = small_pair[0]
    bcs = [q for q in built.questions if q.qtype == "bridge_comparison"]
    assert bcs
    for q in bcs:
        facts = supporting_facts(q, built.articles)
        assert len(facts) == 4 and len({t for t, _ in facts}) == 4


HOTPOT_KEYS = {"_id", "question", "answer", "type", "level", "supporting_facts", "context"}
TWOWIKI_KEYS = {"_id", "type", "question", "answer", "evidences", "supporting_facts", "context"}


def _check_common(rec: dict) -> None:
    assert all(isinstance(rec[k], str) and rec[k] for k in ("_id", "question", "answer", "type"))
    context = dict((t, s) for t, s in rec["context"])
    assert all(
        isinstance(t, str) and all(isinstance(x, str) for x in s) for t, s in context.items()
    )
    for title, idx in rec["supporting_facts"]:
        assert isinstance(title, str) and isinstance(idx, int)
        assert 0 <= idx < len(context[title])  # cites a sentence of a context paragraph


@pytest.mark.parametrize("split", SPLITS)
def test_record_formats_are_the_official_ones(small_built_dir, split):
    hotpot = json.loads((small_built_dir / "task" / f"hotpotqa_{split}.json").read_text())
    twowiki = json.loads((small_built_dir / "task" / f"2wiki_{split}.json").read_text())
    assert hotpot and twowiki
    for rec in hotpot:
        assert set(rec) == HOTPOT_KEYS
        assert rec["type"] in ("bridge", "comparison") and rec["level"] in (
            "easy",
            "medium",
            "hard",
        )
        assert len(rec["_id"]) == 24
        _check_common(rec)
    for rec in twowiki:
        assert set(rec) == TWOWIKI_KEYS
        assert rec["type"] in ("compositional", "inference", "comparison", "bridge_comparison")
        assert len(rec["_id"]) == 32
        assert all(len(ev) == 3 and all(isinstance(x, str) for x in ev) for ev in rec["evidences"])
        _check_common(rec)
        # The last evidence's object is the answer for chain questions.
        if rec["type"] in ("compositional", "inference"):
            assert rec["evidences"][-1][2] == rec["answer"]
    ids = [r["_id"] for r in hotpot + twowiki]
    assert len(set(ids)) == len(ids)
