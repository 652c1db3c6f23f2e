"""Difficulty by rollouts: how many rollouts the reference policy needs to first answer correctly.

R1-Searcher's rule (its README; the release has no code): a reference model rolls out on each
question until its first correct answer; fewer than 10 rollouts is easy, 10-20 medium, more
than 20 difficult. Here the rollouts go in rounds: each round gives every unfinished question
`filter.rollouts_per_round` rollouts, and the round's questions go through the project's rollout
engine together, `rollout.batch_size // rollouts_per_round` questions per engine call, so a
question that needs many rollouts stays for later rounds while the others finish; nobody waits
for it. A question is finished at its first correct rollout or at the cap
(`filter.max_rollouts`). Rollouts-to-first-correct counts rollouts in order (round by round, in
sample order within a round); `passes` counts the correct rollouts among all that were run.

Every engine call is seeded from (rollout.seed, round, call index within the round), and the
questions of a round and their split into calls follow from the results of earlier rounds. So a
run killed between two calls and rerun does only the calls that were left, and reaches the same
results as a run never killed; no question is rolled out twice in a round (its line is in the
results file, `data_filtering.results`), and a finished one never again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tqdm import tqdm

from data_filtering.records import QARecord
from data_filtering.results import ResultsStore, SampleOutcome, StoredRounds, round_line

if TYPE_CHECKING:  # the ranks module brings torch; a one-rank run needs none of it here
    from recipe.training.ranks import Ranks

# Engine seed of call g of round r: the sampler counter is set to r * stride + g.
ROUND_SEED_STRIDE = 1 << 20

# (records, round index, call index) -> per record, its rollouts' outcomes in sample order.
RoundRunner = Callable[[Sequence[QARecord], int, int], list[list[SampleOutcome]]]


@dataclass(frozen=True)
class Question:
    key: str  # "<source>/<record id>": unique across sources
    record: QARecord
    check: str  # data_filtering.results.question_check(record)


@dataclass
class DifficultyResult:
    key: str
    source: str
    rollouts: int  # rollouts run (whole rounds), at most the cap
    passes: int  # correct rollouts among them
    first_correct: int | None  # 1-based rollout of the first correct answer; None: unsolved
    finished: bool


@dataclass
class EstimationSettings:
    rollouts_per_round: int
    max_rollouts: int
    questions_per_call: int

    @property
    def max_rounds(self) -> int:
        return math.ceil(self.max_rollouts / self.rollouts_per_round)


def summarize_rounds(
    key: str, source: str, rounds: dict[int, list[SampleOutcome]], settings: EstimationSettings
) -> DifficultyResult:
    """The result of the contiguous rounds 0, 1, ... up to the first correct one or the cap."""
    rollouts = passes = 0
    first: int | None = None
    for r in range(settings.max_rounds):
        outcomes = rounds.get(r)
        if outcomes is None:
            break
        for i, outcome in enumerate(outcomes):
            if outcome.correct and first is None:
                first = rollouts + i + 1
        rollouts += len(outcomes)
        passes += sum(o.correct for o in outcomes)
        if first is not None:
            break
    finished = first is not None or rollouts >= settings.max_rollouts
    return DifficultyResult(key, source, rollouts, passes, first, finished)


def _finished_before(rounds: dict[int, list[SampleOutcome]], r: int, s: EstimationSettings):
    """Whether the question is done before round r (solved in an earlier round, or capped)."""
    if r >= s.max_rounds:
        return True
    return any(o.correct for i in range(r) for o in rounds.get(i, ()))


def _valid_rounds(questions: Sequence[Question], stored: StoredRounds) -> dict:
    """Each question's stored rounds, kept only when written for the same question text."""
    return {
        q.key: dict(stored.rounds.get(q.key, {})) if stored.checks.get(q.key) == q.check else {}
        for q in questions
    }


@dataclass
class EstimationRun:
    results: dict[str, DifficultyResult]
    rollouts_now: int  # rollouts this run performed
    engine_calls: int
    reused_questions: int  # finished before this run started
    stale_lines: int  # stored rounds of questions whose text or answers changed


def estimate(
    questions: Sequence[Question],
    store: ResultsStore,
    run_round: RoundRunner,
    settings: EstimationSettings,
    *,
    progress: bool = True,
    after_call: Callable[[int, int], None] | None = None,
    ranks: Ranks | None = None,
) -> EstimationRun:
    """Roll out every unfinished question in rounds until all are finished; append as we go.

    On several ranks, call g of a round is rank g mod N's; the ranks exchange their outcomes
    at the end of each round, so every rank starts the next round from the same results and
    draws the same roster and calls a single rank would."""
    several = ranks is not None and ranks.world > 1
    stored = store.read()
    rounds = _valid_rounds(questions, stored)
    stale = sum(
        len(stored.rounds.get(q.key, {}))
        for q in questions
        if q.key in stored.checks and stored.checks[q.key] != q.check
    )
    sources = {q.key: q.record.source for q in questions}

    def result(key: str) -> DifficultyResult:
        return summarize_rounds(key, sources[key], rounds[key], settings)

    reused = sum(result(q.key).finished for q in questions)
    rollouts_now = calls = 0
    with tqdm(
        total=len(questions),
        initial=reused,
        desc="filter",
        unit="question",
        disable=not progress or (several and not ranks.is_main),
    ) as bar:

        def record(r: int, outcomes: list[tuple[str, list[SampleOutcome]]]) -> None:
            for key, o in outcomes:
                was_done = result(key).finished
                rounds[key][r] = o
                bar.update(int(result(key).finished and not was_done))

        for r in range(settings.max_rounds):
            roster = [q for q in questions if not _finished_before(rounds[q.key], r, settings)]
            size = settings.questions_per_call
            mine: list[tuple[str, list[SampleOutcome]]] = []
            for g, start in enumerate(range(0, len(roster), size)):
                # A question whose line for this round is stored is never rolled out again;
                # the rest of its call keeps the call's seed (after a kill between calls, that
                # is the whole call, exactly as the run never killed would have drawn it).
                members = [q for q in roster[start : start + size] if r not in rounds[q.key]]
                if not members or (several and not ranks.owns(g)):
                    continue
                outcomes = run_round([q.record for q in members], r, g)
                store.append(
                    round_line(q.key, q.check, r, o) for q, o in zip(members, outcomes, strict=True)
                )
                done = [(q.key, o) for q, o in zip(members, outcomes, strict=True)]
                record(r, done)
                mine += done
                rollouts_now += sum(len(o) for o in outcomes)
                calls += 1
                bar.set_postfix(round=r + 1, rollouts=rollouts_now)
                if after_call is not None:
                    after_call(r, g)
            if several:
                for rank, theirs in enumerate(ranks.gather(mine)):
                    if rank != ranks.rank:
                        record(r, theirs)
    if several:
        counts = ranks.sum_floats({"rollouts": rollouts_now, "calls": calls})
        rollouts_now, calls = int(counts["rollouts"]), int(counts["calls"])
    results = {q.key: result(q.key) for q in questions}
    return EstimationRun(results, rollouts_now, calls, reused, stale)
