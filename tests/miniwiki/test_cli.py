"""`python -m miniwiki build`: writes the layout, skips when unchanged, rejects bad keys."""

from __future__ import annotations

import json

import pytest

from miniwiki.__main__ import main
from miniwiki.build import question_file
from miniwiki.presets import SHIPPED_YAML, tiny_overrides
from miniwiki.questions import SPLITS

YAML = str(SHIPPED_YAML)


def test_build_writes_layout_and_skips_when_unchanged(tmp_path, capsys):
    out = tmp_path / "mw"
    args = ["build", "--config", YAML, *tiny_overrides(out)]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["skipped"] is False
    for world in ("task", "warmup"):
        assert (out / world / "corpus.jsonl").stat().st_size > 0
        for dataset in ("hotpotqa", "2wiki"):
            for split in SPLITS:
                assert question_file(out / world, dataset, split).exists()
    assert first["worlds"]["task"]["questions_per_split"] == {"train": 72, "dev": 24, "test": 24}
    assert (out / "miniwiki_config.yaml").exists()

    corpus_mtime = (out / "task" / "corpus.jsonl").stat().st_mtime_ns
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] is True
    assert (out / "task" / "corpus.jsonl").stat().st_mtime_ns == corpus_mtime

    # A changed world setting rebuilds; so does a missing output file.
    assert main([*args, "task.seed=123"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] is False
    (out / "warmup" / "2wiki_dev.json").unlink()
    assert main([*args, "task.seed=123"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] is False


def test_unknown_key_is_an_error_naming_it(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["build", "--config", YAML, "task.nope=1"])
    assert exit_info.value.code == 2
    assert "task.nope" in capsys.readouterr().err


def test_usage_without_command(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err


def test_help_exits_0_and_names_the_command(capsys):
    assert main(["--help"]) == 0
    assert "python -m miniwiki build" in capsys.readouterr().out


def test_a_world_too_small_for_the_counts_reports_the_shortfall(tmp_path, capsys):
    overrides = [
        *tiny_overrides(tmp_path / "mw"),
        "task.questions.twowiki.inference.train=3000",
        "task.questions.attempts_per_question=4",
    ]
    assert main(["build", "--config", YAML, *overrides]) == 0
    captured = capsys.readouterr()
    shortfall = json.loads(captured.out)["worlds"]["task"]["shortfall"]
    assert list(shortfall) == ["2wiki/inference/train"]
    assert 0 < shortfall["2wiki/inference/train"] < 3000
    assert "too small" in captured.err


def test_impossible_worlds_are_clear_errors(tmp_path, capsys):
    overrides = [*tiny_overrides(tmp_path / "mw"), "task.entities.persons=2"]
    assert main(["build", "--config", YAML, *overrides]) == 2
    assert "raise entities.persons" in capsys.readouterr().err
    overrides = [*tiny_overrides(tmp_path / "mw"), "task.entities.cities=2"]
    assert main(["build", "--config", YAML, *overrides]) == 2
    assert "at least one city per country" in capsys.readouterr().err
