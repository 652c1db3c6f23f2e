"""The filter on several ranks: engine calls dealt round-robin, one results file per rank merged
into one, and a run killed on one rank resumes (on two ranks or on one) to the results of a run
on one rank that was never killed."""

from __future__ import annotations

import json
import pickle

import pytest

from data_filtering.pipeline import DIFFICULTY_DIR, MANIFEST_FILE, RESULTS_FILE, run_filter
from data_filtering.rank_results import merge_rank_files, rank_file, rank_files
from recipe.training.ranks import Ranks
from tests.data_filtering.filter_world import (
    CountingRunner,
    filter_config,
    steered_rounds,
    write_question_files,
)
from tests.rank_launcher import REPO, launch_two_ranks

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file")


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory, tiny_model_dir, demo_index, smollm2_tokenizer):
    """A complete run on one rank: the results every sharded run must reach."""
    root = tmp_path_factory.mktemp("one_rank")
    cfg = filter_config(root / "out", tiny_model_dir, demo_index, write_question_files(root))
    runner = CountingRunner(steered_rounds(cfg, smollm2_tokenizer))
    return run_filter(cfg, runner, tokenizer=smollm2_tokenizer), runner


def _lines(path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_calls_are_dealt_round_robin():
    assert [g for g in range(7) if Ranks(1, 3).owns(g)] == [1, 4]
    assert all(Ranks().owns(g) for g in range(4))


def test_merging_keeps_every_complete_line_in_rank_order_and_drops_torn_tails(tmp_path):
    (tmp_path / RESULTS_FILE).write_text('{"a": 0}\n')
    rank_file(tmp_path, 10).write_text('{"c": 10}\n')
    rank_file(tmp_path, 2).write_text('{"b": 2}\n{"torn')
    assert [p.name for p in rank_files(tmp_path)] == ["results.rank2.jsonl", "results.rank10.jsonl"]
    assert merge_rank_files(tmp_path, RESULTS_FILE) == 2
    assert _lines(tmp_path / RESULTS_FILE) == ['{"a": 0}\n', '{"b": 2}\n', '{"c": 10}\n']
    assert rank_files(tmp_path) == [] and merge_rank_files(tmp_path, RESULTS_FILE) == 0


@pytest.mark.slow  # a whole one-rank filter run first
def test_the_rank_files_of_a_killed_run_resume_on_one_rank(
    tmp_path, one_rank, tiny_model_dir, demo_index, smollm2_tokenizer
):
    """A run on two ranks killed in round 1 left each rank's lines (one torn): one rank
    redoes only the calls whose lines are missing and reaches the same results."""
    finished, _ = one_rank
    cfg = filter_config(
        tmp_path / "out", tiny_model_dir, demo_index, write_question_files(tmp_path)
    )
    folder = tmp_path / "out" / DIFFICULTY_DIR
    folder.mkdir(parents=True)
    done = finished.report.parent / DIFFICULTY_DIR
    (folder / MANIFEST_FILE).write_text((done / MANIFEST_FILE).read_text())
    lines = _lines(done / RESULTS_FILE)
    kept = [line for line in lines if json.loads(line)["round"] == 0]
    rank_file(folder, 0).write_text("".join(kept[0::2]) + '{"key": "hotpotqa/h')
    rank_file(folder, 1).write_text("".join(kept[1::2]))
    runner = CountingRunner(steered_rounds(cfg, smollm2_tokenizer))
    resumed = run_filter(cfg, runner, tokenizer=smollm2_tokenizer)
    assert {r for r, _, _ in runner.calls} == {1, 2}  # round 0 came from the rank files
    assert resumed.results == finished.results
    assert rank_files(folder) == []
    assert "unreadable" not in resumed.report.read_text()  # the torn tail was cut in the merge


def _launch(cfg, out, *kill):
    config_file = out / "config.pkl"
    with open(config_file, "wb") as f:
        pickle.dump(cfg, f)
    return launch_two_ranks(
        REPO / "tests/data_filtering/two_ranks.py", str(config_file), str(out), *kill
    )


@pytest.mark.slow
def test_two_ranks_killed_and_resumed_reach_the_one_rank_results(
    tmp_path, one_rank, tiny_model_dir, demo_index
):
    finished, single = one_rank
    cfg = filter_config(
        tmp_path / "out", tiny_model_dir, demo_index, write_question_files(tmp_path)
    )
    folder = tmp_path / "out" / DIFFICULTY_DIR
    killed = _launch(cfg, tmp_path, "0")  # rank 1 dies after call 1 of round 0
    assert killed.returncode != 0, killed.stdout[-3000:] + killed.stderr[-3000:]
    died_after = {
        (row["key"], row["round"]) for row in map(json.loads, _lines(rank_file(folder, 1)))
    }
    assert died_after == {("2wiki/w0", 0), ("2wiki/w1", 0), ("2wiki/w2", 0)}  # call 1, its own
    done = _launch(cfg, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    calls = [json.loads((tmp_path / f"rank{r}.calls.json").read_text()) for r in (0, 1)]
    assert all(c["results"] == len(finished.results) for c in calls)
    for rank, made in enumerate(calls):
        assert all(g % 2 == rank for _, g, _ in made["calls"])
    assert (0, 1) not in {(r, g) for r, g, _ in calls[0]["calls"] + calls[1]["calls"]}
    assert rank_files(folder) == []
    merged = {}
    for line in _lines(folder / RESULTS_FILE):
        row = json.loads(line)
        merged[(row["key"], row["round"])] = row["correct"]
    one = {}
    for line in _lines(finished.report.parent / DIFFICULTY_DIR / RESULTS_FILE):
        row = json.loads(line)
        one[(row["key"], row["round"])] = row["correct"]
    assert merged == one  # every rollout as the one-rank run drew it
    for stage in ("stage1", "stage2"):
        ours = (tmp_path / "out" / f"{stage}.jsonl").read_text()
        assert ours == (finished.report.parent / f"{stage}.jsonl").read_text()
    assert len(single.calls) >= len(calls[0]["calls"]) + len(calls[1]["calls"])


@pytest.mark.slow
def test_the_command_on_two_ranks_rolls_out_what_one_rank_does(
    tmp_path, tiny_model_dir, demo_index, capsys
):
    """`deepspeed ... --module data_filtering`: the same round lines as the one-rank command
    (the unsteered tiny model answers nothing, so every question runs to the cap), and rank 0
    alone prints the summary."""
    from data_filtering.__main__ import main
    from recipe.config import save_config

    files = write_question_files(tmp_path)
    runs = {}
    for ranks in (1, 2):
        cfg = filter_config(tmp_path / f"out{ranks}", tiny_model_dir, demo_index, files)
        config = save_config(cfg, tmp_path, f"filter{ranks}.yaml")
        if ranks == 1:
            assert main(["--config", str(config)]) == 0
        else:
            args = ["--module", "data_filtering", "--config", str(config)]
            done = launch_two_ranks(*args)
            assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
            assert done.stdout.count("filter: 7 questions from 2 sources") == 1
        folder = tmp_path / f"out{ranks}" / DIFFICULTY_DIR
        assert rank_files(folder) == []
        rows = [json.loads(line) for line in _lines(folder / RESULTS_FILE)]
        runs[ranks] = {(r["key"], r["round"]): (r["correct"], r["predictions"]) for r in rows}
    assert runs[2] == runs[1]
