"""Articles and passages: facts stated where they should be, passages of ~100 words."""

from __future__ import annotations

from miniwiki.articles import contains_phrase
from miniwiki.world import DIRECTOR, FOUNDER


def test_every_fact_is_stated_in_its_subjects_article(small_pair):
    built = small_pair[0]
    checked = 0
    for name, entity in built.world.entities.items():
        article = built.articles[name]
        for relation, value in entity.facts.items():
            sentence = article.sentences[article.sentence_of(relation)].text
            assert contains_phrase(sentence, value), (name, relation, value, sentence)
            checked += 1
    assert checked > 5 * len(built.world.entities)


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


def test_passages_are_about_100_words_and_cover_each_article_once(small_pair, small_cfg):
    built = small_pair[0]
    cap = small_cfg.task.articles.passage_words
    words = [len(p.text.split()) for p in built.passages]
    assert max(words) <= cap
    assert sum(words) / len(words) >= cap * 0.5
    assert len({p.id for p in built.passages}) == len(built.passages)
    covered: dict[str, list[int]] = {}
    for p in built.passages:
        assert p.contents.startswith(p.title + "\n")
        covered.setdefault(p.title, []).extend(
            range(p.first_sentence, p.first_sentence + p.n_sentences)
        )
    for title, article in built.articles.items():
        assert covered[title] == list(range(len(article.sentences)))
    # Long articles really are split (balanced, no one-sentence tails).
    assert len(built.passages) > len(built.articles)


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
