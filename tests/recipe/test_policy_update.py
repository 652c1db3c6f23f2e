"""The policy update beyond one optimizer step per rollout: mini-batches of whole questions,
several epochs, the learning-rate schedule over optimizer steps, behaviour log-probs taken
before any update, gradient checkpointing, the training dtype."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from demo.world import DEMO_RECORDS
from recipe.algorithms import POLICY_LOSSES, ppo_clip_loss
from recipe.training.batch import collate
from recipe.training.engine import training_dtype
from recipe.training.errors import TrainingError
from recipe.training.logprobs import sequence_logprobs
from recipe.training.update import split_groups
from tests.recipe.tiny_world import tiny_config, tiny_trainer
from tests.recipe.two_ranks import gradients_at_step

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file")


def _step_batch(trainer, records=DEMO_RECORDS[:3]):
    trajectories = trainer.rollouts.rollout(records)
    rewards = [trainer.reward(t.response_text, t.golds).total for t in trajectories]
    assert len(set(rewards)) > 1  # something to learn
    return collate(trajectories, rewards, trainer.tokenizer.pad_token_id)


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_the_schedule_counts_optimizer_steps(tmp_path):
    """2 RL steps x 2 epochs x 2 mini-batches = 8 optimizer steps: linear decay reaches 0 at
    the 8th, not at the 2nd. A step's `lr` is the mean rate of its optimizer steps: factors
    8/8 .. 5/8, then 4/8 .. 1/8."""
    run = tmp_path / "run"
    trainer = tiny_trainer(
        run, steps=2, prompts_per_step=2, ppo_epochs=2, updates_per_rollout=2, lr_decay=True
    )
    trainer.fit()
    lrs = [m["lr"] for m in _metrics(run) if "lr" in m]
    assert lrs == pytest.approx([3e-3 * 26 / 32, 3e-3 * 10 / 32])
    assert trainer.engine.global_steps == 8


def test_warmup_counts_optimizer_steps_too(tmp_path):
    run = tmp_path / "run"
    tiny_trainer(run, steps=2, prompts_per_step=2, updates_per_rollout=2, warmup_steps=4).fit()
    # Optimizer steps at 1/4, 2/4 of the rate (step 1), then 3/4, 4/4 (step 2).
    assert [m["lr"] for m in _metrics(run) if "lr" in m] == pytest.approx(
        [3e-3 * 3 / 8, 3e-3 * 7 / 8]
    )


def test_mini_batches_hold_whole_questions_in_equal_numbers(tmp_path):
    trainer = tiny_trainer(tmp_path / "run", steps=1)
    batch = _step_batch(trainer)
    parts = split_groups(batch, range(len(batch)), 3)
    groups = [sorted({int(batch.group_index[r]) for r in part}) for part in parts]
    assert groups == [[0], [1], [2]]
    assert sorted(r for part in parts for r in part) == list(range(len(batch)))
    with pytest.raises(TrainingError, match="trainer.updates_per_rollout=2 does not split"):
        split_groups(batch, range(len(batch)), 2)


def test_each_mini_batch_is_one_optimizer_step_on_its_own_questions(tmp_path):
    trainer = tiny_trainer(tmp_path / "run", steps=1, updates_per_rollout=3, old_logprobs="sampler")
    batch = _step_batch(trainer)
    questions_per_step: list[set[int]] = [set()]
    forward, real_step = trainer.update.forward, trainer.engine.step

    def recording_forward(model, sub):  # which questions each optimizer step trained on
        questions_per_step[-1].update(sub.group_index.tolist())
        return forward(model, sub)

    def recording_step(*args, **kwargs):
        questions_per_step.append(set())
        return real_step(*args, **kwargs)

    trainer.update.forward, trainer.engine.step = recording_forward, recording_step
    stats = trainer.update(batch, None)
    assert questions_per_step == [{0}, {1}, {2}, set()]
    assert trainer.engine.global_steps == 3 and stats["update/skipped"] == 0.0


NAN_FIRST = "nan_on_first_call"
_calls: list[torch.Tensor] = []


def _nan_on_first_call(logprobs, old_logprobs, advantages, action_mask, clip_eps=0.2):
    """PPO-clip, except that its first call in a test returns NaN (a non-finite first pass)."""
    _calls.append(old_logprobs.detach().clone())
    loss, diagnostics = ppo_clip_loss(logprobs, old_logprobs, advantages, action_mask, clip_eps)
    return (loss * torch.nan if len(_calls) == 1 else loss), diagnostics


def test_a_skipped_first_epoch_leaves_the_next_its_behaviour_logprobs(tmp_path, monkeypatch):
    """ppo_epochs 2, old log-probs recomputed: epoch 1's first pass is non-finite and the step
    is skipped; epoch 2 still divides by the log-probs of the policy that sampled, on every
    row (never zeros for rows epoch 1 did not reach)."""
    trainer = tiny_trainer(tmp_path / "run", steps=1, ppo_epochs=2, micro_batch_tokens=300)
    # Registered for this test only: the registry must list exactly the config's choices.
    monkeypatch.setitem(POLICY_LOSSES, NAN_FIRST, _nan_on_first_call)
    trainer.cfg.algo.policy_loss = NAN_FIRST
    batch = _step_batch(trainer)
    sampler = copy.deepcopy(trainer.engine.module)
    with torch.no_grad():
        expected, _ = sequence_logprobs(
            sampler, batch.input_ids, batch.attention_mask, batch.action_mask
        )
    _calls.clear()
    stats = trainer.update(batch, None)
    assert stats["update/skipped"] == 0.5  # epoch 1 skipped, epoch 2 applied
    epoch2 = _calls[1:]  # ZeRO-0 stops epoch 1 at its non-finite first pass
    assert sum(old.shape[0] for old in epoch2) == len(batch)
    seen = torch.cat([old[old != 0] for old in epoch2]).sort().values
    sampled = expected[batch.action_mask.bool()].sort().values
    torch.testing.assert_close(seen, sampled, atol=2e-5, rtol=1e-5)


def test_gradient_checkpointing_gives_the_same_update(tmp_path):
    plain = tiny_trainer(tmp_path / "plain", steps=1, micro_batch_tokens=300)
    batch = _step_batch(plain)
    checkpointed = tiny_trainer(
        tmp_path / "ckpt", steps=1, micro_batch_tokens=300, gradient_checkpointing=True
    )
    assert checkpointed.engine.module.is_gradient_checkpointing
    grads = gradients_at_step(plain)
    grads_ckpt = gradients_at_step(checkpointed)
    stats = plain.update(batch, None)
    stats_ckpt = checkpointed.update(batch, None)
    assert stats_ckpt["grad_norm"] == pytest.approx(stats["grad_norm"], rel=1e-4)
    assert set(grads_ckpt) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grads_ckpt[name], grad, rtol=1e-4, atol=1e-7)


def test_the_policy_loads_in_the_dtype_deepspeed_trains_in(tmp_path):
    cfg = tiny_config(tmp_path / "run", steps=1).trainer
    for body, dtype in (
        ({"bf16": {"enabled": True}}, "bfloat16"),
        ({"fp16": {"enabled": True}}, "float16"),
        ({"bf16": {"enabled": False}}, "float32"),
        ({}, "float32"),
    ):
        path = tmp_path / "ds.json"
        path.write_text(json.dumps(body))
        cfg.deepspeed_config = str(path)
        assert training_dtype(cfg) == dtype
