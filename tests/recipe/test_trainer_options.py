"""Every trainer option a user can switch on, on the tiny world, by its values: KL to a
reference model (in the reward and in the loss, each estimator), warm-up and decay, thinned
logs with the dev evaluations kept, `eval_at_start`, `resume=<checkpoint>`, several epochs
with sampler or recomputed behaviour log-probs, and the bf16 generation copy with autocast.

One four-step run with KL in the reward, warm-up, decay, `log_every: 3` and both evaluations
serves most asserts; the slower variants are marked slow.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from recipe.config import ConfigError, load_config
from recipe.schema import RunConfig
from recipe.training.checkpoint import CheckpointStore
from recipe.training.errors import TrainingError
from rewards.stage import RewardResult
from tests.recipe.tiny_world import tiny_trainer

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file", "one_torch_thread")

LR = 3e-3  # tiny_world's
KL_COEF = 0.05
ADAM = {"adam_betas": [0.9, 0.95], "adam_eps": 1e-6}


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _recording_steps(trainer) -> dict[int, dict]:
    """Every step's scalars as `Trainer.step` returned them, whatever `log_every` writes."""
    seen: dict[int, dict] = {}
    step = trainer.step

    def recorded(n, tracker):
        seen[n] = step(n, tracker)
        return seen[n]

    trainer.step = recorded
    return seen


def _recording_optimizer_steps(trainer) -> list[dict]:
    """Each optimizer step's statistics, in order."""
    seen: list[dict] = []
    inner = trainer.update._optimizer_step

    def recorded(*args):
        seen.append(inner(*args))
        return seen[-1]

    trainer.update._optimizer_step = recorded
    return seen


def _weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().float() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def kl_run(tmp_path_factory):
    """4 steps, KL (k1) in the reward, warm-up over 2 optimizer steps then linear decay,
    AdamW betas (0.9, 0.95) and eps 1e-6, metrics every 3rd step, dev evaluations at the start
    and the end."""
    run = tmp_path_factory.mktemp("kl") / "run"
    trainer = tiny_trainer(
        run,
        steps=4,
        warmup_steps=2,
        lr_decay=True,
        **ADAM,
        eval_at_start=True,
        eval_at_end=True,
        sections={
            "algo": {"kl_coef": KL_COEF, "kl_estimator": "k1", "kl_in_reward": True},
            "logging": {"log_every": 3},
        },
    )
    initial = _weights(trainer.engine.module)
    steps = _recording_steps(trainer)
    summary = trainer.fit()
    return {"run": run, "trainer": trainer, "steps": steps, "summary": summary, "initial": initial}


def test_kl_coef_builds_a_frozen_reference_and_kl_starts_at_zero(kl_run):
    trainer, steps = kl_run["trainer"], kl_run["steps"]
    assert trainer.ref_model is not None
    reference = _weights(trainer.ref_model)
    assert all(reference[k].equal(v) for k, v in kl_run["initial"].items())  # never trained
    moved = _weights(trainer.engine.module)
    assert any(not moved[k].equal(v) for k, v in kl_run["initial"].items())
    assert steps[1]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy is the reference
    assert all(steps[n]["kl"] != 0.0 for n in (2, 3, 4))


@pytest.mark.slow
def test_kl_coef_zero_builds_no_reference(tmp_path):
    trainer = tiny_trainer(tmp_path / "run", steps=1, sections={"algo": {"kl_coef": 0.0}})
    assert trainer.ref_model is None
    assert trainer.update._behaviour_logprobs is not None  # the update runs without one


def test_adam_settings_reach_the_optimizer(kl_run):
    (group,) = kl_run["trainer"].engine.optimizer.param_groups
    assert group["betas"] == (0.9, 0.95) and group["eps"] == 1e-6


def test_adam_betas_outside_0_1_name_the_key_and_its_source():
    with pytest.raises(ConfigError, match=r"trainer\.adam_betas.*command line.*\[0, 1\)"):
        load_config(RunConfig, None, ["trainer.adam_betas=[0.9, 1.0]"])


def test_warm_up_then_decay_gives_the_rate_of_each_step(kl_run):
    # Optimizer step k (one per RL step): (k + 1) / 2 while k < 2, then (4 - k) / (4 - 2).
    rates = [kl_run["steps"][n]["lr"] for n in (1, 2, 3, 4)]
    assert rates == pytest.approx([LR * 0.5, LR, LR, LR * 0.5])


def test_log_every_thins_steps_but_keeps_both_dev_evaluations(kl_run):
    rows = _metrics(kl_run["run"])
    train_steps = [r["step"] for r in rows if "reward/total" in r]
    dev_steps = [r["step"] for r in rows if "dev/f1" in r]
    assert train_steps == [3]
    assert dev_steps == [0, 4]  # the final evaluation at step 4, not a multiple of 3
    final = next(r for r in rows if r["step"] == 4)
    assert final["dev/f1"] == kl_run["summary"]["dev_final"]["f1"]


def test_eval_at_start_scores_the_initial_policy_and_the_summary_pairs_it(kl_run):
    run, summary = kl_run["run"], kl_run["summary"]
    start = [json.loads(line) for line in (run / "eval_step0.jsonl").read_text().splitlines()]
    assert len(start) == len(kl_run["trainer"].eval_records) == summary["dev_start"]["questions"]
    mean = sum(r["f1"] for r in start) / len(start)
    assert summary["dev_start"]["f1"] == pytest.approx(mean, abs=1e-4)  # rounded to 4 places
    paired = summary["paired"]["vs_start"]["f1"]
    difference = summary["dev_final"]["f1"] - summary["dev_start"]["f1"]
    assert paired["difference"] == pytest.approx(difference, abs=1e-4)


@pytest.mark.slow
def test_resume_from_a_checkpoint_path_continues_to_the_same_weights(kl_run, tmp_path):
    """A new run folder resumed from the KL run's step-3 checkpoint trains step 4 to the
    weights the KL run ended with."""
    step3 = CheckpointStore(kl_run["run"], 2).root / "step-000003"
    assert step3.is_dir()
    trainer = tiny_trainer(
        tmp_path / "resumed",
        steps=4,
        warmup_steps=2,
        lr_decay=True,
        **ADAM,
        resume=str(step3),
        sections={"algo": {"kl_coef": KL_COEF, "kl_estimator": "k1", "kl_in_reward": True}},
    )
    steps = _recording_steps(trainer)
    trainer.fit()
    assert sorted(steps) == [4]
    assert steps[4]["lr"] == pytest.approx(kl_run["steps"][4]["lr"])
    assert steps[4]["reward/total"] == kl_run["steps"][4]["reward/total"]
    ours, theirs = _weights(trainer.engine.module), _weights(kl_run["trainer"].engine.module)
    assert all(ours[k].equal(theirs[k]) for k in theirs)


@pytest.mark.slow
def test_kl_as_a_loss_term_with_k3(tmp_path):
    trainer = tiny_trainer(
        tmp_path / "run",
        steps=2,
        sections={"algo": {"kl_coef": KL_COEF, "kl_estimator": "k3", "kl_in_reward": False}},
    )
    steps = _recording_steps(trainer)
    per_update = _recording_optimizer_steps(trainer)
    trainer.fit()
    assert steps[1]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert steps[2]["kl"] > 0.0  # k3 is never negative, and the policy moved
    # Behaviour log-probs come from the update's own forward when KL is not in the reward.
    assert [u["clip_fraction"] for u in per_update] == [0.0, 0.0]


@pytest.mark.slow
@pytest.mark.parametrize("old_logprobs", ["recompute", "sampler"])
def test_two_epochs_start_on_policy_then_move(tmp_path, old_logprobs):
    """Epoch 1 of each step starts from the behaviour policy (ratio 1 up to the sampler's
    numerics, so nothing is clipped); epoch 2 sees the moved policy (ratio off 1)."""
    trainer = tiny_trainer(tmp_path / "run", steps=2, ppo_epochs=2, old_logprobs=old_logprobs)
    per_update = _recording_optimizer_steps(trainer)
    steps = _recording_steps(trainer)
    trainer.fit()
    assert len(per_update) == 4 and trainer.engine.global_steps == 4
    first, second = per_update[0::2], per_update[1::2]
    assert all(u["approx_kl"] == pytest.approx(0.0, abs=1e-6) for u in first)
    assert all(u["clip_fraction"] == 0.0 for u in first)
    assert all(u["approx_kl"] > 1e-8 for u in second)
    assert steps[1]["policy_loss"] == pytest.approx(
        (per_update[0]["policy_loss"] + per_update[1]["policy_loss"]) / 2
    )


@pytest.mark.slow
def test_sampler_and_recomputed_logprobs_agree_on_the_first_epoch(tmp_path):
    """With an fp32 generation copy the sampler's log-probs are the trainer's own: the first
    optimizer step is the same update either way."""
    updates = {}
    for mode in ("recompute", "sampler"):
        trainer = tiny_trainer(tmp_path / mode, steps=1, ppo_epochs=2, old_logprobs=mode)
        seen = _recording_optimizer_steps(trainer)
        trainer.fit()
        updates[mode] = seen[0]
    # On policy the loss is minus the mean (whitened, so about 0) advantage.
    assert updates["sampler"]["policy_loss"] == pytest.approx(
        updates["recompute"]["policy_loss"], abs=1e-6
    )
    assert updates["sampler"]["grad_norm"] == pytest.approx(
        updates["recompute"]["grad_norm"], rel=1e-4
    )
    assert updates["sampler"]["approx_kl"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_bf16_generation_copy_with_autocast_trains_fp32_master_weights(tmp_path):
    """The embedded setting: the backend samples from a bf16 copy, the update runs under
    bf16 autocast over fp32 weights, and each sync copies the new weights into the copy."""
    trainer = tiny_trainer(
        tmp_path / "run", steps=2, autocast_bf16=True, sections={"model": {"dtype": "bfloat16"}}
    )
    steps = _recording_steps(trainer)
    trainer.fit()
    master, copy = trainer.engine.module, trainer.gen_model
    assert {p.dtype for p in master.parameters()} == {torch.float32}
    assert {p.dtype for p in copy.parameters()} == {torch.bfloat16}
    for key, value in master.state_dict().items():
        assert copy.state_dict()[key].equal(value.to(torch.bfloat16)), key
    assert all(math.isfinite(steps[n]["grad_norm"]) and steps[n]["grad_norm"] > 0 for n in (1, 2))
    assert all(steps[n]["update/skipped"] == 0.0 for n in (1, 2))


@pytest.mark.slow
def test_max_nonfinite_steps_counts_optimizer_steps(tmp_path):
    """Two epochs of one step, every loss non-finite: the two skipped optimizer steps in a row
    reach max_nonfinite_steps 2 inside the first RL step."""
    trainer = tiny_trainer(tmp_path / "run", steps=3, ppo_epochs=2, max_nonfinite_steps=2)
    trainer.reward = lambda text, golds: RewardResult(math.nan, {}, ())
    per_update = _recording_optimizer_steps(trainer)
    with pytest.raises(TrainingError, match="2 optimizer steps in a row"):
        trainer.fit()
    assert len(per_update) == 1  # the second raised
    assert per_update[0]["update/skipped"] == 1.0
    assert trainer.update.nonfinite_in_a_row == 2
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
