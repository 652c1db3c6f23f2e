"""Difficulty bookkeeping with a scripted runner: rounds, rollouts-to-first-correct, passes, the
append-only results file, resume after a kill (and after a torn last line), a raised cap."""

from __future__ import annotations

import json

import pytest

from data_filtering.difficulty import EstimationSettings, Question, estimate
from data_filtering.records import QARecord
from data_filtering.results import ResultsStore, SampleOutcome, question_check

# Per question, the correctness of its rollouts in order (a question never right: all zeros).
PLANS = {
    "a": [1, 0, 1, 1, 0, 0],  # first correct at rollout 1
    "b": [0, 0, 0, 1, 1, 0],  # rollout 4 (round 2 of 2-rollout rounds)
    "c": [0, 0, 0, 0, 0, 0],  # never
    "d": [0, 1, 0, 0, 0, 0],  # rollout 2
    "e": [0, 0, 0, 0, 0, 1],  # rollout 6, the last one the cap allows
}
SETTINGS = EstimationSettings(rollouts_per_round=2, max_rollouts=6, questions_per_call=2)


def questions(answers: dict[str, str] | None = None) -> list[Question]:
    answers = answers or {}
    out = []
    for key in PLANS:
        record = QARecord(key, f"question {key}?", [answers.get(key, "gold")], "src")
        out.append(Question(f"src/{key}", record, question_check(record)))
    return out


class PlannedRunner:
    """Returns each question's planned outcomes for the round; records every call."""

    def __init__(self, settings: EstimationSettings = SETTINGS):
        self.k = settings.rollouts_per_round
        self.calls: list[tuple[int, int, list[str]]] = []

    def __call__(self, records, round_index, call_index):
        self.calls.append((round_index, call_index, [r.id for r in records]))
        start = round_index * self.k
        return [
            [
                SampleOutcome(bool(c), False, "gold" if c else "no")
                for c in PLANS[r.id][start:][: self.k]
            ]
            for r in records
        ]


class Killed(Exception):
    pass


def test_rollouts_to_first_correct_and_passes_are_recorded(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    runner = PlannedRunner()
    run = estimate(questions(), store, runner, SETTINGS, progress=False)
    got = {k.split("/")[1]: (r.first_correct, r.rollouts, r.passes) for k, r in run.results.items()}
    assert got == {
        "a": (1, 2, 1),
        "b": (4, 4, 1),
        "c": (None, 6, 0),
        "d": (2, 2, 1),
        "e": (6, 6, 1),
    }
    assert all(r.finished for r in run.results.values())
    # Rounds batch the unfinished questions, 2 per call; finished ones leave at once, so the
    # never-solved question never holds up the rest.
    assert runner.calls == [
        (0, 0, ["a", "b"]),
        (0, 1, ["c", "d"]),
        (0, 2, ["e"]),
        (1, 0, ["b", "c"]),
        (1, 1, ["e"]),
        (2, 0, ["c", "e"]),
    ]
    assert run.rollouts_now == 2 * 10 and run.engine_calls == 6
    lines = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert len(lines) == 10
    assert lines[0] == {
        "key": "src/a",
        "check": questions()[0].check,
        "round": 0,
        "correct": [1, 0],
        "searched": [0, 0],
        "predictions": ["gold", "no"],
    }


def test_a_killed_run_resumes_without_redoing_finished_questions(tmp_path):
    reference = estimate(
        questions(), ResultsStore(tmp_path / "ref.jsonl"), PlannedRunner(), SETTINGS, progress=False
    )
    store = ResultsStore(tmp_path / "results.jsonl")

    def kill_after_round_1_call_0(round_index, call_index):
        if (round_index, call_index) == (1, 0):
            raise Killed

    with pytest.raises(Killed):
        estimate(
            questions(), store, PlannedRunner(), SETTINGS, progress=False,
            after_call=kill_after_round_1_call_0,
        )  # fmt: skip
    # A kill in the middle of the next write leaves half a line behind.
    with open(store.path, "a") as f:
        f.write('{"key": "src/e", "check": "x", "rou')
    assert store.read().unreadable_lines == 1
    runner = PlannedRunner()
    resumed = estimate(questions(), store, runner, SETTINGS, progress=False)
    assert runner.calls == [(1, 1, ["e"]), (2, 0, ["c", "e"])]  # only what was left
    assert resumed.reused_questions == 3  # a, b, d were finished before the kill
    assert resumed.results == reference.results
    assert store.read().unreadable_lines == 0  # the torn tail was cut before appending
    again = PlannedRunner()
    assert estimate(questions(), store, again, SETTINGS, progress=False).rollouts_now == 0
    assert again.calls == []


def test_raising_the_cap_continues_only_the_unsolved(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    low = EstimationSettings(rollouts_per_round=2, max_rollouts=4, questions_per_call=2)
    first = estimate(questions(), store, PlannedRunner(low), low, progress=False)
    assert first.results["src/e"].first_correct is None and first.results["src/e"].finished
    runner = PlannedRunner()
    raised = estimate(questions(), store, runner, SETTINGS, progress=False)
    assert runner.calls == [(2, 0, ["c", "e"])]
    assert raised.results["src/e"].first_correct == 6
    # Lowering it again needs no rollout: the later rounds are just not counted.
    lowered = estimate(questions(), store, PlannedRunner(low), low, progress=False)
    assert lowered.rollouts_now == 0 and lowered.results == first.results


def test_a_changed_question_is_rolled_out_again(tmp_path):
    store = ResultsStore(tmp_path / "results.jsonl")
    estimate(questions(), store, PlannedRunner(), SETTINGS, progress=False)
    runner = PlannedRunner()
    run = estimate(questions({"d": "another gold"}), store, runner, SETTINGS, progress=False)
    assert runner.calls == [(0, 1, ["d"])]  # alone, with the seed of the call it was in
    assert run.stale_lines == 1 and run.reused_questions == 4
