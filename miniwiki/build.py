"""Build both worlds and write them under `out_dir`; skip when nothing changed.

Layout (per world, `task/` and `warmup/`): `corpus.jsonl` (FlashRAG), `entities.jsonl` (the
ground truth, for debugging), `hotpotqa_{train,dev,test}.json` and `2wiki_{train,dev,test}.json`
(JSON lists, as the official files). `summary.json` holds the counts and the fingerprint of the
world settings and generator code; a rebuild with the same fingerprint is skipped.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean

from miniwiki.articles import Article, CorpusPassage, split_passages, write_articles
from miniwiki.config import MiniwikiConfig, WorldConfig
from miniwiki.formats import corpus_line, record
from miniwiki.questions import (
    HOTPOTQA,
    SPLITS,
    TWOWIKI,
    Question,
    generate_questions,
    type_counts,
)
from miniwiki.world import World, build_world
from recipe.atomic import write_json, write_jsonl
from recipe.config import save_config
from recipe.exit_status import BAD_INPUT

GENERATOR_MODULES = ("names", "world", "articles", "questions", "formats", "build")
WORLDS = ("task", "warmup")
DATASETS = (HOTPOTQA, TWOWIKI)


class WorldsOverlap(RuntimeError):
    """The warm-up world reused a task-world name; the cold start could leak task facts."""

    exit_status = BAD_INPUT


@dataclass
class BuiltWorld:
    config: WorldConfig
    world: World
    articles: dict[str, Article]
    passages: list[CorpusPassage]
    questions: list[Question]

    def entity_names(self) -> set[str]:
        return set(self.world.entities)


def build_one(cfg: WorldConfig, excluded: frozenset[str] = frozenset()) -> BuiltWorld:
    world = build_world(cfg, excluded)
    articles = write_articles(world, cfg.articles)
    passages = split_passages(articles, cfg.articles.passage_words)
    questions = generate_questions(world, passages, cfg.questions)
    return BuiltWorld(cfg, world, articles, passages, questions)


def build_pair(cfg: MiniwikiConfig) -> tuple[BuiltWorld, BuiltWorld]:
    """The task world, then the warm-up world with every task-world word excluded."""
    task = build_one(cfg.task)
    warmup = build_one(cfg.warmup, excluded=task.world.words)
    shared = task.entity_names() & warmup.entity_names()
    if shared or task.world.words & warmup.world.words:
        raise WorldsOverlap(f"task and warm-up worlds share names: {sorted(shared)[:5]}")
    return task, warmup


def question_file(world_dir: Path, dataset: str, split: str) -> Path:
    return world_dir / f"{dataset}_{split}.json"


def fingerprint(cfg: MiniwikiConfig) -> str:
    """Hash of the world settings and the generator's code (cold-start settings excluded)."""
    h = hashlib.sha256()
    worlds = {"out_dir": cfg.out_dir, "task": asdict(cfg.task), "warmup": asdict(cfg.warmup)}
    h.update(json.dumps(worlds, sort_keys=True).encode())
    here = Path(__file__).parent
    for name in GENERATOR_MODULES:
        h.update((here / f"{name}.py").read_bytes())
    return h.hexdigest()


def write_world(built: BuiltWorld, world_dir: Path) -> dict:
    world_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(world_dir / "corpus.jsonl", [corpus_line(p) for p in built.passages])
    entities = [
        {"name": e.name, "kind": e.kind, "facts": e.facts} for e in built.world.entities.values()
    ]
    write_jsonl(world_dir / "entities.jsonl", entities)
    rng = random.Random(f"{built.world.seed}:context")
    distractors = built.config.questions.context_distractors
    for dataset in DATASETS:
        for split in SPLITS:
            rows = [
                record(q, built.articles, built.world.seed, distractors, rng)
                for q in built.questions
                if q.dataset == dataset and q.split == split
            ]
            write_json(question_file(world_dir, dataset, split), rows, indent=None)
    return world_summary(built)


def world_summary(built: BuiltWorld) -> dict:
    words = [len(p.text.split()) for p in built.passages]
    kinds = Counter(e.kind for e in built.world.entities.values())
    counts: dict[str, dict[str, int]] = {}
    for q in built.questions:
        counts.setdefault(f"{q.dataset}/{q.qtype}", Counter())[q.split] += 1
    by_split = Counter(q.split for q in built.questions)
    shortfall = {
        f"{dataset}/{qtype}/{split}": want - counts.get(f"{dataset}/{qtype}", {}).get(split, 0)
        for (dataset, qtype), wanted in type_counts(built.config.questions).items()
        for split in SPLITS
        if (want := getattr(wanted, split)) > counts.get(f"{dataset}/{qtype}", {}).get(split, 0)
    }
    yes_no = Counter(q.answer for q in built.questions if q.answer in ("yes", "no"))
    return {
        "seed": built.world.seed,
        "entities": dict(kinds),
        "articles": len(built.articles),
        "passages": len(built.passages),
        "passage_words": {"mean": round(mean(words), 1), "max": max(words), "min": min(words)},
        "questions": {k: dict(v) for k, v in counts.items()},
        "questions_per_split": {s: by_split[s] for s in SPLITS},
        "yes_no_answers": dict(yes_no),
        "shortfall": shortfall,  # questions asked for but not found (the world is too small)
    }


def _up_to_date(summary_path: Path, fp: str, out_dir: Path) -> dict | None:
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text())
    if summary.get("fingerprint") != fp:
        return None
    if not all((out_dir / f).exists() for f in summary.get("files", [])):
        return None
    return summary


def build(cfg: MiniwikiConfig, force: bool = False) -> dict:
    """Write both worlds (unless up to date) and return the summary."""
    out_dir = Path(cfg.out_dir)
    summary_path = out_dir / "summary.json"
    fp = fingerprint(cfg)
    if not force and (summary := _up_to_date(summary_path, fp, out_dir)) is not None:
        return {**summary, "skipped": True}
    started = time.perf_counter()
    task, warmup = build_pair(cfg)
    summary: dict = {"fingerprint": fp, "worlds": {}, "files": []}
    for name, built in zip(WORLDS, (task, warmup), strict=True):
        summary["worlds"][name] = write_world(built, out_dir / name)
        if summary["worlds"][name]["shortfall"]:
            print(
                f"miniwiki: warning: the {name} world is too small for the question counts asked;"
                f" missing {summary['worlds'][name]['shortfall']}",
                file=sys.stderr,
            )
        files = ["corpus.jsonl", "entities.jsonl"] + [
            question_file(Path(), d, s).name for d in DATASETS for s in SPLITS
        ]
        summary["files"] += [f"{name}/{f}" for f in files]
    summary["build_seconds"] = round(time.perf_counter() - started, 2)
    save_config(cfg, out_dir, "miniwiki_config.yaml")
    write_json(summary_path, summary, indent=None)
    return {**summary, "skipped": False}
