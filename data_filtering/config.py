"""The filtering run's configuration: a run config (the reference policy) plus a `filter:` section.

The reference policy is described by the run config's own sections, so a filter config
`extends:` the stages' common file and rolls out with exactly the model, prompt, tags,
retriever and sampling settings the stages train with: `model`, `tags`, `retriever`, `rollout`
(temperature, top-p, segment budgets, seed; `samples_per_prompt` is replaced by
`filter.rollouts_per_round`) and `reward` (the answer normalisation the metric uses). The other
run sections are accepted and unused. `python -m data_filtering --help` lists every field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from data_filtering.sources import FORMATS, HF_FORMAT
from recipe.config import FieldError, doc
from recipe.schema import RunConfig

BUCKETS = ("easy", "medium", "difficult")
METRICS = ("cover_em", "em", "f1")
SOURCE_FORMATS = ("auto", *FORMATS, HF_FORMAT)


@dataclass
class SourceConfig:
    path: str = doc("", "Question file (JSON list or jsonl), or a `datasets` name / folder (hf).")
    format: Literal["auto", "r1searcher", "hotpotqa", "2wiki", "flashrag", "qarecord", "hf"] = doc(
        "auto", "Row format (data_filtering.sources); auto detects it from the first record."
    )
    split: str = doc("train", "hf: the split to read.")
    subset: str | None = doc(None, "hf: the dataset configuration name (e.g. distractor).")
    questions: int | None = doc(
        None,
        "Seeded sample of this many questions (null: all). The sample is a prefix of one "
        "seeded order, so growing it keeps every question (and result) already there.",
        ge=1,
    )

    def __post_init__(self) -> None:
        if not self.path:
            raise FieldError("path", "a source needs a file, folder or dataset name")


@dataclass
class BucketConfig:
    easy_below: int = doc(
        10, "First correct answer at a rollout before this one: easy (paper: fewer than 10)."
    )
    difficult_above: int = doc(
        20,
        "First correct answer after this rollout, or none within filter.max_rollouts: "
        "difficult (paper: more than 20). Between the two: medium.",
    )

    def __post_init__(self) -> None:
        if not 1 < self.easy_below <= self.difficult_above:
            raise FieldError(
                ("easy_below", "difficult_above"),
                f"need 1 < easy_below <= difficult_above, got "
                f"{self.easy_below} and {self.difficult_above}",
            )

    def bucket(self, first_correct: int | None) -> str:
        """The bucket of a question from its rollouts-to-first-correct (None: never)."""
        if first_correct is not None and first_correct < self.easy_below:
            return "easy"
        if first_correct is not None and first_correct <= self.difficult_above:
            return "medium"
        return "difficult"


@dataclass
class FilterConfig:
    output_dir: str = doc(
        "runs/data",
        "Stage files (<stage>.jsonl), report.md, the histogram PNG, selection.json and the "
        "difficulty results (difficulty/results.jsonl + manifest.json; on several ranks each "
        "rank appends to difficulty/results.rank<r>.jsonl until rank 0 merges them).",
    )
    sources: dict[str, SourceConfig] = doc(
        {}, "Question sources by name; the name is the records' `source` and the quota key."
    )
    sample_seed: int = doc(0, "Seed of each source's question order (the sample is its prefix).")
    rollouts_per_round: int = doc(
        4,
        "Rollouts of every unfinished question per round; one round of all unfinished "
        "questions goes through the engine in batches of rollout.batch_size trajectories.",
        ge=1,
    )
    max_rollouts: int = doc(
        20,
        "Cap per question: none correct within it means unsolved (bucket difficult). A multiple "
        "of rollouts_per_round, at least buckets.difficult_above. Raising it later continues "
        "the unsolved questions; earlier results stay valid.",
        ge=1,
    )
    metric: Literal["cover_em", "em", "f1"] = doc(
        "cover_em", "Answer metric that decides a correct rollout (reward.metric_profile)."
    )
    correct_at: float = doc(
        1.0, "A rollout is correct when its metric (in [0, 1]) is at least this.", gt=0, le=1
    )
    buckets: BucketConfig = doc(BucketConfig(), "Bucket thresholds on rollouts-to-first-correct.")
    quotas: dict[str, dict[str, dict[str, int]]] = doc(
        {},
        "stage -> source -> bucket -> questions. Each stage samples its own questions (seeded), "
        "so two stages may share questions, as R1-Searcher's released files do.",
    )
    selection_seed: int = doc(0, "Seed of the per-stage sampling from each bucket.")
    progress: bool = doc(True, "Show a tqdm bar over the questions.")

    def __post_init__(self) -> None:
        if self.rollouts_per_round < 1:
            raise FieldError(
                "rollouts_per_round", f"must be at least 1, got {self.rollouts_per_round}"
            )
        if self.max_rollouts % self.rollouts_per_round:
            raise FieldError(
                ("max_rollouts", "rollouts_per_round"),
                f"max_rollouts {self.max_rollouts} is not a multiple of rollouts_per_round "
                f"{self.rollouts_per_round}",
            )
        if self.max_rollouts < self.buckets.difficult_above:
            raise FieldError(
                ("max_rollouts", "buckets.difficult_above"),
                f"max_rollouts {self.max_rollouts} is below buckets.difficult_above "
                f"{self.buckets.difficult_above}, so a question unsolved at the cap could "
                "still be medium",
            )
        self._check_quotas()

    def _check_quotas(self) -> None:
        for stage, by_source in self.quotas.items():
            if not stage or "/" in stage or stage.startswith("."):
                raise FieldError(f"quotas.{stage}", "a stage name becomes a file name")
            for source, by_bucket in by_source.items():
                if source not in self.sources:
                    known = ", ".join(sorted(self.sources)) or "none"
                    raise FieldError(
                        f"quotas.{stage}.{source}", f"unknown source; sources: {known}"
                    )
                for bucket, count in by_bucket.items():
                    where = f"quotas.{stage}.{source}.{bucket}"
                    if bucket not in BUCKETS:
                        raise FieldError(where, f"unknown bucket; buckets: {', '.join(BUCKETS)}")
                    if count < 0:
                        raise FieldError(where, f"negative quota {count}")


@dataclass
class FilterRunConfig(RunConfig):
    filter: FilterConfig = doc(FilterConfig(), "Difficulty filtering and per-stage selection.")
