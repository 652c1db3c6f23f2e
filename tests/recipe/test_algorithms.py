"""The Reinforce++ family against its formulas on hand-made tensors, and masked-token invariance.

Numbers are small enough to check by hand; each expected value is worked out in a comment.
"""

from __future__ import annotations

import math
import typing

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recipe import algorithms as alg
from recipe.schema import AlgoConfig

NAN, INF = float("nan"), float("inf")
ESTIMATORS = ["reinforce_pp", "reinforce_pp_baseline", "grpo", "rloo"]
GROUP_ESTIMATORS = ["reinforce_pp_baseline", "grpo", "rloo"]


def f64(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def bools(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)


def assert_close(actual: torch.Tensor, expected, atol: float = 1e-9) -> None:
    torch.testing.assert_close(actual, f64(expected), rtol=0, atol=atol)


# ------------------------------------------------------------------------ masked statistics


def test_masked_mean_sees_only_masked_positions():
    values = f64([[1.0, NAN, 3.0], [INF, 5.0, -INF]])
    mask = bools([[1, 0, 1], [0, 1, 0]])
    assert alg.masked_mean(values, mask).item() == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    assert_close(alg.masked_mean(values, mask, dim=1), [2.0, 5.0])
    assert alg.masked_mean(values, torch.zeros_like(mask)).item() == 0.0  # empty: no NaN


def test_masked_whiten_by_hand_and_garbage_free():
    mask = bools([[1, 1, 0], [1, 1, 0]])
    clean = alg.masked_whiten(f64([[1.0, 2.0, 99.0], [3.0, 4.0, -99.0]]), mask, eps=0.0)
    dirty = alg.masked_whiten(f64([[1.0, 2.0, NAN], [3.0, 4.0, INF]]), mask, eps=0.0)
    # action values 1, 2, 3, 4: mean 2.5, population variance 1.25, sqrt(1.25) = 1.118034
    expected = [[-1.341641, -0.447214, 0.0], [0.447214, 1.341641, 0.0]]
    assert_close(clean, expected, atol=1e-6)
    assert torch.equal(clean, dirty)
    assert alg.masked_mean(clean, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert alg.masked_var(clean, mask).item() == pytest.approx(1.0)


# ---------------------------------------------------------------------------- KL estimators


def test_k1_and_k3_values():
    # token 0: p = 0.5, q = 0.25; token 1: p = 0.25, q = 0.5; token 2 masked with garbage
    logprobs = f64([[math.log(0.5), math.log(0.25), NAN]])
    ref_logprobs = f64([[math.log(0.25), math.log(0.5), -INF]])
    mask = bools([[1, 1, 0]])
    # k1 = log p - log q = +-log 2
    assert_close(alg.kl_k1(logprobs, ref_logprobs, mask), [[0.693147, -0.693147, 0.0]], 1e-6)
    # k3 = (q/p - 1) - log(q/p): (0.5 - 1) + log 2 = 0.193147; (2 - 1) - log 2 = 0.306853
    assert_close(alg.kl_k3(logprobs, ref_logprobs, mask), [[0.193147, 0.306853, 0.0]], 1e-6)
    assert alg.kl_loss(logprobs, ref_logprobs, mask, "k3").item() == pytest.approx(0.25)
    assert alg.kl_loss(logprobs, ref_logprobs, mask, "k1").item() == pytest.approx(0.0)


def test_kl_loss_gradient_reaches_only_action_tokens():
    logprobs = f64([[-0.7, -1.2, -3.0]]).requires_grad_()
    alg.kl_loss(logprobs, f64([[-1.0, -1.0, NAN]]), bools([[1, 1, 0]]), "k3").backward()
    # d/dlogp of mean((e^(q-p) - 1) - (q-p)) = (1 - e^(q-p)) / 2 per action token
    expected = [[(1 - math.exp(-0.3)) / 2, (1 - math.exp(0.2)) / 2, 0.0]]
    assert_close(logprobs.grad, expected)


# -------------------------------------------------------------------- advantage estimators


def test_reinforce_pp_kl_in_reward_and_returns_over_action_tokens_by_hand():
    # row 0: prompt, action, inserted, action, action; reward 1; k1 = 0.2, 0.4, 0.6 on actions
    # row 1: two actions then padding; reward 2; k1 = 0
    mask = bools([[0, 1, 0, 1, 1], [1, 1, 0, 0, 0]])
    logprobs = f64([[NAN, -1.0, INF, -1.0, -1.0], [-1.0, -1.0, NAN, NAN, NAN]])
    ref_logprobs = f64([[-INF, -1.2, NAN, -1.4, -1.6], [-1.0, -1.0, 7.0, 7.0, 7.0]])
    cfg = AlgoConfig(
        advantage="reinforce_pp", kl_estimator="k1", kl_coef=0.5, gamma=0.5, whiten=False
    )
    advantages, returns = alg.compute_advantages(
        cfg, f64([1.0, 2.0]), mask, [0, 1], logprobs, ref_logprobs
    )
    # token rewards row 0: -0.1, -0.2, -0.3 + 1 = 0.7 (reward on the last action token)
    # G4 = 0.7; G3 = -0.2 + 0.5 * 0.7 = 0.15; G1 = -0.1 + 0.5 * 0.15 = -0.025 (the inserted
    # token 2 is skipped, not discounted); row 1: G1 = 2, G0 = 0 + 0.5 * 2 = 1
    expected = [[0.0, -0.025, 0.0, 0.15, 0.7], [1.0, 2.0, 0.0, 0.0, 0.0]]
    assert_close(returns, expected)
    assert_close(advantages, expected)


def test_kl_as_loss_term_leaves_the_reward_alone():
    mask = bools([[1, 1]])
    cfg = AlgoConfig(advantage="reinforce_pp", kl_in_reward=False, kl_coef=0.5, whiten=False)
    _, returns = alg.compute_advantages(cfg, f64([1.0]), mask, [0], f64([[0.0, 0.0]]), None)
    assert_close(returns, [[1.0, 1.0]])


def test_kl_in_reward_needs_log_probs():
    cfg = AlgoConfig(kl_in_reward=True, kl_coef=0.1)
    with pytest.raises(ValueError, match="ref_logprobs"):
        alg.compute_advantages(cfg, f64([1.0]), bools([[1]]), [0])


def test_reinforce_pp_baseline_subtracts_the_group_mean():
    # groups labelled 7 (rewards 3, 1, 2: mean 2) and 9 (one sample: its own mean)
    mask = bools([[1, 1]] * 4)
    advantages, _ = alg.reinforce_pp_baseline(
        f64([3.0, 1.0, 2.0, 5.0]), mask, [7, 7, 7, 9], whiten=False
    )
    assert_close(advantages, [[1.0, 1.0], [-1.0, -1.0], [0.0, 0.0], [0.0, 0.0]])


def test_grpo_group_mean_and_unbiased_std():
    # group 0: rewards 1, 0, 0, 1 -> mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = sqrt(1/3)
    # group 1: a single sample -> std taken as 0, advantage 0
    mask = bools([[1, 0, 1]] * 5)
    eps = 1e-6
    advantages, _ = alg.grpo(
        f64([1.0, 0.0, 0.0, 1.0, 4.0]), mask, [0, 0, 0, 0, 1], whiten=False, grpo_std_eps=eps
    )
    a = 0.5 / (math.sqrt(1 / 3) + eps)  # 0.866024...
    assert_close(advantages, [[a, 0, a], [-a, 0, -a], [-a, 0, -a], [a, 0, a], [0, 0, 0]])


def test_rloo_leave_one_out_baseline():
    # group 0: 3 - (1 + 2) / 2 = 1.5; 1 - (3 + 2) / 2 = -1.5; 2 - (3 + 1) / 2 = 0
    mask = bools([[1]] * 4)
    advantages, _ = alg.rloo(f64([3.0, 1.0, 2.0, 5.0]), mask, [0, 0, 0, 1], whiten=False)
    assert_close(advantages, [[1.5], [-1.5], [0.0], [0.0]])


@pytest.mark.parametrize("name", GROUP_ESTIMATORS)
def test_identical_rewards_in_a_group_give_zero_advantage(name):
    mask = bools([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]])
    rewards = f64([0.7, 0.7, 0.7, -2.0])
    advantages, returns = alg.get_advantage_estimator(name)(
        rewards, mask, [0, 0, 0, 1], whiten=False
    )
    # zero up to the rounding of the group mean (3 * 0.7 / 3 is not exactly 0.7)
    assert_close(advantages, [[0.0] * 3] * 4)
    assert_close(returns, [[0.0] * 3] * 4)


@pytest.mark.parametrize("name", ESTIMATORS)
def test_whitening_gives_mean_zero_std_one_over_action_tokens(name):
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(6, 9, generator=generator) < 0.6
    rewards = torch.randn(6, generator=generator, dtype=torch.float64)
    advantages, returns = alg.get_advantage_estimator(name)(rewards, mask, [0, 0, 0, 1, 1, 1])
    assert alg.masked_mean(advantages, mask).item() == pytest.approx(0.0, abs=1e-9)
    assert alg.masked_var(advantages, mask).item() == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(advantages[~mask], torch.zeros_like(advantages[~mask]))
    assert alg.masked_var(returns, mask).item() != pytest.approx(1.0)  # returns stay raw


@pytest.mark.parametrize("name", ESTIMATORS)
def test_inserted_tokens_in_the_middle_do_not_change_action_outputs(name):
    cfg = AlgoConfig(advantage=name, kl_estimator="k3", kl_coef=0.3, gamma=0.9)
    logprobs = f64([[-0.5, -1.0, -0.2, -2.0], [-0.1, -0.3, -0.9, -1.5]])
    ref_logprobs = f64([[-0.7, -0.6, -0.4, -1.0], [-0.2, -0.2, -1.1, -1.0]])
    rewards, groups = f64([1.0, 0.0]), [0, 0]
    plain = alg.compute_advantages(
        cfg, rewards, bools([[1] * 4] * 2), groups, logprobs, ref_logprobs
    )
    # three inserted (masked) tokens with garbage log-probs between actions 1 and 2
    garbage = f64([[NAN, INF, -INF]] * 2)
    spliced_lp = torch.cat([logprobs[:, :2], garbage, logprobs[:, 2:]], dim=1)
    spliced_ref = torch.cat([ref_logprobs[:, :2], -garbage, ref_logprobs[:, 2:]], dim=1)
    spliced_mask = bools([[1, 1, 0, 0, 0, 1, 1]] * 2)
    spliced = alg.compute_advantages(cfg, rewards, spliced_mask, groups, spliced_lp, spliced_ref)
    for before, after in zip(plain, spliced, strict=True):
        torch.testing.assert_close(after[:, spliced_mask[0]], before, rtol=0, atol=1e-12)
        assert torch.equal(after[:, 2:5], torch.zeros(2, 3, dtype=torch.float64))


# ----------------------------------------------------------------------------- policy loss


def test_ppo_clip_loss_clip_fraction_and_approx_kl_by_hand():
    # ratios 1.5, 0.5, 1.1, 0.5 with advantages +1, -1, +1, +1 and eps 0.2; token 4 masked
    ratios, advantages = [1.5, 0.5, 1.1, 0.5], [1.0, -1.0, 1.0, 1.0]
    old = f64([[-1.0, -2.0, -0.5, -1.5, NAN]])
    new_values = [o + math.log(r) for o, r in zip(old[0, :4].tolist(), ratios, strict=True)]
    logprobs = f64([new_values + [INF]]).requires_grad_()
    mask = bools([[1, 1, 1, 1, 0]])
    loss, metrics = alg.ppo_clip_loss(logprobs, old, f64([advantages + [NAN]]), mask, clip_eps=0.2)
    # per token -min(r A, clip(r) A): -min(1.5, 1.2) = -1.2 (clipped); -min(-0.5, -0.8) = 0.8
    # (clipped); -min(1.1, 1.1) = -1.1; -min(0.5, 0.8) = -0.5 -> mean -0.5, clip fraction 2/4
    assert loss.item() == pytest.approx(-0.5)
    assert metrics["clip_fraction"] == pytest.approx(0.5)
    # (r - 1) - log r: 0.094535, 0.193147, 0.004690, 0.193147 -> mean 0.121380
    assert metrics["approx_kl"] == pytest.approx(0.121380, abs=1e-6)
    loss.backward()
    # clipped tokens get no gradient; unclipped: d(-r A / 4)/dlogp = -r A / 4
    assert_close(logprobs.grad, [[0.0, 0.0, -1.1 / 4, -0.5 / 4, 0.0]])


def test_ppo_clip_loss_on_policy_is_minus_mean_advantage():
    logprobs = f64([[-1.0, -2.0, -3.0]])
    loss, metrics = alg.ppo_clip_loss(
        logprobs, logprobs, f64([[2.0, -1.0, 5.0]]), bools([[1, 1, 0]])
    )
    assert loss.item() == pytest.approx(-0.5)  # -(2 - 1) / 2
    assert metrics == {"clip_fraction": 0.0, "approx_kl": 0.0}


# -------------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("getter", "known"),
    [
        (alg.get_advantage_estimator, ESTIMATORS),
        (alg.get_kl_estimator, ["k1", "k3"]),
        (alg.get_policy_loss, ["ppo_clip"]),
    ],
)
def test_unknown_names_raise_listing_the_known_ones(getter, known):
    with pytest.raises(alg.UnknownAlgorithmError, match="'nope'") as error:
        getter("nope")
    for name in known:
        assert name in str(error.value)


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        alg.register_kl_estimator("k1")(alg.kl_k3)


def test_every_config_choice_is_registered():
    hints = typing.get_type_hints(AlgoConfig)
    assert set(typing.get_args(hints["advantage"])) == set(alg.ADVANTAGE_ESTIMATORS)
    assert set(typing.get_args(hints["kl_estimator"])) == set(alg.KL_ESTIMATORS)
    assert set(typing.get_args(hints["policy_loss"])) == set(alg.POLICY_LOSSES)


# ---------------------------------------------------------------------- masked-garbage laws


@st.composite
def batches(draw):
    rows, cols = draw(st.integers(1, 5)), draw(st.integers(1, 7))

    def grid(elements):
        return draw(
            st.lists(st.lists(elements, min_size=cols, max_size=cols), min_size=rows, max_size=rows)
        )

    mask = bools(grid(st.booleans()))
    logprobs = f64(grid(st.floats(-5.0, 0.0)))
    ref_logprobs = f64(grid(st.floats(-5.0, 0.0)))
    rewards = f64(draw(st.lists(st.floats(-3.0, 3.0), min_size=rows, max_size=rows)))
    groups = draw(st.lists(st.integers(0, 2), min_size=rows, max_size=rows))
    garbage = f64(grid(st.sampled_from([NAN, INF, -INF, 1e30, -7.0])))
    return mask, logprobs, ref_logprobs, rewards, groups, garbage


def _config(name: str) -> AlgoConfig:
    return AlgoConfig(advantage=name, kl_estimator="k3", kl_coef=0.2, gamma=0.95)


@settings(max_examples=30, deadline=None)
@given(batch=batches(), name=st.sampled_from(ESTIMATORS))
def test_garbage_at_masked_positions_changes_nothing(batch, name):
    mask, logprobs, ref_logprobs, rewards, groups, garbage = batch
    clean = alg.compute_advantages(_config(name), rewards, mask, groups, logprobs, ref_logprobs)
    dirty_lp = torch.where(mask, logprobs, garbage)
    dirty_ref = torch.where(mask, ref_logprobs, -garbage)
    dirty = alg.compute_advantages(_config(name), rewards, mask, groups, dirty_lp, dirty_ref)
    for a, b in zip(clean, dirty, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
        assert torch.equal(b[~mask], torch.zeros_like(b[~mask]))
    loss, metrics = alg.ppo_clip_loss(logprobs, ref_logprobs, clean[0], mask)
    dirty_advantages = torch.where(mask, clean[0], garbage)
    dirty_loss, dirty_metrics = alg.ppo_clip_loss(dirty_lp, dirty_ref, dirty_advantages, mask)
    assert dirty_loss.item() == pytest.approx(loss.item(), abs=1e-9)
    assert dirty_metrics == pytest.approx(metrics, abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(batch=batches(), name=st.sampled_from(ESTIMATORS), at=st.integers(0, 7))
def test_a_masked_column_inserted_anywhere_changes_no_action_output(batch, name, at):
    mask, logprobs, ref_logprobs, rewards, groups, garbage = batch
    at = min(at, mask.shape[1])
    before = alg.compute_advantages(_config(name), rewards, mask, groups, logprobs, ref_logprobs)

    def insert(tensor, column):
        return torch.cat([tensor[:, :at], column, tensor[:, at:]], dim=1)

    column = garbage[:, :1]
    wider_mask = insert(mask, torch.zeros_like(mask[:, :1]))
    after = alg.compute_advantages(
        _config(name),
        rewards,
        wider_mask,
        groups,
        insert(logprobs, column),
        insert(ref_logprobs, column),
    )
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(
            torch.cat([b[:, :at], b[:, at + 1 :]], dim=1), a, rtol=0, atol=1e-9
        )
        assert torch.equal(b[:, at], torch.zeros_like(b[:, at]))


@settings(max_examples=30, deadline=None)
@given(batch=batches())
def test_k3_is_never_negative(batch):
    mask, logprobs, ref_logprobs, *_ = batch
    assert bool((alg.kl_k3(logprobs, ref_logprobs, mask) >= 0).all())
