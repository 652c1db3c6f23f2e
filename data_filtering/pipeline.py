"""One filtering run: sources -> question sample -> difficulty (resumable) -> buckets -> stage files.

    <output_dir>/difficulty/manifest.json   what the results depend on (data_filtering.identity)
    <output_dir>/difficulty/results.jsonl   one line per question and round (append-only)
    <output_dir>/difficulty/results.rank<r>.jsonl  rank r's lines while a run on several
                                            ranks is going (data_filtering.rank_results)
    <output_dir>/<stage>.jsonl              the selected questions of each stage (QARecords)
    <output_dir>/report.md, rollouts_to_first_correct.png, selection.json

Under a launcher (`deepspeed --num_gpus N --no_local_rank --module data_filtering`, or torchrun),
every rank loads the reference policy on its own device and rolls out its share of each round's
engine calls; rank 0 alone checks the manifest, merges the rank files, selects and writes the
stage files and the report. Every rank must reach the output folder (one node, or a shared
file system).

Rerunning with the same reference policy rolls out only questions not finished yet (none after
a complete run), so editing thresholds, quotas or the selection seed just reselects.
"""

from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from data_filtering.config import FilterRunConfig
from data_filtering.difficulty import (
    DifficultyResult,
    EstimationRun,
    EstimationSettings,
    Question,
    RoundRunner,
    estimate,
)
from data_filtering.identity import (
    identity_changes,
    read_filter_manifest,
    reference_identity,
    write_filter_manifest,
)
from data_filtering.rank_results import RankResults, merge_rank_files
from data_filtering.report import SourceSummary, summarize_source, write_report
from data_filtering.results import ResultsStore, question_check
from data_filtering.select import StageSelection, bucket_pools, select_stages, write_stage_files
from data_filtering.sources import SourceError, read_source
from recipe.launch_env import launcher_rank
from recipe.run_lock import folder_lock

DIFFICULTY_DIR = "difficulty"
RESULTS_FILE = "results.jsonl"
INVALIDATED_FILE = "results.invalidated.jsonl"
MANIFEST_FILE = "manifest.json"


@dataclass
class FilterOutcome:
    questions: list[Question]
    sources: list[SourceSummary]
    run: EstimationRun
    selections: list[StageSelection]
    changed_files: dict[str, bool]
    invalidated_by: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: Path | None = None

    @property
    def results(self) -> dict[str, DifficultyResult]:
        return self.run.results


def sample_questions(cfg: FilterRunConfig) -> tuple[list[Question], list[SourceSummary]]:
    """Each source's records in one seeded order; its sample is that order's prefix."""
    questions: list[Question] = []
    summaries = []
    for name, src in cfg.filter.sources.items():
        loaded = read_source(src.path, src.format, name, src.split, src.subset)
        records = list(loaded.records)
        random.Random(f"{cfg.filter.sample_seed}/{name}").shuffle(records)
        records = records[: src.questions] if src.questions is not None else records
        questions += [Question(f"{name}/{r.id}", r, question_check(r)) for r in records]
        summaries.append(summarize_source(loaded, len(records)))
    return questions, summaries


def check_reference(cfg: FilterRunConfig, folder: Path, tokenizer) -> list[str]:
    """Compare the reference policy with the manifest; move stale results aside. Returns the
    changes that invalidated earlier results (empty when they were kept or there were none)."""
    manifest_path = folder / MANIFEST_FILE
    previous = read_filter_manifest(manifest_path)
    known_files = previous.get("model_file_fingerprints", {})
    identity, fingerprints = reference_identity(cfg, tokenizer, known_files)
    results = folder / RESULTS_FILE
    changes: list[str] = []
    if previous and previous["identity"] != identity:
        changes = identity_changes(previous["identity"], identity)
    elif not previous and results.is_file():
        changes = ["manifest: missing or unreadable, so nothing vouches for the results"]
    if changes and results.is_file():
        shutil.move(results, folder / INVALIDATED_FILE)
    last = changes or previous.get("invalidated_by", [])
    folder.mkdir(parents=True, exist_ok=True)
    write_filter_manifest(manifest_path, identity, fingerprints, last)
    return changes


def run_filter(
    cfg: FilterRunConfig,
    runner: RoundRunner | None = None,
    *,
    tokenizer=None,
    after_call=None,
    ranks=None,
) -> FilterOutcome:
    """The whole run; `runner` defaults to the reference policy's rollouts (built lazily).
    The output folder is locked for its duration (`recipe.run_lock`): one filter writes it.
    `ranks` (recipe.training.ranks.Ranks) defaults to the launched ranks; the outcome of a rank
    other than 0 holds its results but no selections, files or report."""
    rank = launcher_rank()
    with folder_lock(cfg.filter.output_dir, rank, "filter"):
        return _run_filter(cfg, runner, tokenizer, after_call, ranks)


def _run_filter(cfg: FilterRunConfig, runner, tokenizer, after_call, ranks) -> FilterOutcome:
    started = time.perf_counter()
    fc = cfg.filter
    out = Path(fc.output_dir)
    folder = out / DIFFICULTY_DIR
    questions, sources = sample_questions(cfg)
    if not questions:
        raise SourceError("filter.sources: no usable questions (none configured, or all skipped)")
    if tokenizer is None:
        tokenizer = _load_tokenizer(cfg)
    if ranks is None:
        from recipe.training.ranks import current_ranks

        ranks = current_ranks()
    changes: list[str] = []
    if ranks.is_main:
        merge_rank_files(folder, RESULTS_FILE)  # what a killed run on several ranks left
        changes = check_reference(cfg, folder, tokenizer)
    if ranks.world > 1:
        changes = ranks.gather(changes)[0]  # and every rank waits for rank 0's checks
    if runner is None:
        from data_filtering.reference import ReferenceRounds

        runner = ReferenceRounds(cfg)
    settings = EstimationSettings(
        fc.rollouts_per_round,
        fc.max_rollouts,
        max(1, cfg.rollout.batch_size // fc.rollouts_per_round),
    )
    store = RankResults(folder, RESULTS_FILE, ranks.rank, ranks.world)
    run = estimate(
        questions,
        store,
        runner,
        settings,
        progress=fc.progress,
        after_call=after_call,
        ranks=ranks,
    )
    getattr(runner, "close", lambda: None)()
    if not ranks.is_main:
        return FilterOutcome(questions, sources, run, [], {}, changes)
    merge_rank_files(folder, RESULTS_FILE)
    pools = bucket_pools(run.results, list(fc.sources), fc.buckets)
    selections = select_stages(pools, fc.quotas, fc.selection_seed)
    by_key = {q.key: q for q in questions}
    changed = write_stage_files(out, selections, by_key, run.results, fc.buckets)
    outcome = FilterOutcome(questions, sources, run, selections, changed, changes)
    outcome.seconds = time.perf_counter() - started
    outcome.report = write_report(
        out, fc, sources, run.results, selections, run, _notes(outcome, store.merged)
    )
    return outcome


def _load_tokenizer(cfg: FilterRunConfig):
    from recipe.policy import load_tokenizer

    return load_tokenizer(cfg.model)


def _notes(outcome: FilterOutcome, store: ResultsStore) -> list[str]:
    notes = [f"wall time: {outcome.seconds:.0f} s"]
    if outcome.invalidated_by:
        notes.append(
            "earlier results invalidated (moved to difficulty/results.invalidated.jsonl) by: "
            + "; ".join(outcome.invalidated_by)
        )
    if outcome.run.stale_lines:
        notes.append(
            f"{outcome.run.stale_lines} stored rounds ignored: their question or answers changed"
        )
    unreadable = store.read().unreadable_lines
    if unreadable:
        notes.append(f"{unreadable} unreadable result lines skipped (a torn write)")
    for stage, changed in outcome.changed_files.items():
        notes.append(f"{stage}.jsonl {'written' if changed else 'unchanged'}")
    return notes
