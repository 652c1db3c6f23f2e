"""`python -m data_filtering`: the shipped configs, one-line exits for bad input, the summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from data_filtering.__main__ import main
from data_filtering.config import BucketConfig, FilterRunConfig
from recipe.config import load_config, save_config
from tests.data_filtering.filter_world import filter_config, write_question_files

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_filter_configs_load():
    embedded = load_config(FilterRunConfig, REPO / "configs/embedded/filter.yaml")
    assert embedded.model.path == "runs/miniwiki/base"  # the stages' reference policy
    assert embedded.filter.max_rollouts >= embedded.filter.buckets.difficult_above
    paper = load_config(FilterRunConfig, REPO / "configs/paper/filter.yaml").filter
    assert (paper.buckets.easy_below, paper.buckets.difficult_above) == (10, 20)
    assert paper.quotas == {
        "stage1": {"hotpotqa": {"medium": 200}, "2wiki": {"medium": 150}},
        "stage2": {
            "hotpotqa": {"medium": 2561, "difficult": 2000},
            "2wiki": {"medium": 1087, "difficult": 2500},
        },
    }
    # The stages read what the filter writes.
    for stage in ("stage1", "stage2"):
        from recipe.schema import RunConfig

        run = load_config(RunConfig, REPO / f"configs/embedded/{stage}.yaml")
        assert run.data.train_files == [f"{embedded.filter.output_dir}/{stage}.jsonl"]
        run = load_config(RunConfig, REPO / f"configs/paper/{stage}.yaml")
        assert run.data.train_files == [f"{paper.output_dir}/{stage}.jsonl"]


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "filter.quotas.stage1.hotpot.medium=3",
            "quotas.stage1.hotpot (from command line): unknown source",
        ),
        (
            "filter.quotas.stage1.hotpotqa.hard=3",
            "quotas.stage1.hotpotqa.hard (from command line): unknown bucket",
        ),
        (
            "filter.buckets.difficult_above=9",
            "filter.buckets.difficult_above (from command line): max_rollouts 4 is below",
        ),
        ("filter.rollouts_per_round=3", "not a multiple"),
        ("filter.rollouts_per_round=4", None),
        (
            "filter.sources.x.questions=2",
            "sources.x.path (from command line): a source needs a file",
        ),
        ("filter.metrc=em", "filter.metrc (from command line): unknown key"),
    ],
)
def test_bad_configs_exit_2_with_one_line(tmp_path, capsys, override, message):
    # Never the real output folder, whatever happens.
    args = ["--config", str(REPO / "configs/embedded/filter.yaml"), f"filter.output_dir={tmp_path}"]
    args.append(override)
    if message is None:  # 4 rollouts per round, cap 4: valid; stop before any file is read
        args.append("filter.sources.hotpotqa.path=/nonexistent.json")
        message = "question file not found: /nonexistent.json"
    try:
        code = main(args)
    except SystemExit as e:  # config errors exit from parse_cli
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_missing_inputs_exit_2_with_one_line(tmp_path, capsys, tiny_model_dir, demo_index):
    files = write_question_files(tmp_path)
    cfg = filter_config(tmp_path / "out", tiny_model_dir, demo_index, files)
    missing_model = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path="nope/x/y"))
    missing_index = dataclasses.replace(
        cfg, retriever=dataclasses.replace(cfg.retriever, index_dir=str(tmp_path / "no_index"))
    )
    for bad, message in [(missing_model, "model.path nope/x/y"), (missing_index, "no index at")]:
        path = save_config(bad, tmp_path, "bad.yaml")
        assert main(["--config", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1


@pytest.mark.usefixtures("smollm2_gguf_file")
def test_a_run_prints_its_summary_line(tmp_path, capsys, tiny_model_dir, demo_index):
    """The real engine, unsteered: the random tiny model never answers, so all are difficult."""
    files = write_question_files(tmp_path)
    cfg = filter_config(
        tmp_path / "out", tiny_model_dir, demo_index, files,
        rollouts_per_round=2, max_rollouts=2, buckets=BucketConfig(2, 2),
    )  # fmt: skip
    path = save_config(cfg, tmp_path, "filter.yaml")
    assert main(["--config", str(path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("filter: 7 questions from 2 sources (2 rows skipped), 0 already")
    assert "14 rollouts now" in out and "stages: stage1 0, stage2 3" in out
    assert "short: stage1 hotpotqa medium 0/1" in out
    assert main(["--config", str(path)]) == 0  # again: everything is known
    assert "7 already estimated, 0 rollouts now" in capsys.readouterr().out
