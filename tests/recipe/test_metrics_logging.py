"""What the run logs: `logging.log_every` thins the training steps but never the dev
evaluations, the reward spread inside each question's group, and optional wandb logging."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from recipe.rollout import Trajectory
from recipe.schema import LoggingConfig
from recipe.training.metrics import METRICS_FILE, MetricsTracker
from recipe.training.monitors import group_metrics
from rewards.stage import RewardResult
from stages.run import main as stage_main


def _logged(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


def test_log_every_thins_training_steps_but_keeps_every_dev_evaluation(tmp_path):
    tracker = MetricsTracker(tmp_path, LoggingConfig(log_every=3, tensorboard=False))
    tracker.log(0, {"dev/f1": 0.25}, always=True)  # eval_at_start
    for step in range(1, 6):
        tracker.log(step, {"reward/total": step / 10})
    tracker.log(5, {"dev/f1": 0.5}, always=True)  # the final evaluation, at step 5
    tracker.close()
    rows = _logged(tmp_path)
    assert [(r["step"], sorted(k for k in r if k != "step")) for r in rows] == [
        (0, ["dev/f1"]),
        (3, ["reward/total"]),
        (5, ["dev/f1"]),
    ]
    assert rows[-1]["dev/f1"] == 0.5


def _group(record_id: str, rewards: list[float]):
    trajectories = [Trajectory(record_id, i, "q?", ["a"], [1]) for i in range(len(rewards))]
    return trajectories, [RewardResult(total=r, parts={}) for r in rewards]


def test_group_metrics_give_the_spread_inside_each_question_group():
    t0, r0 = _group("q0", [1.0, 0.0, 1.0, 0.0])  # std 0.5
    t1, r1 = _group("q1", [-2.0, -2.0, -2.0, -2.0])  # all equal: no gradient
    t2, r2 = _group("q2", [0.5, 0.5, 0.5, 0.5])  # all equal
    t3, r3 = _group("q3", [0.0, 0.0, 0.0, 3.0])  # mean 0.75, var (3 * 0.5625 + 5.0625) / 4
    m = group_metrics(t0 + t1 + t2 + t3, r0 + r1 + r2 + r3)
    assert m["reward/groups_all_equal"] == 0.5
    assert m["reward/group_std"] == pytest.approx((0.5 + math.sqrt(1.6875)) / 4)


def test_wandb_offline_run_holds_the_logged_scalars(tmp_path, monkeypatch):
    """wandb commits a step's row when a later step is logged: the dev scalars logged after
    the step's own land in the same row."""
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = LoggingConfig(tensorboard=False, wandb=True, wandb_project="tiny")
    tracker = MetricsTracker(tmp_path / "run", cfg)
    assert tracker.wandb.project == "tiny" and tracker.wandb.name == "run"
    tracker.log(1, {"reward/total": 0.25})
    tracker.log(2, {"reward/total": 0.75})
    tracker.log(2, {"dev/f1": 0.5}, always=True)
    tracker.log(3, {"reward/total": 1.0})
    summary = dict(tracker.wandb.summary)
    tracker.close()
    assert summary["_step"] == 2
    assert summary["reward/total"] == 0.75 and summary["dev/f1"] == 0.5
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert wandb.run is None  # finished


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed")
def test_wandb_asked_for_without_wandb_installed_is_refused_before_loading(capsys):
    with pytest.raises(SystemExit) as done:
        stage_main("configs/smoke/stage1.yaml", ["logging.wandb=true"])
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "logging.wandb (from command line)" in err and "pip install -e '.[wandb]'" in err
