"""Cold-start transcripts about the warm-up world, written as the rollout engine records them.

A transcript is the response to one warm-up question in the stage prompt's format, as a list
of segments (text, is_model): the assistant's own text, and the document blocks the real
retriever returned over the warm-up corpus, laid out by `recipe.prompts.format_documents`,
exactly as the rollout engine would insert them. Three behaviours (R1-Searcher++ and
DeepSeek-R1 cold-start before RL; the mix is set in YAML):

- direct: a short think recalling the question's facts "from memory" in the articles' words,
  then the answer (on the task world such answers are guesses, which leaves RL the room to
  teach searching; recalling the facts trains every transcript, not only the searching ones,
  to map a question to the words of its relations, which its queries will need);
- search: a plan (the entity to search first; for a comparison both entities, since its second
  search is for the other entity and not for the value just found, as in a chain), one good
  query per evidence triple (the subject and the words the articles use for the relation,
  R1-Searcher's "a query must involve only a single triple"), each followed by the retrieved
  documents and the fact restated in those words (so reading is finding the query's words in
  the documents and copying what follows them); for a comparison both values side by side;
  then the answer;
- poor_query: the first query leaves out the entity, the documents miss, the model says so and
  searches again well, then continues as `search`;
- read: a `search` transcript whose opening words (where a response chooses to search or to
  answer) carry no loss. The share of searching transcripts is what sets the base search rate,
  and the rate must stay low (RL has to teach searching); reading documents well needs many
  more examples than that share gives. `read` transcripts teach the queries and the reading
  without teaching the choice.

Search transcripts are kept only when every good query's documents really contain the fact (its
supporting sentence, or else a passage naming both the subject and the value): the model is taught to copy what it reads,
never to answer past documents that do not say it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from miniwiki.articles import contains_phrase
from miniwiki.base_config import BehaviourMix, TranscriptTemplates
from recipe.prompts import Segment, format_documents
from recipe.retrieval.base import Passage, Retriever
from recipe.schema import TagsConfig

BEHAVIOURS = ("direct", "search", "poor_query", "read")
SEARCHING = ("search", "poor_query", "read")


@dataclass(frozen=True)
class Hop:
    """One evidence triple: `subject`'s `relation` is `value`."""

    subject: str
    relation: str
    value: str
    sentence: str = ""  # the corpus sentence stating it (the supporting fact), when known
    cue: str = ""  # the words before the value in that sentence (`articles.CUES`), if any

    @property
    def keywords(self) -> str:
        """How a query names the relation: the article's own words for it, else its name."""
        return self.cue or self.relation

    @property
    def statement(self) -> str:
        """The fact as the transcript restates it: cue and value, as the documents word it."""
        return f"{self.cue} {self.value}" if self.cue else f"{self.relation}: {self.value}"


@dataclass
class WarmupQuestion:
    question: str
    answer: str
    hops: list[Hop]
    qtype: str = ""


@dataclass
class Transcript:
    behaviour: str
    question: str
    answer: str
    segments: list[Segment] = field(default_factory=list)  # (text, is_model)
    queries: list[str] = field(default_factory=list)
    untrained_prefix: str = ""  # leading words of the response that carry no loss
    qtype: str = ""  # "<data set>/<question type>" of the question

    @property
    def n_searches(self) -> int:
        return len(self.queries)


def choice_words(intro_template: str) -> str:
    """An intro's words before its first name: where a response chooses to search or answer."""
    return intro_template.split("{")[0].rstrip()


def behaviour_counts(mix: BehaviourMix, total: int) -> dict[str, int]:
    """Transcripts per behaviour, proportional to the mix (largest remainders round up)."""
    weights = {name: float(getattr(mix, name)) for name in BEHAVIOURS}
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"behaviour mix needs non-negative shares with a positive sum: {weights}")
    norm = sum(weights.values())
    exact = {name: total * w / norm for name, w in weights.items()}
    counts = {name: int(x) for name, x in exact.items()}
    by_remainder = sorted(BEHAVIOURS, key=lambda n: exact[n] - counts[n], reverse=True)
    for name in by_remainder[: total - sum(counts.values())]:
        counts[name] += 1
    return counts


class TranscriptWriter:
    """Writes one transcript of a given behaviour, searching the real retriever."""

    def __init__(
        self,
        retriever: Retriever,
        tags: TagsConfig,
        templates: TranscriptTemplates,
        topk: int,
        doc_template: str,
    ):
        self.retriever = retriever
        self.tags = tags
        self.t = templates
        self.topk = topk
        self.doc_template = doc_template

    def _query_text(self, query: str) -> str:
        return f"{self.tags.begin_query} {query} {self.tags.end_query}"

    def _finish(self, q: WarmupQuestion, think: str) -> str:
        t, tags = self.t, self.tags
        answer = t.answer.format(answer=q.answer)
        return f"{think}{tags.think_end}{t.think_to_answer}{tags.answer_start}{answer}{tags.answer_end}"

    def direct(self, q: WarmupQuestion) -> Transcript:
        facts = ", ".join(
            self.t.recalled.format(subject=h.subject, statement=h.statement) for h in q.hops
        )
        think = self.t.direct_think.format(facts=facts) + self.t.conclude.format(answer=q.answer)
        segments = [(self._finish(q, think), True)]
        return Transcript("direct", q.question, q.answer, segments, qtype=q.qtype)

    def _search(self, query: str) -> list[Passage]:
        return [hit.passage for hit in self.retriever.search([query], k=self.topk)[0]]

    @staticmethod
    def _has_fact(passages: Sequence[Passage], hop: Hop) -> bool:
        if hop.sentence:
            return any(hop.sentence in p.contents for p in passages)
        return any(
            contains_phrase(p.contents, hop.subject) and contains_phrase(p.contents, hop.value)
            for p in passages
        )

    def searching(self, q: WarmupQuestion, behaviour: str = "search") -> Transcript | None:
        """A transcript of one of the SEARCHING behaviours, or None when the retriever cannot
        support it as planned."""
        t = self.t
        poor_first = behaviour == "poor_query"
        transcript = Transcript(behaviour, q.question, q.answer, qtype=q.qtype)
        comparison = q.qtype.endswith("/comparison") and len({h.subject for h in q.hops}) == 2
        if comparison:
            intro = t.compare_intro
            text = intro.format(first=q.hops[0].subject, second=q.hops[1].subject)
        else:
            intro = t.search_intro
            text = intro.format(subject=q.hops[0].subject)
        if behaviour == "read":
            transcript.untrained_prefix = choice_words(intro)
        for index, hop in enumerate(q.hops):
            fields = {
                "subject": hop.subject,
                "relation": hop.relation,
                "value": hop.value,
                "sentence": hop.sentence,
                "cue": hop.keywords,
                "statement": hop.statement,
            }
            if index > 0:
                text += t.next_search.format(**fields)
            if poor_first and index == 0:
                poor = t.poor_query.format(**fields)
                passages = self._search(poor)
                if self._has_fact(passages, hop):
                    return None  # not a miss after all
                text = self._add_search(transcript, text, poor, passages)
                text += t.not_found.format(**fields)
            query = t.query.format(**fields)
            passages = self._search(query)
            if not self._has_fact(passages, hop):
                return None
            text = self._add_search(transcript, text, query, passages)
            text += t.found.format(**fields)
        if comparison:
            first, second = q.hops
            text += t.compare.format(
                first=first.subject,
                first_value=first.value,
                second=second.subject,
                second_value=second.value,
            )
        text += t.conclude.format(answer=q.answer)
        transcript.segments.append((self._finish(q, text), True))
        return transcript

    def _add_search(
        self, transcript: Transcript, text: str, query: str, passages: list[Passage]
    ) -> str:
        """Close the model's segment with the query, append the documents; returns new text."""
        transcript.segments.append((text + self._query_text(query), True))
        documents = format_documents(passages, self.tags, self.doc_template)
        transcript.segments.append((documents, False))
        transcript.queries.append(query)
        return ""


def write_transcripts(
    questions: Sequence[WarmupQuestion],
    writer: TranscriptWriter,
    mix: BehaviourMix,
    total: int,
    max_hops: int,
    rng: random.Random,
) -> tuple[list[Transcript], dict[str, int]]:
    """`total` transcripts in the mix's proportions, each about a different question.

    Returns the transcripts (shuffled) and counts of questions skipped because retrieval could
    not support a search transcript.
    """
    wanted = behaviour_counts(mix, total)
    pool = list(questions)
    rng.shuffle(pool)
    out: list[Transcript] = []
    skipped = {"too_many_hops": 0, "retrieval_miss": 0}
    # Searching behaviours first: they may skip questions, and direct answers never do.
    for behaviour in (*SEARCHING, "direct"):
        made = 0
        while made < wanted[behaviour]:
            if not pool:
                raise ValueError(f"too few warm-up questions for {wanted} transcripts")
            q = pool.pop()
            if behaviour == "direct":
                transcript = writer.direct(q)
            elif len(q.hops) > max_hops:
                skipped["too_many_hops"] += 1
                continue
            else:
                transcript = writer.searching(q, behaviour)
                if transcript is None:
                    skipped["retrieval_miss"] += 1
                    continue
            out.append(transcript)
            made += 1
    rng.shuffle(out)
    return out, skipped
