"""Two ranks under the DeepSpeed launcher (gloo on CPU) against one: the same update over the
same trajectories, each group on one rank, one set of logs and checkpoints."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recipe.rollout_demo import DEMO_RECORDS
from recipe.training.batch import collate
from recipe.training.checkpoint import CheckpointStore
from recipe.training.engine import SINGLE_RANK_ENV
from recipe.training.ranks import Ranks
from tests.recipe.tiny_world import REPO, tiny_trainer
from tests.recipe.two_ranks import gradients_at_step

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file")


def test_blocks_split_evenly_or_refuse():
    assert [list(Ranks(r, 2).block(8)) for r in (0, 1)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert list(Ranks().block(3)) == [0, 1, 2]
    with pytest.raises(ValueError, match="do not split evenly over 2 ranks"):
        Ranks(0, 2).block(3)


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _two_ranks(*args: str) -> subprocess.CompletedProcess:
    launcher = Path(sys.executable).parent / "deepspeed"
    command = [str(launcher), "--num_gpus", "2", "--no_local_rank", "--master_port", _free_port()]
    command += [str(REPO / "tests/recipe/two_ranks.py"), *args]
    env = {k: v for k, v in os.environ.items() if k not in SINGLE_RANK_ENV and k != "MASTER_PORT"}
    env.update(PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE", DS_BUILD_OPS="0")
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_a_two_rank_update_equals_the_one_rank_update_over_the_same_trajectories(tmp_path):
    one = tiny_trainer(tmp_path / "one", steps=1, micro_batch_tokens=300)
    trajectories = one.rollouts.rollout(DEMO_RECORDS[:2])  # 2 groups of 4: one per rank
    rewards = [one.reward(t.response_text, t.golds).total for t in trajectories]
    assert len(set(rewards)) > 1
    with open(tmp_path / "batch.pkl", "wb") as f:
        pickle.dump((trajectories, rewards), f)
    grads = gradients_at_step(one)
    stats = one._update(collate(trajectories, rewards, one.tokenizer.pad_token_id), None)

    _two_ranks("update", str(tmp_path / "batch.pkl"), str(tmp_path / "two.pt"), str(tmp_path / "r"))
    two = torch.load(tmp_path / "two.pt")
    assert two["groups"] == [[0], [1]]  # each rank trained on one whole group
    assert set(two["grads"]) == set(grads)
    for name, grad in grads.items():  # the summed gradient is the one-rank gradient
        assert torch.allclose(two["grads"][name], grad, rtol=1e-4, atol=1e-7), name
    for key in ("policy_loss", "entropy", "clip_fraction"):
        assert two["stats"][key] == pytest.approx(stats[key], rel=1e-4, abs=1e-7), key
    compared = 0
    for name, p in one.engine.module.named_parameters():
        if name not in grads:
            continue
        sure = grads[name].abs() > 1e-5  # Adam's first step is lr * sign(g) away from |g| ~ eps
        compared += int(sure.sum())
        assert torch.allclose(two["weights"][name][sure], p[sure], atol=1e-6), name
    assert compared > 1000


def test_two_ranks_train_with_one_set_of_logs_and_checkpoints(tmp_path):
    run = tmp_path / "run"
    _two_ranks("fit", str(run), "2")
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
    resumed = tiny_trainer(run, steps=2, prompts_per_step=2)  # one rank reads it back
    resumed._resume()
    assert resumed.step_done == 2
