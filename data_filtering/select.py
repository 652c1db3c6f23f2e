"""Buckets and per-stage selection: from rollouts-to-first-correct to the files the stages read.

Each finished question falls in one bucket by `filter.buckets` (easy / medium / difficult;
unsolved within the cap is difficult). Each stage of `filter.quotas` takes, for every source
and bucket it names, a seeded sample of the quota from that bucket (the bucket's questions in
key order, sampled with a seed made of `filter.selection_seed`, the stage, the source and the
bucket, so one quota's edit leaves the other picks alone). When a bucket holds fewer questions
than its quota the stage takes them all and the shortfall is reported. A stage's questions
are then shuffled (seeded), so the first N of its file are a fair sample of it
(`data.max_questions` takes a prefix), and written as `<output_dir>/<stage>.jsonl`:
`QARecord`s whose id is `<source>/<id>` (unique across sources) and whose `meta` carries the
source's labels plus `source_id` and `difficulty` (bucket, first_correct, rollouts, passes).
This reads only the estimation's results: it never rolls out.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from data_filtering.config import BUCKETS, BucketConfig
from data_filtering.difficulty import DifficultyResult, Question
from data_filtering.records import QARecord
from recipe.atomic import write_text

Pools = dict[str, dict[str, list[str]]]  # source -> bucket -> question keys (sorted)


@dataclass
class QuotaRow:
    stage: str
    source: str
    bucket: str
    quota: int
    available: int
    taken: int

    @property
    def short(self) -> int:
        return self.quota - self.taken


@dataclass
class StageSelection:
    stage: str
    keys: list[str]  # in file order
    rows: list[QuotaRow]

    @property
    def shortfalls(self) -> list[QuotaRow]:
        return [row for row in self.rows if row.short > 0]


def bucket_pools(
    results: Mapping[str, DifficultyResult], sources: list[str], buckets: BucketConfig
) -> Pools:
    pools: Pools = {source: {b: [] for b in BUCKETS} for source in sources}
    for key in sorted(results):
        result = results[key]
        if result.finished:
            pools[result.source][buckets.bucket(result.first_correct)].append(key)
    return pools


def select_stages(
    pools: Pools, quotas: Mapping[str, Mapping[str, Mapping[str, int]]], seed: int
) -> list[StageSelection]:
    selections = []
    for stage, by_source in quotas.items():
        chosen: list[str] = []
        rows = []
        for source, by_bucket in by_source.items():
            for bucket, quota in by_bucket.items():
                pool = pools.get(source, {}).get(bucket, [])
                rng = random.Random(f"{seed}/{stage}/{source}/{bucket}")
                taken = rng.sample(pool, min(quota, len(pool)))
                rows.append(QuotaRow(stage, source, bucket, quota, len(pool), len(taken)))
                chosen += taken
        random.Random(f"{seed}/{stage}").shuffle(chosen)
        selections.append(StageSelection(stage, chosen, rows))
    return selections


def stage_record(question: Question, result: DifficultyResult, buckets: BucketConfig) -> QARecord:
    record = question.record
    difficulty = {
        "bucket": buckets.bucket(result.first_correct),
        "first_correct": result.first_correct,
        "rollouts": result.rollouts,
        "passes": result.passes,
    }
    meta = {**record.meta, "source_id": record.id, "difficulty": difficulty}
    return QARecord(question.key, record.question, list(record.answers), record.source, meta)


def write_if_changed(path: Path, text: str) -> bool:
    """Write atomically, and only when the content differs: an unchanged stage file keeps its
    timestamp, so make does not retrain a stage whose questions did not change."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return False
    write_text(path, text)
    return True


def write_stage_files(
    output_dir: Path,
    selections: list[StageSelection],
    questions: Mapping[str, Question],
    results: Mapping[str, DifficultyResult],
    buckets: BucketConfig,
) -> dict[str, bool]:
    """{stage: whether its file changed}."""
    changed = {}
    for selection in selections:
        lines = (
            json.dumps(
                stage_record(questions[k], results[k], buckets).to_dict(), ensure_ascii=False
            )
            for k in selection.keys
        )
        text = "".join(line + "\n" for line in lines)
        changed[selection.stage] = write_if_changed(output_dir / f"{selection.stage}.jsonl", text)
    return changed
