"""A run records the settings it started under; a resume under other values is refused in one
line naming each difference unless `trainer.resume_allow_changes` allows them, allowed changes
are recorded, and config.yaml keeps claiming only what the run started with."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from demo.world import DEMO_RECORDS
from recipe.config import FieldError
from recipe.schema import RunConfig
from recipe.training.run_settings import (
    RESUMES_FILE,
    SETTINGS_FILE,
    ResumeRefused,
    RunSettings,
    check_allow_list,
    run_settings,
)
from recipe.training.sampler import QuestionSampler
from tests.recipe.tiny_world import tiny_trainer

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def settings_of(**changes) -> dict:
    cfg = RunConfig()
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        setattr(getattr(cfg, section), key, value)
    return run_settings(cfg, DEMO_RECORDS)


def test_differences_are_listed_in_one_line_and_allowed_ones_recorded(tmp_path):
    store = RunSettings(tmp_path)
    store.write(settings_of())
    assert store.check(settings_of(trainer__steps=999, logging__progress=False), []) == {}
    changed = settings_of(trainer__lr=1e-5, rollout__samples_per_prompt=3, model__path="other")
    with pytest.raises(ResumeRefused) as refused:
        store.check(changed, ["trainer.lr"])
    message = str(refused.value)
    assert "\n" not in message
    for part in (
        "rollout.samples_per_prompt: 8 -> 3",
        'model.path: "runs/miniwiki/base" -> "other"',
    ):
        assert part in message
    assert "trainer.lr" not in message  # allowed, so not a reason to refuse
    assert not (tmp_path / RESUMES_FILE).exists()

    allowed = store.check(changed, ["trainer.lr", "rollout.samples_per_prompt", "model.path"])
    assert allowed["trainer.lr"] == [2e-6, 1e-5] and len(allowed) == 3
    rows = [json.loads(line) for line in (tmp_path / RESUMES_FILE).read_text().splitlines()]
    assert rows[0]["changes"] == allowed
    assert store.check(changed, []) == {}  # compared with the settings as changed
    assert json.loads((tmp_path / SETTINGS_FILE).read_text())["trainer.lr"] == 2e-6
    fewer = run_settings(RunConfig(), DEMO_RECORDS[:1])
    with pytest.raises(ResumeRefused, match="data.questions: 3 -> 1"):
        store.check(fewer, [])
    assert len(store.check(fewer, ["all"])) == 5  # the count, the digest and the three above


def test_an_unknown_key_to_allow_is_a_config_error():
    keys = list(settings_of())
    check_allow_list(["trainer.lr", "all"], keys)
    with pytest.raises(FieldError, match="trainer.run_nme"):
        check_allow_list(["trainer.run_nme"], keys)
    done = subprocess.run(
        [sys.executable, "-m", "stages.stage1", "trainer.resume_allow_changes=[trainer.steps]"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "trainer.resume_allow_changes" in done.stderr


def test_a_changed_question_count_starts_a_new_epoch():
    sampler = QuestionSampler(DEMO_RECORDS, seed=0)
    sampler.next_batch(3)
    state = sampler.state_dict()
    fewer = QuestionSampler(DEMO_RECORDS[:2], seed=0)
    fewer.load_state_dict(state)
    assert (fewer.epoch, fewer.position) == (state["epoch"] + 1, 0)
    assert len(fewer.next_batch(3)) == 3
    same = QuestionSampler(DEMO_RECORDS, seed=0)
    same.load_state_dict(state)
    assert (same.epoch, same.position) == (state["epoch"], state["position"])


@pytest.mark.slow
def test_a_resume_under_other_settings_is_refused_then_allowed(tmp_path):
    run = tmp_path / "run"
    tiny_trainer(run, steps=1).fit()
    config = (run / "config.yaml").read_text()
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(ResumeRefused, match="trainer.lr: 0.003 -> 0.001"):
        tiny_trainer(run, steps=2, lr=1e-3, records=DEMO_RECORDS[:2]).fit()
    assert (run / "metrics.jsonl").read_text() == metrics

    allow = ["trainer.lr", "data.questions", "data.questions_sha256"]
    resumed = tiny_trainer(
        run, steps=2, lr=1e-3, records=DEMO_RECORDS[:2], resume_allow_changes=allow
    )
    resumed.fit()
    assert resumed.step_done == 2
    assert resumed.sampler.epoch == 2  # a new epoch at the resume, the next within step 2
    rows = [json.loads(line) for line in (run / RESUMES_FILE).read_text().splitlines()]
    assert sorted(rows[0]["changes"]) == sorted(allow)
    assert (run / "config.yaml").read_text() == config  # still the run's start


def test_auto_precision_is_compared_as_resolved_and_unrecorded_keys_are_new(tmp_path):
    store = RunSettings(tmp_path)
    recorded = settings_of(model__dtype="auto", trainer__autocast_bf16="auto")
    native = recorded["model.dtype"] == "bfloat16"
    assert recorded["trainer.autocast_bf16"] is native
    store.write(recorded)
    other = "float32" if native else "bfloat16"
    with pytest.raises(
        ResumeRefused, match=f'model.dtype: "{recorded["model.dtype"]}" -> "{other}"'
    ):
        store.check(settings_of(model__dtype=other, trainer__autocast_bf16="auto"), [])
    older = {k: v for k, v in recorded.items() if k != "model.dtype"}  # a run from before
    store.write(older)
    assert store.check(settings_of(model__dtype=other, trainer__autocast_bf16="auto"), []) == {}
