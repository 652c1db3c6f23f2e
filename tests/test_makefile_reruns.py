"""The Makefile's rerun rules, by `make -n` (what would run) and by real runs of the stage target
with a stand-in training command (what does run, and what is kept)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STEP_VARIABLES = ("BASE_ARGS", "INDEX_ARGS", "FILTER_ARGS", "STAGE1_ARGS", "STAGE2_ARGS")

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _make(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    # -o: the venvs count as installed, so a dry run lists only the pipeline's own commands.
    installed = ["-o", ".venv/.installed", "-o", ".venv-vllm/.installed"]
    command = ["make", "-f", str(ROOT / "Makefile"), *installed, *args]
    run_env = {k: v for k, v in os.environ.items() if not k.endswith("_ARGS") and k != "ARGS"}
    return subprocess.run(
        command, cwd=cwd, env={**run_env, **(env or {})}, capture_output=True, text=True
    )


def _dry(*args: str) -> str:
    result = _make("-n", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _lines_with(text: str, needle: str) -> list[str]:
    # Recipe lines are continued with backslashes; join them to one command each.
    commands = [" ".join(c.split()) for c in text.replace("\\\n", " ").splitlines()]
    return [c for c in commands if needle in c]


@pytest.mark.parametrize("target", ["stage1", "stage2", "filter", "index", "base", "eval"])
def test_catch_all_args_is_refused_naming_the_step_variables(target):
    result = _make("-n", target, "ARGS=trainer.steps=16")
    assert result.returncode == 2
    assert all(name in result.stderr for name in STEP_VARIABLES)


def test_args_still_reaches_the_service_targets():
    (line,) = _lines_with(_dry("serve-retriever", "ARGS=retriever.port=9000"), "server")
    assert line.endswith("retriever.port=9000")


def test_each_step_reads_only_its_own_overrides():
    text = _dry("stage2", "STAGE1_ARGS=a=1")
    for step, variable in [("filter", "FILTER_ARGS"), ("stage1", "STAGE1_ARGS")]:
        (line,) = _lines_with(text, f"recipe.stamp run {step} ")
        assert f"--overrides-env {variable}" in line
        assert "a=1" not in line  # handed over through the environment, verbatim
    (stage2,) = _lines_with(text, "recipe.stamp run stage2 ")
    assert "--overrides-env STAGE2_ARGS" in stage2 and "STAGE1_ARGS" not in stage2


def test_hub_offline_only_on_embedded_targets():
    for line in _lines_with(_dry("stage2"), "-m "):
        assert line.startswith("HF_HUB_OFFLINE=1 "), line
    (paper,) = _lines_with(_dry("index-paper"), "build_index")
    assert "HF_HUB_OFFLINE" not in paper
    paper_eval = _dry("eval", "EVAL_CONFIG=configs/paper/eval.yaml")
    assert "HF_HUB_OFFLINE" not in "".join(_lines_with(paper_eval, "stages.evaluate"))


def test_the_default_vllm_backend_uses_its_own_venv_and_hf_the_plain_one():
    text = _dry("stage1", "NPROC=2")
    (line,) = _lines_with(text, "recipe.stamp run stage1 ")
    assert ".venv-vllm/bin/deepspeed --num_gpus 2" in line
    assert "--override rollout.backend=vllm" in line
    (single,) = _lines_with(_dry("stage1"), "run stage1 ")
    assert "-- .venv-vllm/bin/python -m stages.stage1" in single
    (hf,) = _lines_with(_dry("stage1", "BACKEND=hf"), "run stage1 ")
    assert "-- .venv/bin/python -m stages.stage1" in hf and "rollout.backend" not in hf


def test_an_unknown_backend_is_refused():
    result = _make("-n", "stage1", "BACKEND=vLLM")
    assert result.returncode == 2
    assert "BACKEND must be hf or vllm, got BACKEND=vLLM" in result.stderr


@pytest.mark.parametrize("target, module", [("filter", "data_filtering"), ("eval", "evaluate")])
def test_filter_and_evaluation_take_nproc(target, module):
    (line,) = _lines_with(_dry(target, "NPROC=2"), module + " --config")
    assert ".venv-vllm/bin/deepspeed --num_gpus 2 --no_local_rank --module" in line


def test_clean_keeps_runs():
    lines = _lines_with(_dry("clean"), "rm ")
    assert lines and not any("runs" in line for line in lines)


# A stand-in for the training command: records its arguments, leaves a finished run.
FAKE_STAGE = """
import json, pathlib, sys
run = pathlib.Path("runs/stage1"); run.mkdir(parents=True, exist_ok=True)
(run / "argv.json").write_text(json.dumps(sys.argv[1:]))
(run / "summary.json").write_text("{}")
"""


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    (tmp_path / "fake_stage.py").write_text(FAKE_STAGE)
    return tmp_path


def _stage1(workdir: Path, overrides: str) -> subprocess.CompletedProcess:
    # -o: the earlier steps count as done; only the stage's own rule is under test.
    earlier = ["-o", "base", "-o", "index", "-o", "filter"]
    result = _make(
        "stage1",
        *earlier,
        f"PY={sys.executable}",
        f"LAUNCH={sys.executable} fake_stage.py",
        cwd=workdir,
        env={"STAGE1_ARGS": overrides, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_stage_reruns_only_when_its_overrides_change_and_keeps_the_old_run(workdir):
    _stage1(workdir, "trainer.steps=3 'eval.methods=[a, b]'")
    argv = json.loads((workdir / "runs/stage1/argv.json").read_text())
    assert argv[-2:] == ["trainer.steps=3", "eval.methods=[a, b]"]
    assert "stage1: up to date" in _stage1(workdir, "trainer.steps=3 'eval.methods=[a, b]'").stdout
    out = _stage1(workdir, "trainer.steps=4").stdout
    assert "changed since the last run: overrides" in out
    (aside,) = [p for p in (workdir / "runs").iterdir() if p.name.startswith("stage1.")]
    assert json.loads((aside / "argv.json").read_text())[-1] == "eval.methods=[a, b]"
    assert json.loads((workdir / "runs/stage1/argv.json").read_text())[-1] == "trainer.steps=4"
    removed = _make("clean-old", f"PY={sys.executable}", cwd=workdir, env={"PYTHONPATH": str(ROOT)})
    assert removed.returncode == 0 and not aside.exists()
    assert (workdir / "runs/stage1/summary.json").exists()


def test_a_replicate_shifts_every_seed_and_keeps_to_its_own_folder():
    text = _dry("replicate", "SEED=2")
    (stage1,) = _lines_with(text, "recipe.stamp run seed2-stage1 ")
    (stage2,) = _lines_with(text, "recipe.stamp run seed2-stage2 ")
    (ablation,) = _lines_with(text, "recipe.stamp run seed2-ablation ")
    for line in (stage1, stage2, ablation):
        assert "--override trainer.runs_dir=runs/seed2 --override rollout.seed=2000" in line
    assert "trainer.seed=2000" in stage1 and "trainer.seed=2000" in ablation
    assert "trainer.seed=2001" in stage2  # stage 2's own seed is 1
    assert "--input runs/seed2/stage1/final" in stage2
    assert "model.path=runs/seed2/stage1/final" in stage2
    assert "trainer.compare_with=runs/seed2/stage2" in ablation
    assert "--run-dir runs/seed2/ablation" in ablation
    assert not _lines_with(text, "recipe.stamp run stage1 ")  # seed 0's runs are not redone


@pytest.mark.parametrize("seed", ["0", "x", "-1"])
def test_a_replicate_needs_a_seed_from_one(seed):
    result = _make("-n", "replicate", f"SEED={seed}")
    assert result.returncode == 2
    assert "replicate needs SEED=k with k >= 1" in result.stderr


@pytest.mark.parametrize(
    "target, module",
    [("filter", "data_filtering --config"), ("eval", "stages.evaluate"), ("stage2", "evaluate")],
)
def test_the_backend_reaches_every_step_that_rolls_out(target, module):
    (line,) = _lines_with(_dry(target), module)
    assert ".venv-vllm/bin/python -m" in line
    assert "rollout.backend=vllm" in line
    assert "rollout.backend" not in "".join(_lines_with(_dry(target, "BACKEND=hf"), module))
