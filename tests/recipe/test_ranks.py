"""Two ranks under the DeepSpeed launcher (gloo on CPU) against one: the same update over the
same trajectories, each group on one rank, one set of logs and checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from demo.world import DEMO_RECORDS
from recipe.ports import free_port
from recipe.training.batch import collate
from recipe.training.checkpoint import CheckpointStore
from recipe.training.engine import SINGLE_RANK_ENV
from recipe.training.ranks import Ranks
from recipe.training.trainer import TrainingError
from tests.recipe.tiny_world import REPO, tiny_trainer
from tests.recipe.two_ranks import gradients_at_step

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file")


def test_blocks_split_evenly_or_refuse():
    assert [list(Ranks(r, 2).block(8)) for r in (0, 1)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert list(Ranks().block(3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="do not split evenly over 2 ranks"):
        Ranks(0, 2).block(3)


def _two_ranks(*args: str) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).parent / "deepspeed"
    port = str(free_port())
    command = [str(launcher), "--num_gpus", "2", "--no_local_rank", "--master_port", port]
    command += [str(REPO / "tests/recipe/two_ranks.py"), *args]
    env = {k: v for k, v in os.environ.items() if k not in SINGLE_RANK_ENV and k != "MASTER_PORT"}
    env.update(PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE", DS_BUILD_OPS="0")
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # DeepSpeed's CPU all-reduce workspaces (one per rank, in memory) do not outlive the run.
    assert not list(Path("/dev/shm").glob(f"deepspeed_allreduce_buffer_*_{port}_*"))
    return done


ZERO0 = str(REPO / "configs/deepspeed/cpu_zero0.json")
ZERO2 = str(REPO / "configs/deepspeed/cpu_zero2.json")


def _zero_config(stage: int, folder: Path) -> str:
    """The CPU DeepSpeed config of a ZeRO stage (stage 1, splitting only the optimizer state,
    has no file of its own: it is written to `folder`)."""
    if stage != 1:
        return {0: ZERO0, 2: ZERO2}[stage]
    path = folder / "cpu_zero1.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": 1}, "bf16": {"enabled": False}}))
    return str(path)


def _one_rank_update(tmp_path, ds_config: str = ZERO0, steps: tuple | None = None):
    """(trainer, its gradients at `engine.step`, stats, trajectories and rewards) after one
    update over 2 groups of 4 trajectories (its own rollout unless `steps` are given); they are
    pickled to `tmp_path / "batch.pkl"`. At 600 tokens a pass, the two groups' rows make 3 and
    2 passes (rows of 425, 425, 241, 241 and 243, 243, 243, 252 tokens)."""
    run = tmp_path / f"one-{Path(ds_config).stem}"
    one = tiny_trainer(run, steps=1, micro_batch_tokens=600, deepspeed_config=ds_config)
    if steps is None:
        trajectories = one.rollouts.rollout(DEMO_RECORDS[:2])  # 2 groups of 4: one per rank
        rewards = [one.reward(t.response_text, t.golds).total for t in trajectories]
        assert len(set(rewards)) > 1
        with open(tmp_path / "batch.pkl", "wb") as f:
            pickle.dump((trajectories, rewards), f)
    else:
        trajectories, rewards = steps
    grads = gradients_at_step(one)
    stats = one.update(collate(trajectories, rewards, one.tokenizer.pad_token_id), None)
    return one, grads, stats, (trajectories, rewards)


def _assert_same_weights(weights: dict, one, grads: dict) -> None:
    compared = 0
    for name, p in one.engine.module.named_parameters():
        if name not in grads:
            continue
        sure = grads[name].abs() > 1e-5  # Adam's first step is lr * sign(g) away from |g| ~ eps
        compared += int(sure.sum())
        assert torch.allclose(weights[name][sure], p[sure], atol=1e-6), name
    assert compared > 1000


@pytest.mark.parametrize("stage", [1, 2])
def test_zero_1_and_2_apply_the_update_zero0_applies(tmp_path, stage):
    one, grads, stats, batch = _one_rank_update(tmp_path)
    zero2, _, stats2, _ = _one_rank_update(tmp_path, _zero_config(stage, tmp_path), batch)
    assert stats2["grad_norm"] == pytest.approx(stats["grad_norm"], rel=1e-4)
    assert stats2["update/skipped"] == 0.0
    weights = {n: p.detach() for n, p in zero2.engine.module.named_parameters()}
    _assert_same_weights(weights, one, grads)


def test_zero3_is_refused_with_the_key_to_change(tmp_path):
    config = tmp_path / "zero3.json"
    config.write_text(json.dumps({"zero_optimization": {"stage": 3}, "bf16": {"enabled": False}}))
    with pytest.raises(TrainingError, match="trainer.deepspeed_config: ZeRO stage 3"):
        tiny_trainer(tmp_path / "run", steps=1, deepspeed_config=str(config))


# ZeRO-2 (gradients partitioned, backward passes evened) in the default tier; 0 and 1 in the slow,
# as the two-rank runs with logs, checkpoints and a resume.
@pytest.mark.parametrize(
    "stage",
    [
        pytest.param(0, id="zero0", marks=pytest.mark.slow),
        pytest.param(1, id="zero1", marks=pytest.mark.slow),
        pytest.param(2, id="zero2"),
    ],
)
def test_a_two_rank_update_equals_the_one_rank_update_over_the_same_trajectories(tmp_path, stage):
    ds_config = _zero_config(stage, tmp_path)
    one, grads, stats, _ = _one_rank_update(tmp_path)
    out = tmp_path / "two.pt"
    _two_ranks("update", str(tmp_path / "batch.pkl"), str(out), str(tmp_path / "r"), ds_config)
    two = torch.load(out)
    assert two["groups"] == [[0], [1]]  # each rank trained on one whole group
    (before0, after0), (before1, after1) = two["passes"]
    assert before0 != before1
    if stage == 0:  # the trainer's own sum, read as `engine.step` starts, is the one-rank gradient
        assert set(two["grads"]) == set(grads)
        for name, grad in grads.items():
            assert torch.allclose(two["grads"][name], grad, rtol=1e-4, atol=1e-7), name
    if stage == 2:  # every backward is a collective: the ranks ran as many, from 3 and 2
        assert after0 == after1 == max(before0, before1)
    else:
        assert (after0, after1) == (before0, before1)
    for key in ("policy_loss", "entropy", "clip_fraction", "grad_norm"):
        assert two["stats"][key] == pytest.approx(stats[key], rel=1e-4, abs=1e-7), key
    _assert_same_weights(two["weights"], one, grads)


@pytest.mark.parametrize(
    "ds_config",
    [
        pytest.param(ZERO0, id="zero0", marks=pytest.mark.slow),
        pytest.param(ZERO2, id="zero2", marks=pytest.mark.slow),
    ],
)
def test_two_ranks_train_with_one_set_of_logs_and_checkpoints(tmp_path, ds_config):
    run = tmp_path / "run"
    _two_ranks("fit", str(run), "2", ds_config)
    rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2]  # rank 0 logs, once per step
    samples = [json.loads(line) for line in open(run / "trajectories.jsonl")]
    for step in (1, 2):
        ids = [(s["id"], s["sample"]) for s in samples if s["step"] == step]
        questions = {i for i, _ in ids}
        assert len(questions) == 2 and sorted(ids) == sorted(
            (q, k) for q in questions for k in range(4)
        )
    store = CheckpointStore(run, keep=2)
    assert [p.name for p in store.complete()] == ["step-000001", "step-000002"]
    assert not list((run / "checkpoints").glob("*.tmp"))
    assert (run / "final" / "model.safetensors").is_file()
    if ds_config == ZERO0:
        resumed = tiny_trainer(run, steps=2, prompts_per_step=2)  # one rank reads it back
        resumed._resume()
        assert resumed.step_done == 2
    else:  # ZeRO-2's optimizer state is split over the two ranks: they read it back
        done = _two_ranks("fit", str(run), "3", ds_config)
        assert "resumed from" in done.stdout + done.stderr
        rows = [json.loads(line) for line in open(run / "metrics.jsonl")]
        assert [r["step"] for r in rows] == [1, 2, 3]
