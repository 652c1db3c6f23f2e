"""Multi-hop questions over a world, shaped like HotpotQA and 2WikiMultiHopQA.

A chain question follows two relations from a topic entity (the director of a film, then the
director's birthplace); a comparison asks which of two entities comes first, or whether they
share a value (yes/no); a bridge comparison compares two entities through a relation each (the
films' directors' birth years). Every question keeps its evidence triples in hop order, so its
supporting sentences, its answer and, for yes/no, both compared values are known exactly.

A chain question is kept only if its answer is absent from the question and from every passage
that names the topic entity: one search for the topic can never answer it, a second hop is
needed.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field

from miniwiki.articles import CorpusPassage, contains_phrase
from miniwiki.config import QuestionConfig, SplitCounts
from miniwiki.world import (
    BIRTH_YEAR,
    BIRTHPLACE,
    CAPITAL,
    CAST,
    CITIZENSHIP,
    COUNTRY,
    DEATH_YEAR,
    DIRECTOR,
    FATHER,
    FILMING_LOCATION,
    FORMED_IN,
    FOUNDER,
    GENRE,
    HEADQUARTERS,
    INCEPTION,
    MOTHER,
    OCCUPATION,
    RELEASE_YEAR,
    SPOUSE,
    World,
)

SPLITS = ("train", "dev", "test")
HOTPOTQA = "hotpotqa"
TWOWIKI = "2wiki"


@dataclass(frozen=True)
class Evidence:
    subject: str
    relation: str
    value: str


@dataclass
class Question:
    key: tuple  # canonical content, shared across datasets so that no fact pair repeats
    dataset: str
    qtype: str
    text: str
    answer: str
    evidences: list[Evidence]
    compared: list[str] = field(default_factory=list)  # values compared (comparisons)
    topic: str = ""  # chain questions: the entity named in the question
    split: str = ""


@dataclass(frozen=True)
class ChainSpec:
    kind: str
    first: str
    second: str
    templates: tuple[str, ...]


@dataclass(frozen=True)
class CompareSpec:
    kind: str
    relation: str
    mode: str  # "earlier", "later" (pick one entity) or "same" (yes/no)
    templates: tuple[str, ...]
    via: str | None = None  # bridge comparisons: compare the entities' `via` values


def C(kind: str, first: str, second: str, *templates: str) -> ChainSpec:
    return ChainSpec(kind, first, second, templates)


def P(kind: str, relation: str, mode: str, *templates: str, via: str | None = None) -> CompareSpec:
    return CompareSpec(kind, relation, mode, templates, via)


HOTPOT_BRIDGE = (
    C("film", DIRECTOR, BIRTHPLACE, "In which city was the director of {s} born?",
      "The director of {s} was born in which city?"),
    C("film", DIRECTOR, BIRTH_YEAR, "In what year was the director of {s} born?"),
    C("film", CAST, BIRTHPLACE, "Where was the lead actor of {s} born?",
      "The star of {s} was born in which city?"),
    C("film", CAST, BIRTH_YEAR, "In what year was the star of {s} born?"),
    C("film", FILMING_LOCATION, COUNTRY, "{s} was filmed in a city of which country?"),
    C("band", FOUNDER, BIRTHPLACE, "Where was the founder of the band {s} born?"),
    C("band", FOUNDER, BIRTH_YEAR, "The founder of {s} was born in what year?"),
    C("band", FORMED_IN, COUNTRY, "The band {s} comes from a city in which country?"),
    C("company", FOUNDER, BIRTHPLACE, "In which city was the founder of {s} born?"),
    C("company", FOUNDER, BIRTH_YEAR, "When was the founder of {s} born?"),
    C("company", FOUNDER, FATHER, "Who was the father of the founder of {s}?"),
    C("company", HEADQUARTERS, COUNTRY, "{s} is headquartered in a city of which country?"),
    C("company", HEADQUARTERS, INCEPTION, "When was the city where {s} is based founded?"),
    C("city", COUNTRY, CAPITAL, "What is the capital of the country where {s} is located?"),
    C("city", COUNTRY, INCEPTION, "In what year did the country containing {s} become independent?"),
)  # fmt: skip

TWOWIKI_COMPOSITIONAL = (
    C("film", DIRECTOR, BIRTHPLACE, "Where was the director of film {s} born?"),
    C("film", DIRECTOR, DEATH_YEAR, "When did the director of film {s} die?"),
    C("film", DIRECTOR, BIRTH_YEAR, "When was the director of film {s} born?"),
    C("film", DIRECTOR, CITIZENSHIP, "What nationality is the director of film {s}?"),
    C("film", DIRECTOR, FATHER, "Who is the father of the director of film {s}?"),
    C("film", DIRECTOR, SPOUSE, "Who is the spouse of the director of film {s}?"),
    C("film", CAST, DEATH_YEAR, "When did the lead actor of film {s} die?"),
    C("person", FATHER, BIRTHPLACE, "Where was the father of {s} born?"),
    C("person", FATHER, DEATH_YEAR, "When did {s}'s father die?"),
    C("person", FATHER, OCCUPATION, "What was the occupation of {s}'s father?"),
    C("person", MOTHER, BIRTH_YEAR, "When was {s}'s mother born?"),
    C("person", MOTHER, BIRTHPLACE, "Where was the mother of {s} born?"),
    C("person", SPOUSE, BIRTHPLACE, "Where was the spouse of {s} born?"),
    C("person", SPOUSE, BIRTH_YEAR, "When was {s}'s spouse born?"),
)  # fmt: skip

TWOWIKI_INFERENCE = (
    C("person", FATHER, FATHER, "Who is the paternal grandfather of {s}?"),
    C("person", FATHER, MOTHER, "Who is the paternal grandmother of {s}?"),
    C("person", MOTHER, FATHER, "Who is the maternal grandfather of {s}?"),
    C("person", MOTHER, MOTHER, "Who is the maternal grandmother of {s}?"),
    C("person", SPOUSE, FATHER, "Who is the father-in-law of {s}?"),
    C("person", SPOUSE, MOTHER, "Who is the mother-in-law of {s}?"),
)  # fmt: skip

HOTPOT_COMPARISON = (
    P("person", BIRTH_YEAR, "earlier", "Who was born first, {a} or {b}?"),
    P("person", BIRTH_YEAR, "later", "Who is younger, {a} or {b}?"),
    P("film", RELEASE_YEAR, "earlier", "Which film was released first, {a} or {b}?"),
    P("company", INCEPTION, "earlier", "Which company was founded first, {a} or {b}?"),
    P("band", INCEPTION, "later", "Which band was formed more recently, {a} or {b}?"),
    P("city", INCEPTION, "earlier", "Which city is older, {a} or {b}?"),
    P("person", OCCUPATION, "same", "Did {a} and {b} have the same occupation?"),
    P("person", CITIZENSHIP, "same", "Are {a} and {b} of the same nationality?"),
    P("company", HEADQUARTERS, "same", "Are {a} and {b} headquartered in the same city?"),
    P("film", DIRECTOR, "same", "Were {a} and {b} directed by the same person?"),
    P("band", GENRE, "same", "Do {a} and {b} play the same genre of music?"),
    P("city", COUNTRY, "same", "Are {a} and {b} located in the same country?"),
)  # fmt: skip

TWOWIKI_COMPARISON = (
    P("person", BIRTH_YEAR, "earlier", "Who was born first, {a} or {b}?"),
    P("person", DEATH_YEAR, "later", "Who died later, {a} or {b}?"),
    P("person", DEATH_YEAR, "earlier", "Who died first, {a} or {b}?"),
    P("film", RELEASE_YEAR, "earlier", "Which film came out first, {a} or {b}?"),
    P("film", RELEASE_YEAR, "later", "Which film was released more recently, {a} or {b}?"),
    P("person", CITIZENSHIP, "same", "Are {a} and {b} from the same country?"),
    P("film", GENRE, "same", "Are {a} and {b} films of the same genre?"),
    P("person", BIRTHPLACE, "same", "Were {a} and {b} born in the same city?"),
)  # fmt: skip

TWOWIKI_BRIDGE_COMPARISON = (
    P("film", BIRTH_YEAR, "earlier", "Which film has the director born first, {a} or {b}?",
      via=DIRECTOR),
    P("film", BIRTH_YEAR, "later", "Which film has the director who was born later, {a} or {b}?",
      via=DIRECTOR),
    P("film", DEATH_YEAR, "earlier", "Which film has the director who died first, {a} or {b}?",
      via=DIRECTOR),
    P("film", CITIZENSHIP, "same",
      "Are the directors of films {a} and {b} from the same country?", via=DIRECTOR),
    P("film", BIRTHPLACE, "same",
      "Were the directors of {a} and {b} born in the same city?", via=DIRECTOR),
    P("company", BIRTH_YEAR, "earlier", "Which company's founder was born first, {a} or {b}?",
      via=FOUNDER),
    P("band", BIRTH_YEAR, "later",
      "Which band has the founder who was born later, {a} or {b}?", via=FOUNDER),
    P("person", BIRTH_YEAR, "earlier", "Whose father was born first, {a} or {b}?", via=FATHER),
    P("person", BIRTHPLACE, "same", "Were the fathers of {a} and {b} born in the same city?",
      via=FATHER),
)  # fmt: skip

QUESTION_TYPES = {
    (HOTPOTQA, "bridge"): HOTPOT_BRIDGE,
    (HOTPOTQA, "comparison"): HOTPOT_COMPARISON,
    (TWOWIKI, "compositional"): TWOWIKI_COMPOSITIONAL,
    (TWOWIKI, "inference"): TWOWIKI_INFERENCE,
    (TWOWIKI, "comparison"): TWOWIKI_COMPARISON,
    (TWOWIKI, "bridge_comparison"): TWOWIKI_BRIDGE_COMPARISON,
}


# ---------------------------------------------------------------- sampling


class QuestionSampler:
    """Draws questions of one world; `used` keys are shared so no content repeats anywhere."""

    def __init__(self, world: World, passages: list[CorpusPassage], cfg: QuestionConfig):
        self.world, self.cfg = world, cfg
        self.rng = random.Random(f"{world.seed}:questions")
        self.used: set[tuple] = set()
        self.by_kind = {k: world.of_kind(k) for k in ("person", "film", "band", "company", "city")}
        self.mentioned_in: dict[str, list[CorpusPassage]] = defaultdict(list)
        for p in passages:
            for name in p.mentions:
                self.mentioned_in[name].append(p)

    def chain(self, spec: ChainSpec, dataset: str, qtype: str) -> Question | None:
        if not self.by_kind[spec.kind]:
            return None
        topic = self.rng.choice(self.by_kind[spec.kind])
        bridge = topic.facts.get(spec.first)
        if bridge is None:
            return None
        answer = self.world.fact(bridge, spec.second)
        if not answer:
            return None
        text = self.rng.choice(spec.templates).format(s=topic.name)
        if contains_phrase(text, answer) or answer == topic.name:
            return None
        # One search for the topic must not reveal the answer: a second hop is required.
        if any(contains_phrase(p.text, answer) for p in self.mentioned_in[topic.name]):
            return None
        evidences = [
            Evidence(topic.name, spec.first, bridge),
            Evidence(bridge, spec.second, answer),
        ]
        key = ("chain", topic.name, spec.first, spec.second)
        return Question(key, dataset, qtype, text, answer, evidences, topic=topic.name)

    def _value(self, name: str, spec: CompareSpec) -> tuple[str, str] | None:
        """(via entity or name itself, compared value) or None when a fact is missing."""
        holder = name if spec.via is None else self.world.fact(name, spec.via)
        if holder is None:
            return None
        value = self.world.fact(holder, spec.relation)
        return (holder, value) if value else None

    def compare(self, spec: CompareSpec, dataset: str, qtype: str) -> Question | None:
        pool = [e.name for e in self.by_kind[spec.kind]]
        if len(pool) < 2:
            return None
        want_yes = spec.mode == "same" and self.rng.random() < self.cfg.yes_fraction
        if want_yes:
            pair = self._pair_sharing_value(spec, pool)
        else:
            pair = tuple(self.rng.sample(pool, 2))
        if pair is None:
            return None
        a, b = pair
        va, vb = self._value(a, spec), self._value(b, spec)
        if va is None or vb is None or va[0] == vb[0]:
            return None
        (ha, xa), (hb, xb) = va, vb
        if spec.mode == "same":
            if (xa == xb) != want_yes:  # keep the yes/no share at cfg.yes_fraction
                return None
            answer = "yes" if want_yes else "no"
        elif xa == xb:
            return None
        else:
            first_is_a = int(xa) < int(xb)
            answer = a if first_is_a == (spec.mode == "earlier") else b
        evidences = [Evidence(a, spec.relation, xa), Evidence(b, spec.relation, xb)]
        if spec.via is not None:
            evidences = [
                Evidence(a, spec.via, ha),
                Evidence(b, spec.via, hb),
                Evidence(ha, spec.relation, xa),
                Evidence(hb, spec.relation, xb),
            ]
        text = self.rng.choice(spec.templates).format(a=a, b=b)
        key = ("compare", spec.via, spec.relation, *sorted((a, b)))
        return Question(key, dataset, qtype, text, answer, evidences, compared=[xa, xb])

    def _pair_sharing_value(self, spec: CompareSpec, pool: list[str]) -> tuple[str, str] | None:
        groups: dict[str, list[str]] = defaultdict(list)
        for name in pool:
            v = self._value(name, spec)
            if v is not None:
                groups[v[1]].append(name)
        shared = [g for g in groups.values() if len(g) >= 2]
        if not shared:
            return None
        return tuple(self.rng.sample(self.rng.choice(shared), 2))

    def draw(self, dataset: str, qtype: str) -> Question | None:
        specs = QUESTION_TYPES[(dataset, qtype)]
        if isinstance(specs[0], ChainSpec):
            return self.chain(self.rng.choice(specs), dataset, qtype)
        yes_no = [s for s in specs if s.mode == "same"]
        ordered = [s for s in specs if s.mode != "same"]
        group = yes_no if self.rng.random() < self.cfg.yes_no_fraction else ordered
        return self.compare(self.rng.choice(group), dataset, qtype)

    def sample(self, dataset: str, qtype: str, counts: SplitCounts) -> list[Question]:
        """Distinct questions of one type, split train/dev/test (dev and test filled first)."""
        wanted = counts.train + counts.dev + counts.test
        out: list[Question] = []
        for _ in range(wanted * self.cfg.attempts_per_question):
            if len(out) == wanted:
                break
            q = self.draw(dataset, qtype)
            if q is None or q.key in self.used:
                continue
            self.used.add(q.key)
            out.append(q)
        self.rng.shuffle(out)
        sizes = {"dev": counts.dev, "test": counts.test, "train": counts.train}
        start = 0
        for split in ("dev", "test", "train"):
            for q in out[start : start + sizes[split]]:
                q.split = split
            start += sizes[split]
        return out


def type_counts(cfg: QuestionConfig) -> dict[tuple[str, str], SplitCounts]:
    h, w = cfg.hotpotqa, cfg.twowiki
    return {
        (HOTPOTQA, "bridge"): h.bridge,
        (HOTPOTQA, "comparison"): h.comparison,
        (TWOWIKI, "compositional"): w.compositional,
        (TWOWIKI, "inference"): w.inference,
        (TWOWIKI, "comparison"): w.comparison,
        (TWOWIKI, "bridge_comparison"): w.bridge_comparison,
    }


def generate_questions(
    world: World, passages: list[CorpusPassage], cfg: QuestionConfig
) -> list[Question]:
    sampler = QuestionSampler(world, passages, cfg)
    out: list[Question] = []
    for (dataset, qtype), counts in type_counts(cfg).items():
        out.extend(sampler.sample(dataset, qtype, counts))
    return out
