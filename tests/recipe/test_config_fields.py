"""`--help` shows what a run will take: each key's value as its config file, the files that file
extends and the command line resolve it, and where the value came from."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from recipe.config import doc, parse_cli
from recipe.config_fields import describe, help_text

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Inner:
    steps: int = doc(100, "an int", ge=1)
    rate: float = doc(0.5, "a float")


@dataclass
class Outer:
    inner: Inner = doc(Inner(), "a section")
    parts: dict[str, Inner] = doc({}, "named sections")


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _line(text: str, key: str) -> str:
    (line,) = [line for line in text.splitlines() if line.startswith(f"{key} (")]
    return line


def test_help_shows_resolved_values_and_their_sources(tmp_path):
    _write(tmp_path / "base.yaml", {"inner": {"steps": 4, "rate": 0.25}})
    child = _write(tmp_path / "child.yaml", {"extends": "base.yaml", "inner": {"rate": 0.75}})
    text = help_text(Outer, ["--config", str(child), "parts.a.steps=9", "--help"], None, "usage")
    assert "base.yaml, default 100, >= 1): an int" in _line(text, "inner.steps")
    assert _line(text, "inner.steps").startswith("inner.steps (int, 4 from ")
    assert "0.75 from " in _line(text, "inner.rate") and "child.yaml" in _line(text, "inner.rate")
    assert _line(text, "parts.a.steps") == (
        "parts.a.steps (int, 9 from command line, default 100, >= 1): an int"
    )
    # a key nothing set reads as it does without a config
    assert _line(text, "parts.a.rate") == "parts.a.rate (float, default 0.5): a float"
    assert "Values resolved from" in text and "and the command line" in text


def test_without_a_config_the_help_lists_the_defaults():
    assert _line(help_text(Outer, ["--help"], None, "usage"), "inner.steps") == (
        "inner.steps (int, default 100, >= 1): an int"
    )
    assert describe(Outer) == help_text(Outer, [], None, "usage").splitlines()[2:]


def test_a_config_that_does_not_load_still_gets_the_reference(tmp_path, capsys):
    bad = _write(tmp_path / "bad.yaml", {"inner": {"stepz": 1}})
    with pytest.raises(SystemExit) as e:
        parse_cli(Outer, ["--help"], default=str(bad))
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "config error: inner.stepz" in out and "unknown key" in out
    assert _line(out, "inner.steps") == "inner.steps (int, default 100, >= 1): an int"


def test_a_stage_help_shows_its_yaml_values_not_the_dataclass_defaults():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.run(
        [sys.executable, "-m", "stages.stage1", "--help", "reward.w_format=0.25"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    stage1 = yaml.safe_load((REPO / "configs/embedded/stage1.yaml").read_text())
    steps = stage1["trainer"]["steps"]
    assert run.stdout.startswith("usage: python -m stages.stage1 ")
    assert _line(run.stdout, "trainer.steps").startswith(
        f"trainer.steps (int, {steps} from configs/embedded/stage1.yaml, default 100"
    )
    assert "0.25 from command line" in _line(run.stdout, "reward.w_format")
