"""`stages.evaluate` on two CPU ranks under the DeepSpeed launcher: the questions are shared
over the ranks, the rows are the one-rank run's, rank 0 alone writes and prints, and a damaged
file is redone on a rerun while the others are reused."""

from __future__ import annotations

import json

import pytest

from stages.evaluate import main
from tests.rank_launcher import launch_two_ranks
from tests.stages.test_evaluate import world  # noqa: F401  (the tiny evaluation world)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.slow]

CONFIG = ["--config", "configs/embedded/eval.yaml"]


def _predictions(out) -> dict[str, list[dict]]:
    return {
        p.name: [json.loads(line) for line in open(p)]
        for p in sorted((out / "predictions").glob("*.jsonl"))
    }


def test_two_ranks_share_the_questions_and_write_the_one_rank_rows(world, tmp_path):  # noqa: F811
    assert main([*CONFIG, *world["overrides"]]) == 0
    one = _predictions(world["out"])
    out = tmp_path / "two"
    args = ["--module", "stages.evaluate", *CONFIG, *world["overrides"], f"eval.out_dir={out}"]
    done = launch_two_ranks(*args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr.count("evaluate: tiny__demo (3 questions on 2 ranks)") == 1
    assert done.stdout.count("| tiny | demo | 3 |") == 1  # rank 0 prints the table, once
    two = _predictions(out)
    assert set(two) == set(one)
    for name, rows in two.items():
        keys = ("id", "prediction", "response", "f1")
        assert [[r[k] for k in keys] for r in rows] == [[r[k] for k in keys] for r in one[name]]

    rag = out / "predictions" / "rag__demo.jsonl"
    rag.write_text(rag.read_text()[:-30])  # a torn last line
    again = launch_two_ranks(*args)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stderr.count("evaluate: redoing rag__demo: line 3 is not JSON") == 1
    assert _predictions(out) == two
    report = (out / "report.md").read_text()
    assert "reused from an earlier run with the same settings: naive__demo, tiny__demo" in report
