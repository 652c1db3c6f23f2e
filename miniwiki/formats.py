"""Questions as official HotpotQA and 2WikiMultiHopQA records, passages as FlashRAG jsonl.

HotpotQA: `_id`, `question`, `answer`, `type` (bridge | comparison), `level`,
`supporting_facts` [[title, sentence index]], `context` [[title, [sentences]]].
2WikiMultiHopQA: `_id`, `type`, `question`, `answer`, `evidences` [[subject, relation, object]],
`supporting_facts`, `context`. As in both data sets, the context holds the gold articles plus
distractor articles, in a shuffled order.
"""

from __future__ import annotations

import hashlib
import random

from miniwiki.articles import Article, CorpusPassage
from miniwiki.questions import HOTPOTQA, Question

# HotpotQA labels each question easy / medium / hard; ours: bridges need two searches in a row.
HOTPOT_LEVEL = {"bridge": "hard", "comparison": "medium"}
HOTPOT_ID_CHARS = 24  # as in the official files (e.g. 5a8b57f25542995d1e6f1371)
TWOWIKI_ID_CHARS = 32  # as in the official files (uuid hex)


def question_id(seed: int, q: Question, n_chars: int) -> str:
    return hashlib.sha1(f"{seed}:{q.key!r}".encode()).hexdigest()[:n_chars]


def supporting_facts(q: Question, articles: dict[str, Article]) -> list[list]:
    out: list[list] = []
    for ev in q.evidences:
        fact = [ev.subject, articles[ev.subject].sentence_of(ev.relation)]
        if fact not in out:
            out.append(fact)
    return out


def gold_titles(q: Question) -> list[str]:
    return list(dict.fromkeys(ev.subject for ev in q.evidences))


def context(
    q: Question, articles: dict[str, Article], distractors: int, rng: random.Random
) -> list[list]:
    gold = gold_titles(q)
    kinds = {articles[t].kind for t in gold}
    pool = [t for t, a in articles.items() if a.kind in kinds and t not in gold]
    titles = gold + rng.sample(pool, min(distractors, len(pool)))
    rng.shuffle(titles)
    return [[t, [s.text for s in articles[t].sentences]] for t in titles]


def hotpotqa_record(
    q: Question, articles: dict[str, Article], seed: int, distractors: int, rng: random.Random
) -> dict:
    return {
        "_id": question_id(seed, q, HOTPOT_ID_CHARS),
        "question": q.text,
        "answer": q.answer,
        "type": q.qtype,
        "level": HOTPOT_LEVEL[q.qtype],
        "supporting_facts": supporting_facts(q, articles),
        "context": context(q, articles, distractors, rng),
    }


def twowiki_record(
    q: Question, articles: dict[str, Article], seed: int, distractors: int, rng: random.Random
) -> dict:
    return {
        "_id": question_id(seed, q, TWOWIKI_ID_CHARS),
        "type": q.qtype,
        "question": q.text,
        "answer": q.answer,
        "evidences": [[ev.subject, ev.relation, ev.value] for ev in q.evidences],
        "supporting_facts": supporting_facts(q, articles),
        "context": context(q, articles, distractors, rng),
    }


def record(
    q: Question, articles: dict[str, Article], seed: int, distractors: int, rng: random.Random
) -> dict:
    build = hotpotqa_record if q.dataset == HOTPOTQA else twowiki_record
    return build(q, articles, seed, distractors, rng)


def corpus_line(p: CorpusPassage) -> dict:
    return {"id": p.id, "contents": p.contents}
