"""One encyclopedia article per entity, and its split into ~100-word passages.

Each sentence remembers which of its subject's facts it states and which entity names it
mentions; questions cite sentences (HotpotQA `supporting_facts`) and the generator uses the
mentions to reject questions that one passage could answer alone. An article states only its
own subject's facts (a person's article never lists the films the person directed), so each
hop of a question lives in a different article.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from miniwiki.config import ArticleConfig
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
    INDUSTRY,
    MOTHER,
    OCCUPATION,
    RELEASE_YEAR,
    SPOUSE,
    Entity,
    World,
)


@dataclass(frozen=True)
class Sentence:
    text: str
    relations: tuple[str, ...] = ()  # the subject's facts this sentence states
    mentions: tuple[str, ...] = ()  # other entities' names in the text


@dataclass
class Article:
    title: str
    kind: str
    sentences: list[Sentence]

    def sentence_of(self, relation: str) -> int:
        for i, s in enumerate(self.sentences):
            if relation in s.relations:
                return i
        raise KeyError(f"{self.title}: no sentence states {relation!r}")


@dataclass(frozen=True)
class CorpusPassage:
    id: str
    title: str
    text: str
    first_sentence: int  # index in the article of the passage's first sentence
    n_sentences: int
    mentions: frozenset[str]  # entity names in the passage, its title included

    @property
    def contents(self) -> str:
        return f"{self.title}\n{self.text}"

    def holds(self, sentence_index: int) -> bool:
        return self.first_sentence <= sentence_index < self.first_sentence + self.n_sentences


# The words that come right before a fact's value in every sentence stating it. Sentences vary
# around them (subject, order, extra clauses), but a relation keeps its wording, as a real
# encyclopedia's house style does; a query names the relation by these words, so the reader's
# job is to find them in the documents and copy what follows (an induction-head copy, which a
# small pretrained model does well) rather than to match "director" to "directed the film".
# Genre, industry, occupation and nationality are stated by their value alone ("a Velmorian
# painter"), so they have no cue.
CUES: dict[tuple[str, str], str] = {
    ("person", BIRTH_YEAR): "born",
    ("person", DEATH_YEAR): "died",
    ("person", BIRTHPLACE): "native of",
    ("person", FATHER): "father was",
    ("person", MOTHER): "mother was",
    ("person", SPOUSE): "married",
    ("film", DIRECTOR): "directed by",
    ("film", CAST): "stars",
    ("film", RELEASE_YEAR): "released in",
    ("film", FILMING_LOCATION): "shot in",
    ("band", FORMED_IN): "band from",
    ("band", INCEPTION): "formed in",
    ("band", FOUNDER): "founded by",
    ("company", HEADQUARTERS): "headquartered in",
    ("company", INCEPTION): "founded in",
    ("company", FOUNDER): "founded by",
    ("city", COUNTRY): "located in",
    ("city", INCEPTION): "founded in",
    ("country", CAPITAL): "capital is",
    ("country", INCEPTION): "independent in",
}


def fact_cue(kind: str, relation: str) -> str | None:
    """The words before a `kind` entity's `relation` value in its article, if it has any."""
    return CUES.get((kind, relation))


def an(word: str) -> str:
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word


def contains_phrase(text: str, phrase: str) -> bool:
    """`phrase` occurs in `text` as whole words (Velmor does not match inside Velmora)."""
    return re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, flags=re.IGNORECASE) is not None


# ---------------------------------------------------------------- article writers


def _pronouns(e: Entity) -> dict[str, str]:
    male = e.gender == "male"
    return {"p": "he" if male else "she", "pos": "his" if male else "her"}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _person(e: Entity, rng: random.Random, world: World) -> tuple[Sentence, list[Sentence]]:
    f, pr = e.facts, _pronouns(e)
    p, pos = pr["p"], pr["pos"]
    who = f"{an(f[CITIZENSHIP])} {f[OCCUPATION]}"
    if DEATH_YEAR in f:
        lead_text = rng.choice((
            f"{e.name} (born {f[BIRTH_YEAR]}, died {f[DEATH_YEAR]}) was {who}.",
            f"{e.name}, born {f[BIRTH_YEAR]} and died {f[DEATH_YEAR]}, was {who}.",
            f"{e.name} was {who}, born {f[BIRTH_YEAR]} and died {f[DEATH_YEAR]}.",
        ))  # fmt: skip
        lead = Sentence(lead_text, (BIRTH_YEAR, DEATH_YEAR, OCCUPATION, CITIZENSHIP))
    else:
        lead_text = rng.choice((
            f"{e.name} (born {f[BIRTH_YEAR]}) is {who}.",
            f"{e.name}, born {f[BIRTH_YEAR]}, is {who}.",
        ))  # fmt: skip
        lead = Sentence(lead_text, (BIRTH_YEAR, OCCUPATION, CITIZENSHIP))
    city = f[BIRTHPLACE]
    body = [Sentence(rng.choice((
        f"{_cap(p)} was a native of {city}.",
        f"{e.name} was a native of {city}.",
        f"A native of {city}, {p} spent {pos} childhood there.",
    )), (BIRTHPLACE,), (city,))]  # fmt: skip
    if FATHER in f:
        fa, mo = f[FATHER], f[MOTHER]
        body.append(Sentence(rng.choice((
            f"{_cap(pos)} father was {fa} and {pos} mother was {mo}.",
            f"{_cap(pos)} mother was {mo}, and {pos} father was {fa}.",
            f"{e.name}'s father was {fa} and {pos} mother was {mo}.",
        )), (FATHER, MOTHER), (fa, mo)))  # fmt: skip
    if SPOUSE in f:
        sp, year = f[SPOUSE], e.details["marriage year"]
        body.append(Sentence(rng.choice((
            f"In {year}, {p} married {sp}.",
            f"{_cap(p)} married {sp} in {year}.",
            f"{e.name} married {sp} in {year}.",
        )), (SPOUSE,), (sp,)))  # fmt: skip
    other = rng.choice([c.name for c in world.of_kind("city") if c.name != city])
    year = str(int(f[BIRTH_YEAR]) + rng.randint(18, 30))
    fillers = [
        Sentence(f"{_cap(p)} spent several years working in {other}.", mentions=(other,)),
        Sentence(f"In {year}, {p} received a national award for {pos} work."),
        Sentence(f"Critics often described {pos} work as {rng.choice(QUALITIES)}."),
        Sentence(f"{_cap(p)} studied {rng.choice(SUBJECTS)} at university."),
        Sentence(f"{_cap(pos)} letters and notebooks are kept in a public archive."),
        Sentence(f"{_cap(p)} was known among colleagues for a {rng.choice(QUALITIES)} manner."),
        Sentence(f"As a young adult, {p} travelled widely and kept detailed diaries of the trips."),
        Sentence(f"Later in life, {p} taught younger colleagues and gave many public lectures."),
        Sentence(f"A short biography of {e.name} appeared in a regional journal."),
        Sentence(f"{_cap(pos)} early work drew little attention outside a small circle."),
    ]
    return lead, body + fillers


QUALITIES = ("restless", "meticulous", "bold", "quiet", "playful", "severe", "generous", "wry")
SUBJECTS = ("law", "medicine", "philosophy", "engineering", "music", "history", "mathematics")


def _film(e: Entity, rng: random.Random, world: World) -> tuple[Sentence, list[Sentence]]:
    f, t = e.facts, e.name
    d, y, g = f[DIRECTOR], f[RELEASE_YEAR], f[GENRE]
    body = []
    if rng.random() < 0.5:
        lead = Sentence(rng.choice((
            f"{t} is {an(g)} film directed by {d}, released in {y}.",
            f"Released in {y}, {t} is {an(g)} film directed by {d}.",
        )), (RELEASE_YEAR, GENRE, DIRECTOR), (d,))  # fmt: skip
    else:
        lead = Sentence(f"{t} is {an(g)} film released in {y}.", (RELEASE_YEAR, GENRE))
        body.append(Sentence(rng.choice((
            f"It was directed by {d}.", f"The film was directed by {d}.",
        )), (DIRECTOR,), (d,)))  # fmt: skip
    if CAST in f:
        a = f[CAST]
        body.append(Sentence(rng.choice((
            f"It stars {a} in the leading role.", f"The film stars {a}.",
            f"It stars {a} alongside a cast of newcomers.",
        )), (CAST,), (a,)))  # fmt: skip
    loc = f[FILMING_LOCATION]
    body.append(Sentence(rng.choice((
        f"The film was shot in {loc}.", f"It was shot in {loc} over one summer.",
    )), (FILMING_LOCATION,), (loc,)))  # fmt: skip
    fillers = [
        Sentence("The film received mixed reviews on its release."),
        Sentence("It was a modest commercial success."),
        Sentence(f"A restored version appeared {rng.randint(10, 40)} years later."),
        Sentence("The score was written for a small string ensemble."),
        Sentence("Critics praised its cinematography and pacing."),
        Sentence("It was screened at several festivals abroad."),
        Sentence(f"The film runs for {rng.randint(80, 160)} minutes."),
        Sentence("Its screenplay went through many drafts before shooting began."),
        Sentence("Several scenes were cut to shorten the running time."),
    ]
    return lead, body + fillers


def _band(e: Entity, rng: random.Random, world: World) -> tuple[Sentence, list[Sentence]]:
    f, n = e.facts, e.name
    c, y, g, fo = f[FORMED_IN], f[INCEPTION], f[GENRE], f[FOUNDER]
    lead = Sentence(f"{n} is {an(g)} band from {c}.", (GENRE, FORMED_IN), (c,))
    body = [
        Sentence(rng.choice((
            f"The band was formed in {y}.", f"It was formed in {y}.", f"The group was formed in {y}.",
        )), (INCEPTION,)),
        Sentence(rng.choice((
            f"It was founded by {fo}.", f"The band was founded by {fo}.",
            f"The group was founded by {fo}.",
        )), (FOUNDER,), (fo,)),
    ]  # fmt: skip
    fillers = [
        Sentence(f"Its debut album appeared {rng.randint(1, 4)} years after the band formed."),
        Sentence("The band toured widely in its early years."),
        Sentence("Its line-up changed several times."),
        Sentence(f"Critics called its sound {rng.choice(QUALITIES)}."),
        Sentence("Several of its songs became radio hits."),
        Sentence("The band recorded most of its albums in a small rented studio."),
        Sentence("It went on a long hiatus before reuniting for a final tour."),
    ]
    return lead, body + fillers


def _company(e: Entity, rng: random.Random, world: World) -> tuple[Sentence, list[Sentence]]:
    f, n = e.facts, e.name
    c, y, ind, fo = f[HEADQUARTERS], f[INCEPTION], f[INDUSTRY], f[FOUNDER]
    lead = Sentence(
        rng.choice((
            f"{n} is {an(ind)} company headquartered in {c}.",
            f"{n}, {an(ind)} company, is headquartered in {c}.",
        )), (INDUSTRY, HEADQUARTERS), (c,))  # fmt: skip
    body = [
        Sentence(rng.choice((
            f"It was founded in {y}.", f"The company was founded in {y}.",
        )), (INCEPTION,)),
        Sentence(rng.choice((
            f"It was founded by {fo}.", f"The company was founded by {fo}.",
        )), (FOUNDER,), (fo,)),
    ]  # fmt: skip
    fillers = [
        Sentence("It grew quickly during its first decades."),
        Sentence(f"The company employs about {rng.randint(2, 90) * 100} people."),
        Sentence("It has offices in several countries."),
        Sentence("Its products are sold under several brand names."),
        Sentence("The company was reorganised after a long financial crisis."),
        Sentence("Its shares have been publicly traded for many years."),
        Sentence("The company opened a research laboratory in its second decade."),
    ]
    return lead, body + fillers


def _city(e: Entity, rng: random.Random, world: World) -> tuple[Sentence, list[Sentence]]:
    f, n = e.facts, e.name
    co = f[COUNTRY]
    lead = Sentence(
        rng.choice((f"{n} is a city located in {co}.", f"{n} is a market town located in {co}.")),
        (COUNTRY,), (co,))  # fmt: skip
    body = [Sentence(rng.choice((
        f"It was founded in {f[INCEPTION]}.", f"The city was founded in {f[INCEPTION]}.",
    )), (INCEPTION,))]  # fmt: skip
    fillers = [
        Sentence("It lies on the banks of a wide river."),
        Sentence("The city is known for its old covered market."),
        Sentence("Its economy is based on trade and crafts."),
        Sentence(f"It has a population of about {rng.randint(5, 900) * 1000} people."),
        Sentence("A railway line reached the city in the nineteenth century."),
        Sentence("The old town is surrounded by the remains of a medieval wall."),
        Sentence("The city hosts a university and several museums."),
    ]
    return lead, body + fillers


def _country(e: Entity, rng: random.Random, world: World) -> tuple[Sentence, list[Sentence]]:
    f, n = e.facts, e.name
    cap = f[CAPITAL]
    lead = Sentence(f"{n} is a sovereign country.")
    body = [
        Sentence(rng.choice((
            f"Its capital is {cap}.", f"The country's capital is {cap}.",
        )), (CAPITAL,), (cap,)),
        Sentence(rng.choice((
            f"{n} became independent in {f[INCEPTION]}.",
            f"The country became independent in {f[INCEPTION]}.",
        )), (INCEPTION,)),
    ]  # fmt: skip
    fillers = [
        Sentence("The country is divided into several provinces."),
        Sentence("Its economy relies on agriculture and trade."),
        Sentence("Most of its people live along the coast."),
        Sentence("It is governed as a parliamentary republic."),
    ]
    return lead, body + fillers


WRITERS = {"person": _person, "film": _film, "band": _band, "company": _company,
           "city": _city, "country": _country}  # fmt: skip


def write_article(e: Entity, world: World, cfg: ArticleConfig, rng: random.Random) -> Article:
    """Lead sentence first, then the fact sentences and a few fillers in a random order."""
    lead, rest = WRITERS[e.kind](e, rng, world)
    facts = [s for s in rest if s.relations]
    fillers = [s for s in rest if not s.relations]
    n_fill = min(len(fillers), rng.randint(cfg.filler_min, cfg.filler_max))
    body = facts + rng.sample(fillers, n_fill)
    rng.shuffle(body)
    return Article(e.name, e.kind, [lead, *body])


def write_articles(world: World, cfg: ArticleConfig) -> dict[str, Article]:
    rng = random.Random(f"{world.seed}:articles")
    return {name: write_article(e, world, cfg, rng) for name, e in world.entities.items()}


def split_passages(articles: dict[str, Article], passage_words: int) -> list[CorpusPassage]:
    """Pack whole sentences into passages of at most `passage_words` words (DPR-style ~100).

    An article is cut into as few passages as the cap allows, of balanced length, so that no
    passage is a stray one-sentence tail.
    """
    out: list[CorpusPassage] = []
    for art in articles.values():
        lengths = [len(s.text.split()) for s in art.sentences]
        target = sum(lengths) / math.ceil(sum(lengths) / passage_words)
        start, words = 0, 0
        for i, n in enumerate(lengths):
            if words and (words + n > passage_words or words >= target):
                out.append(_passage(len(out), art, start, i))
                start, words = i, 0
            words += n
        out.append(_passage(len(out), art, start, len(art.sentences)))
    return out


def _passage(index: int, art: Article, start: int, end: int) -> CorpusPassage:
    sents = art.sentences[start:end]
    mentions = frozenset([art.title, *(m for s in sents for m in s.mentions)])
    text = " ".join(s.text for s in sents)
    return CorpusPassage(str(index), art.title, text, start, end - start, mentions)
