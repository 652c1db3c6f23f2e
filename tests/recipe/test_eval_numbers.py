"""The numbers users read, against cases worked by hand: paired differences and their
bootstrap intervals, the per-kind summary and table, and the held-to verdicts of the report."""

from __future__ import annotations

import typing

import pytest

from recipe.evaluation.report import checks_table, goal_checks, kind_table
from recipe.evaluation.scoring import (
    SUMMARY_METRICS,
    paired_difference,
    summarize,
    summarize_by_kind,
)
from recipe.schema import EvalConfig


def _rows(values: dict[str, float], key: str = "f1", kinds: dict[str, str] | None = None):
    return [{"id": i, key: v, "kind": (kinds or {}).get(i, "?")} for i, v in values.items()]


def test_paired_difference_of_two_questions_by_hand():
    """Differences 1 and 0: a resample's mean is 0, 1/2 or 1 with chances 1/4, 1/2, 1/4, so
    2.5 % and 97.5 % of the bootstrap means fall on 0 and 1 (each holds a quarter)."""
    ours = _rows({"a": 1.0, "b": 0.5})
    theirs = _rows({"b": 0.5, "a": 0.0, "c": 1.0})  # order free; c is not ours: not paired
    out = paired_difference(ours, theirs, "f1")
    assert out == {"questions": 2, "difference": 0.5, "ci95_low": 0.0, "ci95_high": 1.0}


def test_paired_difference_of_equal_differences_has_no_width():
    ours = _rows({q: 0.75 for q in "abcdef"})
    theirs = _rows({q: 0.5 for q in "abcdef"})
    assert paired_difference(ours, theirs, "f1") == {
        "questions": 6,
        "difference": 0.25,
        "ci95_low": 0.25,
        "ci95_high": 0.25,
    }


def test_paired_interval_follows_the_bootstrap_seed_and_size():
    """Twenty questions, differences 0 .. 0.95: the mean is 0.475; the interval is inside the
    range of the differences, holds the mean, and is the same for the same seed and size."""
    ours = _rows({f"q{i}": i / 20 for i in range(20)})
    theirs = _rows({f"q{i}": 0.0 for i in range(20)})
    defaults = EvalConfig()
    first = paired_difference(
        ours, theirs, "f1", defaults.bootstrap_seed, defaults.bootstrap_samples
    )
    assert first == paired_difference(ours, theirs, "f1")  # the fields' defaults are today's
    assert first["difference"] == 0.475
    assert 0.0 < first["ci95_low"] < 0.475 < first["ci95_high"] < 0.95
    # The interval of a mean of 20 draws from 0 .. 0.95 (sd 0.288): about +-1.96 x 0.288 / sqrt(20).
    assert first["ci95_high"] - first["ci95_low"] == pytest.approx(
        2 * 1.96 * 0.2883 / 20**0.5, rel=0.1
    )
    assert paired_difference(ours, theirs, "f1", 7, 500) == paired_difference(
        ours, theirs, "f1", 7, 500
    )
    assert paired_difference(ours, theirs, "f1", 7, 500) != first


def test_summary_by_kind_and_its_table():
    kinds = {"a": "hotpotqa/bridge", "b": "hotpotqa/bridge", "c": "2wiki/comparison"}
    agent = _rows({"a": 1.0, "b": 0.5, "c": 0.0}, kinds=kinds)
    rag = _rows({"a": 0.0, "b": 0.25, "c": 1.0}, kinds=kinds)
    by_kind = summarize_by_kind(agent)
    assert by_kind == {
        "2wiki/comparison": {"questions": 1, "f1": 0.0},
        "hotpotqa/bridge": {"questions": 2, "f1": 0.75},
    }
    assert summarize(agent) == {"questions": 3, "f1": 0.5}
    assert kind_table({"agent": agent, "rag": rag}, "f1").splitlines() == [
        "| kind | agent | rag |",
        "|---|---|---|",
        "| 2wiki/comparison | 0.000 | 1.000 |",
        "| hotpotqa/bridge | 0.750 | 0.125 |",
    ]


def test_goal_verdicts_met_and_short_by_hand():
    key = "f1@r1searcher"
    rows = {
        "stage2": {"test": _rows({"a": 1.0, "b": 0.5, "c": 0.0}, key)},
        "rag": {"test": _rows({"a": 0.5, "b": 0.5, "c": 0.0}, key)},  # stage2 +1/6
        "naive": {"test": _rows({"a": 0.0, "b": 0.0, "c": 0.0}, key)},  # stage2 +1/2
    }
    checks = goal_checks(rows, "stage2", {"rag": 0.1, "naive": 0.6, "absent": 0.1})
    assert [(c["baseline"], c["difference"], c["met"]) for c in checks] == [
        ("rag", 0.1667, True),
        ("naive", 0.5, False),
    ]
    table = checks_table(checks).splitlines()
    assert table[2].endswith("| +0.167 | [+0.000, +0.500] | +0.10 | yes |")
    assert table[3].endswith("| +0.500 | [+0.000, +1.000] | +0.60 | no (short by 0.100) |")


def test_paired_metrics_choices_are_the_summary_metrics():
    (choices,) = typing.get_args(typing.get_type_hints(EvalConfig)["paired_metrics"])
    assert set(typing.get_args(choices)) == set(SUMMARY_METRICS)
