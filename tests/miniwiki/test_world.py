"""The world generator: determinism, disjoint worlds, sane relations."""

from __future__ import annotations

import random
from pathlib import Path

from miniwiki.build import build
from miniwiki.names import NameForge
from miniwiki.presets import tiny_config
from miniwiki.world import (
    BIRTH_YEAR,
    CAST,
    DEATH_YEAR,
    DIRECTOR,
    DIRECTOR_JOB,
    FATHER,
    FOUNDER,
    MOTHER,
    RELEASE_YEAR,
    SPOUSE,
    build_world,
)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".json", ".jsonl") and p.name != "summary.json"
    }


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path):
    build(tiny_config(tmp_path / "a"))
    build(tiny_config(tmp_path / "b"))
    build(tiny_config(tmp_path / "c", task_seed=99))
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert len(a) == 16  # 2 worlds x (corpus, entities, 2 datasets x 3 splits)
    assert a == b
    assert a["task/corpus.jsonl"] != c["task/corpus.jsonl"]
    assert a["task/hotpotqa_train.json"] != c["task/hotpotqa_train.json"]


def test_name_forge_never_reuses_an_excluded_word():
    first = NameForge(random.Random(0))
    taken = {first.word("city") for _ in range(300)}
    # Same seed: without exclusion the second forge would draw exactly the same words.
    again = NameForge(random.Random(0))
    assert {again.word("city") for _ in range(300)} == taken
    second = NameForge(random.Random(0), excluded=frozenset(taken))
    fresh = {second.word("city") for _ in range(300)}
    assert len(fresh) == 300 and not fresh & taken


def test_worlds_share_no_entity_name_nor_word(small_pair):
    task, warmup = small_pair
    assert task.world.seed != warmup.world.seed
    assert not task.entity_names() & warmup.entity_names()
    assert not task.world.words & warmup.world.words
    # Not even inside text: no task-world name occurs anywhere in the warm-up corpus.
    warm_text = "\n".join(p.contents for p in warmup.passages)
    assert not [name for name in task.entity_names() if name in warm_text]


def test_names_are_unique_and_distinctive(small_pair):
    task, _ = small_pair
    names = list(task.world.entities)
    assert len(names) == len(set(names))
    assert all(len(n) >= 5 for n in names)
    # Every multi-word person name has a unique (given, family) pair; families are shared by kin.
    persons = task.world.of_kind("person")
    assert len({p.name for p in persons}) == len(persons)


def test_relations_are_consistent(small_pair, small_cfg):
    world = small_pair[0].world
    hist = small_cfg.task.history
    for p in world.of_kind("person"):
        f = p.facts
        if FATHER in f:
            father, mother = world.entities[f[FATHER]], world.entities[f[MOTHER]]
            assert father.gender == "male" and mother.gender == "female"
            for parent in (father, mother):
                age = int(f[BIRTH_YEAR]) - int(parent.facts[BIRTH_YEAR])
                assert hist.parent_age_min <= age <= hist.parent_age_max
            assert f[FATHER].split()[-1] == p.name.split()[-1]  # the family name is inherited
        if SPOUSE in f:
            spouse = world.entities[f[SPOUSE]]
            assert spouse.gender != p.gender
            assert SPOUSE not in spouse.facts  # stated on one side only (no one-search shortcut)
        if DEATH_YEAR in f:
            assert int(f[DEATH_YEAR]) > int(f[BIRTH_YEAR])
            assert int(f[DEATH_YEAR]) < hist.current_year
    for film in world.of_kind("film"):
        director = world.entities[film.facts[DIRECTOR]]
        assert director.facts["occupation"] == DIRECTOR_JOB
        year = int(film.facts[RELEASE_YEAR])
        assert int(director.facts[BIRTH_YEAR]) + hist.career_start_age <= year
        assert year <= int(director.facts.get(DEATH_YEAR, hist.current_year))
        if CAST in film.facts:
            assert film.facts[CAST] != film.facts[DIRECTOR]
    for kind in ("band", "company"):
        for e in world.of_kind(kind):
            assert world.entities[e.facts[FOUNDER]].kind == "person"


def test_build_world_is_deterministic_in_memory(small_cfg):
    a, b = build_world(small_cfg.task), build_world(small_cfg.task)
    assert [(e.name, e.facts) for e in a.entities.values()] == [
        (e.name, e.facts) for e in b.entities.values()
    ]
