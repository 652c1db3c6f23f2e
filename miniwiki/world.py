"""A seeded world of typed entities, their attributes and their relations.

Each entity stores its facts as `relation -> value` (2WikiMultiHopQA relation names), where a
value is another entity's name or a literal (a year, an occupation). A fact is stated only in
its subject's article, so following a relation means reading a second article: that is what
makes the questions multi-hop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from miniwiki.config import HistoryConfig, WorldConfig
from miniwiki.names import NameForge, demonym
from recipe.exit_status import BAD_INPUT

# Relation names (as in 2WikiMultiHopQA evidences).
BIRTH_YEAR = "date of birth"
DEATH_YEAR = "date of death"
BIRTHPLACE = "place of birth"
CITIZENSHIP = "country of citizenship"
OCCUPATION = "occupation"
FATHER = "father"
MOTHER = "mother"
SPOUSE = "spouse"
DIRECTOR = "director"
CAST = "cast member"
RELEASE_YEAR = "publication date"
FILMING_LOCATION = "filming location"
GENRE = "genre"
FOUNDER = "founded by"
INCEPTION = "inception"
FORMED_IN = "location of formation"
HEADQUARTERS = "headquarters location"
INDUSTRY = "industry"
COUNTRY = "country"
CAPITAL = "capital"

DIRECTOR_JOB = "film director"
ACTOR_JOB = "actor"
MUSICIAN_JOB = "musician"
FOUNDER_JOB = "entrepreneur"
OTHER_JOBS = (
    "writer", "painter", "architect", "physicist", "politician", "poet", "sculptor",
    "chemist", "diplomat", "photographer", "composer", "historian",
)  # fmt: skip
FILM_GENRES = (
    "drama", "comedy", "thriller", "western", "musical", "documentary", "war",
    "romance", "science fiction", "horror", "adventure", "crime",
)  # fmt: skip
MUSIC_GENRES = ("rock", "folk", "jazz", "punk", "pop", "metal", "electronic", "blues")
INDUSTRIES = (
    "shipping", "textile", "mining", "publishing", "brewing", "railway", "software",
    "insurance", "aviation", "pharmaceutical", "steel", "telecommunications",
)  # fmt: skip


class WorldTooSmall(ValueError):
    """The entity counts cannot satisfy the world's constraints (e.g. too few people)."""

    exit_status = BAD_INPUT


@dataclass
class Entity:
    name: str
    kind: str  # country, city, person, film, band, company
    facts: dict[str, str] = field(default_factory=dict)
    gender: str = ""  # persons only: "male" or "female" (pronouns, father/mother)
    details: dict[str, str] = field(default_factory=dict)  # article-only data (marriage year)


@dataclass
class World:
    seed: int
    entities: dict[str, Entity]
    words: frozenset[str]  # every invented word the world used

    def of_kind(self, kind: str) -> list[Entity]:
        return [e for e in self.entities.values() if e.kind == kind]

    def fact(self, name: str, relation: str) -> str | None:
        return self.entities[name].facts.get(relation)


@dataclass
class _Person:
    """A person before naming: structure first, names after (children inherit family names)."""

    birth: int
    death: int | None
    gender: str
    city: str
    occupation: str | None = None
    spouse: int | None = None
    father: int | None = None
    mother: int | None = None
    children: int = 0
    marriage_year: int | None = None
    states_spouse: bool = False


def build_world(cfg: WorldConfig, excluded: frozenset[str] = frozenset()) -> World:
    """The whole world for `cfg.seed`; no invented word is taken from `excluded`."""
    rng = random.Random(cfg.seed)
    forge = NameForge(rng, excluded)
    hist = cfg.history
    entities: dict[str, Entity] = {}
    countries = _make_countries(cfg, rng, forge)
    cities = _make_cities(cfg, rng, forge, countries)
    people = _make_people(cfg, rng, [c.name for c in cities])
    works = _assign_works(cfg, rng, forge, people, [c.name for c in cities])
    names = _name_people(hist, rng, forge, people)
    for e in countries + cities:
        entities[e.name] = e
    for i, p in enumerate(people):
        entities[names[i]] = _person_entity(names, i, p, people, entities)
    for e in works:
        for rel in (DIRECTOR, CAST, FOUNDER):
            if rel in e.facts:
                e.facts[rel] = names[int(e.facts[rel])]
        entities[e.name] = e
    return World(seed=cfg.seed, entities=entities, words=forge.words)


def _make_countries(cfg: WorldConfig, rng: random.Random, forge: NameForge) -> list[Entity]:
    h = cfg.history
    out = []
    for _ in range(cfg.entities.countries):
        name = forge.word("country", (1, 1))
        year = rng.randint(h.independence_min, h.independence_max)
        out.append(Entity(name, "country", {INCEPTION: str(year)}))
    return out


def _make_cities(
    cfg: WorldConfig, rng: random.Random, forge: NameForge, countries: list[Entity]
) -> list[Entity]:
    h = cfg.history
    if cfg.entities.cities < len(countries):
        raise WorldTooSmall("need at least one city per country (entities.cities >= countries)")
    out = []
    for i in range(cfg.entities.cities):
        country = countries[i] if i < len(countries) else rng.choice(countries)
        year = rng.randint(h.city_founded_min, h.city_founded_max)
        city = Entity(forge.word("city", (1, 2)), "city", {COUNTRY: country.name})
        city.facts[INCEPTION] = str(year)
        if i < len(countries):
            country.facts[CAPITAL] = city.name
        out.append(city)
    return out


def _make_people(cfg: WorldConfig, rng: random.Random, cities: list[str]) -> list[_Person]:
    h = cfg.history
    people = []
    for _ in range(cfg.entities.persons):
        birth = rng.randint(h.birth_year_min, h.birth_year_max)
        end = birth + rng.randint(h.lifespan_min, h.lifespan_max)
        death = end if end < h.current_year else None
        gender = rng.choice(("male", "female"))
        people.append(_Person(birth, death, gender, rng.choice(cities)))
    people.sort(key=lambda p: p.birth)
    _marry(h, rng, people)
    _give_parents(h, rng, people)
    return people


def _marry(h: HistoryConfig, rng: random.Random, people: list[_Person]) -> None:
    for i, a in enumerate(people):
        if a.spouse is not None or rng.random() >= h.marriage_rate:
            continue
        candidates = []
        for j in range(i + 1, len(people)):
            b = people[j]
            if b.birth - a.birth > h.max_spouse_age_gap:
                break
            if b.spouse is None and b.gender != a.gender:
                candidates.append(j)
        if not candidates:
            continue
        j = rng.choice(candidates)
        b = people[j]
        a.spouse, b.spouse = j, i
        year = b.birth + h.parent_age_min + rng.randint(0, h.max_spouse_age_gap)
        ends = [h.current_year] + [p.death for p in (a, b) if p.death is not None]
        a.marriage_year = b.marriage_year = min([year, *ends])
        # The marriage is stated in one of the two articles only, so that searching one
        # spouse's name never surfaces the other's own facts (that would skip a hop).
        (a if rng.random() < 0.5 else b).states_spouse = True


def _give_parents(h: HistoryConfig, rng: random.Random, people: list[_Person]) -> None:
    couples = [(i, p.spouse) for i, p in enumerate(people) if p.spouse is not None and p.spouse > i]
    for child in people:
        if rng.random() >= h.parent_rate:
            continue
        fits = []
        for a, b in couples:
            pa, pb = people[a], people[b]
            ages = (child.birth - pa.birth, child.birth - pb.birth)
            if not all(h.parent_age_min <= age <= h.parent_age_max for age in ages):
                continue
            if pa.children >= h.max_children or any(
                p.death is not None and p.death < child.birth for p in (pa, pb)
            ):
                continue
            fits.append((a, b))
        if not fits:
            continue
        a, b = rng.choice(fits)
        father, mother = (a, b) if people[a].gender == "male" else (b, a)
        child.father, child.mother = father, mother
        people[a].children += 1
        people[b].children += 1


def _career(h: HistoryConfig, p: _Person) -> tuple[int, int]:
    start = p.birth + h.career_start_age
    end = min(start + h.career_span, p.death or h.current_year, h.current_year)
    return start, end


def _pick_worker(
    h: HistoryConfig, rng: random.Random, people: list[_Person], job: str, year: int | None
) -> int | None:
    """Someone already in `job` (with repeat_creator_rate) or without a job yet, free in `year`."""

    def free(i: int) -> bool:
        start, end = _career(h, people[i])
        return start <= end and (year is None or start <= year <= end)

    holders = [i for i, p in enumerate(people) if p.occupation == job and free(i)]
    if holders and rng.random() < h.repeat_creator_rate:
        return rng.choice(holders)
    idle = [i for i, p in enumerate(people) if p.occupation is None and free(i)]
    if not idle:  # everyone has a job already: someone in the trade takes one more work
        return rng.choice(holders) if holders else None
    choice = rng.choice(idle)
    people[choice].occupation = job
    return choice


WORK_ROLES = {
    "film": (DIRECTOR_JOB, DIRECTOR),
    "band": (MUSICIAN_JOB, FOUNDER),
    "company": (FOUNDER_JOB, FOUNDER),
}


def _assign_works(
    cfg: WorldConfig,
    rng: random.Random,
    forge: NameForge,
    people: list[_Person],
    cities: list[str],
) -> list[Entity]:
    h, n = cfg.history, cfg.entities
    works: list[Entity] = []
    kinds = ["film"] * n.films + ["band"] * n.bands + ["company"] * n.companies
    rng.shuffle(kinds)  # interleaved, so every trade gets people before the idle ones run out
    for kind in kinds:
        job, relation = WORK_ROLES[kind]
        creator = _pick_worker(h, rng, people, job, None)
        if creator is None:
            raise WorldTooSmall(
                f"too few people to give every {kind} a {job}: raise entities.persons"
            )
        start, end = _career(h, people[creator])
        year = rng.randint(start, end)
        work = Entity(_work_name(kind, rng, forge), kind, {relation: str(creator)})
        work.facts[RELEASE_YEAR if kind == "film" else INCEPTION] = str(year)
        _work_details(kind, rng, work, cities)
        if kind == "film":
            actor = _pick_worker(h, rng, people, ACTOR_JOB, year)
            if actor is not None and actor != creator:
                work.facts[CAST] = str(actor)
        works.append(work)
    for p in people:
        if p.occupation is None:
            p.occupation = rng.choice(OTHER_JOBS)
    return works


def _work_details(kind: str, rng: random.Random, work: Entity, cities: list[str]) -> None:
    if kind == "film":
        work.facts[GENRE] = rng.choice(FILM_GENRES)
        work.facts[FILMING_LOCATION] = rng.choice(cities)
    elif kind == "band":
        work.facts[GENRE] = rng.choice(MUSIC_GENRES)
        work.facts[FORMED_IN] = rng.choice(cities)
    else:
        work.facts[INDUSTRY] = rng.choice(INDUSTRIES)
        work.facts[HEADQUARTERS] = rng.choice(cities)


FILM_TITLES = (
    "The {w} Affair", "Return to {w}", "Night over {w}", "The Lanterns of {w}",
    "{w} Rising", "The Last Days of {w}", "A Winter in {w}", "The {w} Letters",
    "Beyond {w}", "The Ballad of {w}", "{w}", "Shadows of {w}",
)  # fmt: skip
BAND_NAMES = ("The {w}s", "{w}", "{w} Echo", "The {w} Collective", "{w} Parade", "Velvet {w}")
COMPANY_NAMES = ("{w} Industries", "{w} Works", "{w} & Sons", "{w} Group", "{w}", "{w} Holdings")


def _work_name(kind: str, rng: random.Random, forge: NameForge) -> str:
    templates = {"film": FILM_TITLES, "band": BAND_NAMES, "company": COMPANY_NAMES}[kind]
    return rng.choice(templates).format(w=forge.word("thing", (1, 2)))


def _name_people(
    h: HistoryConfig, rng: random.Random, forge: NameForge, people: list[_Person]
) -> list[str]:
    """Full names, unique in the world; a child takes the father's family name."""
    pools = {g: [] for g in ("male", "female")}
    family: list[str] = []
    names: list[str] = []
    taken: set[str] = set()
    for p in people:  # sorted by birth, so fathers are named before their children
        fam = family[p.father] if p.father is not None else forge.word("family", (1, 1))
        family.append(fam)
        pool = pools[p.gender]
        while True:
            if len(pool) < h.given_names_per_gender:
                pool.append(forge.word(f"given_{p.gender}", (1, 1)))
            full = f"{rng.choice(pool)} {fam}"
            if full not in taken:
                break
        taken.add(full)
        names.append(full)
    return names


def _person_entity(
    names: list[str], i: int, p: _Person, people: list[_Person], entities: dict[str, Entity]
) -> Entity:
    country = entities[p.city].facts[COUNTRY]
    facts = {
        BIRTH_YEAR: str(p.birth),
        BIRTHPLACE: p.city,
        CITIZENSHIP: demonym(country),
        OCCUPATION: p.occupation or "",
    }
    if p.death is not None:
        facts[DEATH_YEAR] = str(p.death)
    if p.father is not None and p.mother is not None:
        facts[FATHER] = names[p.father]
        facts[MOTHER] = names[p.mother]
    details = {}
    if p.spouse is not None and p.states_spouse:
        facts[SPOUSE] = names[p.spouse]
        details["marriage year"] = str(p.marriage_year)
    return Entity(names[i], "person", facts, gender=p.gender, details=details)
