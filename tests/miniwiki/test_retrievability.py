"""Names are distinctive for search, and one search with the question is not enough."""

from __future__ import annotations

from recipe.retrieval.base import Passage
from recipe.retrieval.bm25 import BM25Retriever

TOP_K = 3


def _retriever(built) -> BM25Retriever:
    return BM25Retriever([Passage(p.id, p.title, p.text) for p in built.passages])


def test_an_entity_name_finds_its_article_with_bm25(small_pair):
    built = small_pair[0]
    retriever = _retriever(built)
    names = list(built.world.entities)
    hits = retriever.search(names, TOP_K)
    found = sum(any(h.passage.title == n for h in row) for n, row in zip(names, hits, strict=True))
    assert found / len(names) >= 0.97


def test_searching_the_question_rarely_finds_both_hops(small_pair):
    built = small_pair[0]
    retriever = _retriever(built)
    chains = [q for q in built.questions if q.qtype in ("bridge", "compositional", "inference")]
    hits = retriever.search([q.text for q in chains], TOP_K)
    first_hop = both_hops = 0
    for q, row in zip(chains, hits, strict=True):
        titles = {h.passage.title for h in row}
        first_hop += q.evidences[0].subject in titles
        both_hops += {ev.subject for ev in q.evidences} <= titles
    assert first_hop / len(chains) >= 0.8  # the topic is findable ...
    assert both_hops / len(chains) <= 0.2  # ... but the answer needs a second search
