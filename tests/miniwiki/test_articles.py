"""Articles and passages: facts stated where they should be, passages of ~100 words."""

from __future__ import annotations

import pytest

from miniwiki.articles import contains_phrase, fact_cue, split_passages
from miniwiki.world import DIRECTOR, FOUNDER


def test_every_fact_is_stated_in_its_subjects_article_after_its_cue(small_pair):
    """A fact's sentence holds its value, right after the relation's cue words where it has
    them (`CUES`: queries name a relation by its cue and the reader copies what follows), and
    no other sentence of the article holds that cue."""
    built = small_pair[0]
    checked = cued = 0
    for name, entity in built.world.entities.items():
        article = built.articles[name]
        for relation, value in entity.facts.items():
            stating = article.sentence_of(relation)
            sentence = article.sentences[stating].text
            assert contains_phrase(sentence, value), (name, relation, value, sentence)
            checked += 1
            cue = fact_cue(entity.kind, relation)
            if cue is None:
                continue
            assert contains_phrase(sentence, f"{cue} {value}"), (name, cue, sentence)
            others = [s.text for i, s in enumerate(article.sentences) if i != stating]
            assert not [t for t in others if contains_phrase(t, cue)], (name, cue)
            cued += 1
    assert checked > 5 * len(built.world.entities)
    assert cued > 3 * len(built.world.entities)


def test_articles_state_only_their_own_facts(small_pair):
    """A person's article never names the films they directed or the bands they founded."""
    built = small_pair[0]
    works_of: dict[str, list[str]] = {}
    for work in built.world.entities.values():
        for relation in (DIRECTOR, FOUNDER):
            if relation in work.facts:
                works_of.setdefault(work.facts[relation], []).append(work.name)
    assert works_of
    for person, works in works_of.items():
        text = " ".join(s.text for s in built.articles[person].sentences)
        assert not [w for w in works if contains_phrase(text, w)]


def _check_cover(passages, articles) -> None:
    """Every passage starts with its title and the passages cover each article once, in order."""
    assert len({p.id for p in passages}) == len(passages)
    covered: dict[str, list[int]] = {}
    for p in passages:
        assert p.contents.startswith(p.title + "\n")
        covered.setdefault(p.title, []).extend(
            range(p.first_sentence, p.first_sentence + p.n_sentences)
        )
    for title, article in articles.items():
        assert covered[title] == list(range(len(article.sentences)))


def test_passages_stay_within_the_cap_and_cover_each_article_once(small_pair, small_cfg):
    built = small_pair[0]
    words = [len(p.text.split()) for p in built.passages]
    assert max(words) <= small_cfg.task.articles.passage_words
    _check_cover(built.passages, built.articles)


@pytest.mark.parametrize("cap", [20, 40])
def test_articles_longer_than_the_cap_are_split_into_balanced_passages(small_pair, cap):
    articles = small_pair[0].articles
    passages = split_passages(articles, cap)
    _check_cover(passages, articles)
    by_title: dict[str, list[int]] = {}
    for p in passages:
        by_title.setdefault(p.title, []).append(len(p.text.split()))
    longest_sentence = max(len(s.text.split()) for a in articles.values() for s in a.sentences)
    for title, lengths in by_title.items():
        total = sum(len(s.text.split()) for s in articles[title].sentences)
        # Whole sentences only: a passage exceeds the cap only by holding one long sentence.
        assert max(lengths) <= max(cap, longest_sentence)
        if total > cap and len(articles[title].sentences) > 1:
            assert len(lengths) >= 2
        else:
            assert lengths == [total]


def test_corpus_file_is_flashrag_jsonl(small_built_dir):
    import json

    lines = (small_built_dir / "task" / "corpus.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert all(set(r) == {"id", "contents"} for r in rows)
    assert all(isinstance(r["id"], str) and "\n" in r["contents"] for r in rows)


def test_contains_phrase_respects_word_boundaries():
    assert contains_phrase("born in Velmora.", "Velmora")
    assert not contains_phrase("born in Velmora.", "Velmor")
    assert contains_phrase("in 1987, she", "1987")
    assert not contains_phrase("in 19870", "1987")
