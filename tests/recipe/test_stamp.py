"""recipe.stamp: a step runs when its fingerprint changed, keeps finished runs, resumes its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recipe.stamp import MOVED_ASIDE, clean_old, main

# A stand-in step: appends its overrides to runs/step/log and finishes with summary.json,
# unless told to fail midway (a killed run: a log, no summary).
STEP = """
import sys, pathlib
run = pathlib.Path(sys.argv[1]); run.mkdir(parents=True, exist_ok=True)
with open(run / "log", "a") as f: f.write(" ".join(sys.argv[2:]) + "\\n")
if "fail=1" in sys.argv: sys.exit(3)
(run / "summary.json").write_text("{}")
"""

HOLD_LOCK = """
import sys, time
from recipe.run_lock import acquire
acquire(sys.argv[1], what="run of this step")
print("locked", flush=True)
time.sleep(60)
"""


@pytest.fixture
def step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("step.py").write_text(STEP)
    Path("cfg.yaml").write_text("a: 1\n")
    Path("data.jsonl").write_text("q1\n")

    def run(*extra: str, env: str = "") -> int:
        monkeypatch.setenv("STEP_ARGS", env)
        argv = ["run", "demo", "--config", "cfg.yaml", "--input", "data.jsonl"]
        argv += ["--overrides-env", "STEP_ARGS", "--run-dir", "runs/demo"]
        argv += ["--done", "runs/demo/summary.json", "--stamps", "runs/.stamps", *extra]
        return main([*argv, "--", sys.executable, "step.py", "runs/demo"])

    return run


def _log() -> list[str]:
    return Path("runs/demo/log").read_text().splitlines()


def _aside() -> list[Path]:
    return sorted(p for p in Path("runs").iterdir() if MOVED_ASIDE.match(p.name))


def test_second_run_with_same_inputs_does_nothing(step, capsys):
    assert step(env="k=1") == 0
    assert step(env="k=1") == 0
    assert _log() == ["k=1"]
    assert "demo: up to date" in capsys.readouterr().out
    stamp = json.loads(Path("runs/.stamps/demo.json").read_text())
    assert stamp["state"] == "done" and stamp["overrides"] == ["k=1"]


def test_changed_override_moves_the_finished_run_aside(step, capsys):
    step(env="k=1")
    assert step(env="'k=[a, b]'") == 0
    out = capsys.readouterr().out
    assert "changed since the last run: overrides" in out and "moved aside" in out
    assert _log() == ["k=[a, b]"]  # passed as one argument, quotes and spaces intact
    (old,) = _aside()
    assert (old / "log").read_text() == "k=1\n"
    assert json.loads((old / "stamp.json").read_text())["overrides"] == ["k=1"]


@pytest.mark.parametrize("edit", ["cfg.yaml", "data.jsonl"])
def test_changed_config_or_input_reruns(step, edit, capsys):
    step()
    Path(edit).write_text(Path(edit).read_text() + "b: 2\n")
    step()
    assert f"{'config' if edit.endswith('yaml') else 'input'}:{edit}" in capsys.readouterr().out
    assert len(_aside()) == 1 and _log() == [""]


def test_config_comment_does_not_rerun(step):
    step()
    Path("cfg.yaml").write_text("# why a is 1\na: 1\n")
    step()
    assert _aside() == [] and _log() == [""]


def test_killed_run_resumes_with_same_inputs_and_is_set_aside_with_others(step, capsys):
    assert step(env="fail=1") == 3
    assert step(env="fail=1") == 3
    assert "resuming the unfinished run" in capsys.readouterr().out
    assert _log() == ["fail=1", "fail=1"]  # the same folder, continued
    assert step(env="k=2") == 0
    assert "unfinished run from other inputs moved aside" in capsys.readouterr().out
    assert _log() == ["k=2"] and len(_aside()) == 1


def test_run_finished_but_stamp_not_updated_counts_as_done(step):
    step()
    stamp_path = Path("runs/.stamps/demo.json")
    stamp = json.loads(stamp_path.read_text())
    stamp_path.write_text(json.dumps({**stamp, "state": "running"}))
    step()
    assert _log() == [""] and _aside() == []


def test_clean_old_removes_only_moved_aside_runs(step):
    step(env="k=1")
    step(env="k=2")
    Path("runs/stage1.notes").mkdir()
    aside = _aside()
    assert len(aside) == 1
    assert clean_old(Path("runs")) == aside
    assert _aside() == []
    assert Path("runs/demo/summary.json").exists() and Path("runs/stage1.notes").exists()


def test_a_finished_run_without_stamp_is_moved_aside_unless_adopted(step, capsys):
    step()
    Path("runs/.stamps/demo.json").unlink()
    assert step("--adopt") == 0
    assert "adopted" in capsys.readouterr().out
    assert _aside() == [] and _log() == [""]
    assert step() == 0 and "up to date" in capsys.readouterr().out
    Path("runs/.stamps/demo.json").unlink()
    step()
    assert len(_aside()) == 1


def test_a_run_another_process_writes_is_left_alone(step, capsys):
    step(env="k=1")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(Path("runs/demo").resolve())],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match="demo: .*in use by another run of this step"):
            step(env="k=2")
        assert _aside() == [] and _log() == ["k=1"]
    finally:
        holder.kill()
        holder.wait()
