"""miniwiki settings: where the world is written, and the two worlds (task and warm-up).

Every knob of the generator is a field here; `configs/embedded/miniwiki.yaml` sets them.
The task world is what questions, corpus and retrieval index are about; the warm-up world is
what the base model's cold start is written about. They use different seeds and the warm-up
world is generated with every invented word of the task world excluded.
"""

from __future__ import annotations

from dataclasses import dataclass

from miniwiki.base_config import ColdStartConfig, GateConfig
from recipe.config import doc

# ================================================================ world sections (miniwiki helper)


@dataclass
class EntityCounts:
    countries: int = doc(14, "countries (each gets at least one city; its first is the capital)")
    cities: int = doc(120, "cities, each located in one country")
    persons: int = doc(
        1400, "people; directors, actors, musicians and founders are drawn from them"
    )
    films: int = doc(400, "films, each with a director and a lead actor")
    bands: int = doc(150, "bands, each with a founder and a home city")
    companies: int = doc(180, "companies, each with a founder and a headquarters city")


@dataclass
class HistoryConfig:
    """How dates, people, families and careers are drawn."""

    birth_year_min: int = doc(1800, "earliest birth year")
    birth_year_max: int = doc(2000, "latest birth year")
    current_year: int = doc(2024, "the world's present: nobody dies and nothing is founded later")
    lifespan_min: int = doc(40, "shortest lifespan in years")
    lifespan_max: int = doc(95, "longest lifespan in years")
    marriage_rate: float = doc(
        0.6, "chance that a person is married (to someone of similar age)", ge=0, le=1
    )
    max_spouse_age_gap: int = doc(8, "largest birth-year gap between spouses")
    parent_rate: float = doc(0.75, "chance that a person has parents in the world", ge=0, le=1)
    parent_age_min: int = doc(20, "youngest age of a parent at a child's birth")
    parent_age_max: int = doc(42, "oldest age of a parent at a child's birth")
    max_children: int = doc(4, "most children per couple")
    given_names_per_gender: int = doc(250, "size of each gender's pool of given names")
    career_start_age: int = doc(20, "youngest age at which someone directs, founds or stars")
    career_span: int = doc(50, "years after career start during which works are dated")
    repeat_creator_rate: float = doc(
        0.35,
        "chance that a work goes to someone who already has that role (same director...)",
        ge=0,
        le=1,
    )
    city_founded_min: int = doc(900, "earliest city foundation year")
    city_founded_max: int = doc(1780, "latest city foundation year")
    independence_min: int = doc(1600, "earliest year a country became independent")
    independence_max: int = doc(1960, "latest year a country became independent")


@dataclass
class ArticleConfig:
    passage_words: int = doc(100, "a passage is sentences packed up to this many words", ge=1)
    filler_min: int = doc(3, "fewest non-fact sentences per article")
    filler_max: int = doc(7, "most non-fact sentences per article")


@dataclass
class SplitCounts:
    train: int = doc(0, "questions in the train split")
    dev: int = doc(0, "questions in the dev split")
    test: int = doc(0, "questions in the test split")


@dataclass
class HotpotQACounts:
    bridge: SplitCounts = doc(SplitCounts(800, 110, 110), "bridge: entity -> bridge -> answer")
    comparison: SplitCounts = doc(SplitCounts(500, 70, 70), "comparison of two entities")


@dataclass
class TwoWikiCounts:
    compositional: SplitCounts = doc(SplitCounts(450, 60, 60), "attribute of a related entity")
    inference: SplitCounts = doc(SplitCounts(300, 40, 40), "kinship by composition")
    comparison: SplitCounts = doc(SplitCounts(300, 40, 40), "comparison of two entities")
    bridge_comparison: SplitCounts = doc(
        SplitCounts(300, 40, 40), "comparison through a related entity (4 facts)"
    )


@dataclass
class QuestionConfig:
    hotpotqa: HotpotQACounts = doc(HotpotQACounts(), "HotpotQA-style question counts")
    twowiki: TwoWikiCounts = doc(TwoWikiCounts(), "2WikiMultiHopQA-style question counts")
    yes_no_fraction: float = doc(0.35, "share of comparison questions answered yes/no", ge=0, le=1)
    yes_fraction: float = doc(0.5, "share of yes/no questions whose answer is yes", ge=0, le=1)
    context_distractors: int = doc(8, "non-gold articles added to each record's context")
    attempts_per_question: int = doc(40, "sampling attempts per wanted question before giving up")


@dataclass
class WorldConfig:
    seed: int = doc(0, "random seed: the same seed and settings give byte-identical files")
    entities: EntityCounts = doc(EntityCounts(), "how many entities of each type")
    history: HistoryConfig = doc(HistoryConfig(), "dates, people, families, careers")
    articles: ArticleConfig = doc(ArticleConfig(), "articles and passages")
    questions: QuestionConfig = doc(QuestionConfig(), "questions per dataset, type, split")


def _warmup_default() -> WorldConfig:
    """Smaller than the task world: the cold start needs a few hundred transcripts."""
    small = SplitCounts(200, 30, 30)
    return WorldConfig(
        seed=1,
        entities=EntityCounts(
            countries=8, cities=50, persons=450, films=150, bands=50, companies=60
        ),
        questions=QuestionConfig(
            hotpotqa=HotpotQACounts(bridge=small, comparison=small),
            twowiki=TwoWikiCounts(
                compositional=small, inference=small, comparison=small, bridge_comparison=small
            ),
        ),
    )


@dataclass
class MiniwikiConfig:
    out_dir: str = doc("runs/miniwiki", "everything is written under this folder")
    task: WorldConfig = doc(
        WorldConfig(seed=20240501), "the task world: questions, corpus and retrieval index"
    )
    warmup: WorldConfig = doc(
        _warmup_default(), "the warm-up world (cold start); shares no name with the task world"
    )
    # ============================================ base-model sections (coldstart, gate) below
    coldstart: ColdStartConfig = doc(
        ColdStartConfig(), "the base model's supervised cold start (`make base`)"
    )
    gate: GateConfig = doc(GateConfig(), "the base model's gate before any RL")
