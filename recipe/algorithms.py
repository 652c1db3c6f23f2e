"""The Reinforce++ family as pure tensor functions: advantages, KL estimators, the PPO-clip loss.

Every tensor is a padded batch of shape [B, T] with an `action_mask` (1 = a token the model
sampled, 0 = prompt, padding or a token the environment inserted, such as retrieved passages).
Masked positions never move a statistic and every output is exactly zero there, whatever values
the inputs hold at those positions (NaN and inf included): values are selected with
`torch.where`, never multiplied by the mask.

Advantages (veRL-style registries, selected by `AlgoConfig.advantage`) follow one scheme, as in
OpenRLHF: (1) shape the per-sequence scalar reward with the group statistics of the estimator;
(2) place it on the sequence's LAST action token (OpenRLHF puts it on the final generated token;
the last sampled token is the model's final decision, and inserted tokens are never credited);
(3) add the per-token KL penalty -kl_coef * kl on every action token when KL is applied in the
reward; (4) accumulate returns right to left over action tokens only, so an inserted span in
the middle of a response neither contributes nor breaks or discounts the return;
(5) optionally whiten over all action tokens of the batch. A sample with no action token gets
nothing; its reward still counts in its group's statistics.

Group shaping of the scalar reward r_i of sample i in group g (n_g samples, mean m_g):
- reinforce_pp: r_i (REINFORCE++, arXiv:2501.03262);
- reinforce_pp_baseline: r_i - m_g (REINFORCE++ with a group baseline, R1-Searcher's setting);
- grpo: (r_i - m_g) / (s_g + eps), s_g the unbiased group std (arXiv:2402.03300);
- rloo: r_i - (sum_g - r_i) / (n_g - 1) (arXiv:2402.14740).
A group of one has nothing to compare with: baseline, grpo and rloo give it a zero shaped
reward (baseline and grpo: its mean is its own reward and its std is taken as 0; rloo: the
leave-one-out baseline would be undefined). grpo whitening is left to `AlgoConfig.whiten` like
every estimator; the paper's GRPO does not whiten (set `whiten: false`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import torch

from recipe.registry import lookup, register_in
from recipe.schema import AlgoConfig

_DEFAULTS = AlgoConfig()  # the config's defaults are the functions' defaults: one source

Tensor = torch.Tensor
F = TypeVar("F", bound=Callable)


class UnknownAlgorithmError(ValueError):
    """A registry was asked for a name it does not hold."""


class AdvantageEstimator(Protocol):
    def __call__(
        self,
        rewards: Tensor,
        action_mask: Tensor,
        group_index: Tensor | Sequence[int],
        *,
        kl: Tensor | None = None,
        kl_coef: float = 0.0,
        gamma: float = _DEFAULTS.gamma,
        whiten: bool = _DEFAULTS.whiten,
        whiten_eps: float = _DEFAULTS.whiten_eps,
        grpo_std_eps: float = _DEFAULTS.grpo_std_eps,
    ) -> tuple[Tensor, Tensor]: ...


ADVANTAGE_ESTIMATORS: dict[str, AdvantageEstimator] = {}
KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {}
POLICY_LOSSES: dict[str, Callable[..., tuple[Tensor, dict[str, float]]]] = {}


def register_advantage_estimator(name: str) -> Callable[[F], F]:
    return register_in(ADVANTAGE_ESTIMATORS, "advantage estimator", name)


def register_kl_estimator(name: str) -> Callable[[F], F]:
    return register_in(KL_ESTIMATORS, "KL estimator", name)


def register_policy_loss(name: str) -> Callable[[F], F]:
    return register_in(POLICY_LOSSES, "policy loss", name)


def get_advantage_estimator(name: str) -> AdvantageEstimator:
    return lookup(ADVANTAGE_ESTIMATORS, "advantage estimator", name, UnknownAlgorithmError)


def get_kl_estimator(name: str) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    return lookup(KL_ESTIMATORS, "KL estimator", name, UnknownAlgorithmError)


def get_policy_loss(name: str) -> Callable[..., tuple[Tensor, dict[str, float]]]:
    return lookup(POLICY_LOSSES, "policy loss", name, UnknownAlgorithmError)


# ------------------------------------------------------------------------ masked statistics


def masked_mean(values: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `values` where `mask` is set; an empty mask gives 0 (a loss with no token)."""
    mask = mask.bool()
    total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=dim)
    count = mask.sum(dim=dim).clamp(min=1)
    return total / count


def masked_var(values: Tensor, mask: Tensor) -> Tensor:
    """Population variance of `values` over the set positions of `mask`."""
    centred = values - masked_mean(values, mask)
    return masked_mean(centred * centred, mask)


def masked_whiten(values: Tensor, mask: Tensor, eps: float = _DEFAULTS.whiten_eps) -> Tensor:
    """(x - mean) / sqrt(var + eps) with statistics over the mask; zero outside it."""
    mask = mask.bool()
    whitened = (values - masked_mean(values, mask)) * torch.rsqrt(masked_var(values, mask) + eps)
    return torch.where(mask, whitened, torch.zeros_like(whitened))


# ---------------------------------------------------------------------------- KL estimators


def _log_ratio(logprobs: Tensor, ref_logprobs: Tensor, action_mask: Tensor) -> Tensor:
    """log q - log p (q reference, p policy) on action tokens, exactly 0 elsewhere."""
    mask = action_mask.bool()
    diff = ref_logprobs - logprobs
    return torch.where(mask, diff, torch.zeros_like(diff))


@register_kl_estimator("k1")
def kl_k1(logprobs: Tensor, ref_logprobs: Tensor, action_mask: Tensor) -> Tensor:
    """k1 = log p - log q: unbiased for KL(p || q) on samples from p, high variance."""
    return -_log_ratio(logprobs, ref_logprobs, action_mask)


@register_kl_estimator("k3")
def kl_k3(logprobs: Tensor, ref_logprobs: Tensor, action_mask: Tensor) -> Tensor:
    """k3 = (ratio - 1) - log ratio, ratio = q / p: unbiased, never negative, low variance.

    Schulman, "Approximating KL divergence" (2020); 0 where the mask is 0 (log ratio 0 there).
    """
    log_ratio = _log_ratio(logprobs, ref_logprobs, action_mask)
    return torch.expm1(log_ratio) - log_ratio


def kl_loss(
    logprobs: Tensor,
    ref_logprobs: Tensor,
    action_mask: Tensor,
    estimator: str = _DEFAULTS.kl_estimator,
) -> Tensor:
    """The KL term of the loss (when not in the reward): token-level mean over the mask.

    `policy_objective` multiplies it by `kl_coef`; gradients flow through `logprobs`.
    """
    kl = get_kl_estimator(estimator)(logprobs, ref_logprobs, action_mask)
    return masked_mean(kl, action_mask)


# ------------------------------------------------------------------------ group statistics


def _group_ids(group_index: Tensor | Sequence[int], device: torch.device) -> Tensor:
    """Dense ids 0..G-1 from arbitrary group labels."""
    labels = torch.as_tensor(group_index, device=device)
    return torch.unique(labels, return_inverse=True)[1]


def _group_sum_and_size(rewards: Tensor, ids: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample sum of its group's rewards and the group's size."""
    n_groups = int(ids.max()) + 1 if ids.numel() else 0
    sums = torch.zeros(n_groups, dtype=rewards.dtype, device=rewards.device)
    sums = sums.index_add(0, ids, rewards)
    sizes = torch.bincount(ids, minlength=n_groups).to(rewards.dtype)
    return sums[ids], sizes[ids]


def group_mean(rewards: Tensor, group_index: Tensor | Sequence[int]) -> Tensor:
    """Mean reward of each sample's group, broadcast back to the samples, shape [B]."""
    sums, sizes = _group_sum_and_size(rewards, _group_ids(group_index, rewards.device))
    return sums / sizes


def group_std(rewards: Tensor, group_index: Tensor | Sequence[int]) -> Tensor:
    """Unbiased (Bessel) std of each sample's group, shape [B]; 0 for a group of one."""
    ids = _group_ids(group_index, rewards.device)
    deviation = rewards - group_mean(rewards, group_index)
    squares, sizes = _group_sum_and_size(deviation * deviation, ids)
    return torch.sqrt(squares / (sizes - 1).clamp(min=1))


# ---------------------------------------------------------------------- token-level returns


def last_action_index(action_mask: Tensor) -> Tensor:
    """Index of each row's last action token, -1 for a row without one; shape [B]."""
    mask = action_mask.bool()
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, torch.full_like(positions, -1)).max(dim=1).values


def token_rewards(
    sequence_rewards: Tensor,
    action_mask: Tensor,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
) -> Tensor:
    """Per-token rewards: the scalar on the last action token, minus kl_coef * kl per token."""
    mask = action_mask.bool()
    dtype = sequence_rewards.dtype
    per_token = torch.zeros(mask.shape, dtype=dtype, device=mask.device)
    last = last_action_index(mask)
    rows = torch.nonzero(last >= 0).squeeze(1)
    per_token[rows, last[rows]] = sequence_rewards[rows]
    if kl is not None and kl_coef != 0.0:
        penalty = torch.where(mask, kl.to(dtype), torch.zeros_like(per_token))
        per_token = per_token - kl_coef * penalty
    return per_token


def action_returns(
    per_token: Tensor, action_mask: Tensor, gamma: float = _DEFAULTS.gamma
) -> Tensor:
    """G_t = r_t + gamma * G_next over action tokens only; inserted tokens are skipped, not
    discounted, and get 0."""
    mask = action_mask.bool()
    returns = torch.zeros_like(per_token)
    running = torch.zeros_like(per_token[:, 0])
    for t in reversed(range(per_token.shape[1])):
        running = torch.where(mask[:, t], per_token[:, t] + gamma * running, running)
        returns[:, t] = torch.where(mask[:, t], running, torch.zeros_like(running))
    return returns


def _advantages_from_scalar(
    shaped: Tensor,
    action_mask: Tensor,
    kl: Tensor | None,
    kl_coef: float,
    gamma: float,
    whiten: bool,
    whiten_eps: float,
) -> tuple[Tensor, Tensor]:
    returns = action_returns(token_rewards(shaped, action_mask, kl, kl_coef), action_mask, gamma)
    advantages = masked_whiten(returns, action_mask, whiten_eps) if whiten else returns.clone()
    return advantages, returns


def _float_rewards(rewards: Tensor | Sequence[float], action_mask: Tensor) -> Tensor:
    rewards = torch.as_tensor(rewards, device=action_mask.device)
    return rewards if rewards.is_floating_point() else rewards.float()


# -------------------------------------------------------------------- advantage estimators


@register_advantage_estimator("reinforce_pp")
def reinforce_pp(
    rewards: Tensor | Sequence[float],
    action_mask: Tensor,
    group_index: Tensor | Sequence[int],
    *,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = _DEFAULTS.gamma,
    whiten: bool = _DEFAULTS.whiten,
    whiten_eps: float = _DEFAULTS.whiten_eps,
    grpo_std_eps: float = _DEFAULTS.grpo_std_eps,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++ (arXiv:2501.03262): the raw reward, KL-shaped returns, batch whitening."""
    shaped = _float_rewards(rewards, action_mask)
    return _advantages_from_scalar(shaped, action_mask, kl, kl_coef, gamma, whiten, whiten_eps)


@register_advantage_estimator("reinforce_pp_baseline")
def reinforce_pp_baseline(
    rewards: Tensor | Sequence[float],
    action_mask: Tensor,
    group_index: Tensor | Sequence[int],
    *,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = _DEFAULTS.gamma,
    whiten: bool = _DEFAULTS.whiten,
    whiten_eps: float = _DEFAULTS.whiten_eps,
    grpo_std_eps: float = _DEFAULTS.grpo_std_eps,
) -> tuple[Tensor, Tensor]:
    """REINFORCE++ with the group-mean baseline r_i - mean_g (R1-Searcher's setting)."""
    scalar = _float_rewards(rewards, action_mask)
    shaped = scalar - group_mean(scalar, group_index)
    return _advantages_from_scalar(shaped, action_mask, kl, kl_coef, gamma, whiten, whiten_eps)


@register_advantage_estimator("grpo")
def grpo(
    rewards: Tensor | Sequence[float],
    action_mask: Tensor,
    group_index: Tensor | Sequence[int],
    *,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = _DEFAULTS.gamma,
    whiten: bool = _DEFAULTS.whiten,
    whiten_eps: float = _DEFAULTS.whiten_eps,
    grpo_std_eps: float = _DEFAULTS.grpo_std_eps,
) -> tuple[Tensor, Tensor]:
    """GRPO outcome supervision (arXiv:2402.03300): (r_i - mean_g) / (std_g + eps) on every
    action token when gamma = 1 and KL is not in the reward (GRPO puts KL in the loss)."""
    scalar = _float_rewards(rewards, action_mask)
    shaped = (scalar - group_mean(scalar, group_index)) / (
        group_std(scalar, group_index) + grpo_std_eps
    )
    return _advantages_from_scalar(shaped, action_mask, kl, kl_coef, gamma, whiten, whiten_eps)


@register_advantage_estimator("rloo")
def rloo(
    rewards: Tensor | Sequence[float],
    action_mask: Tensor,
    group_index: Tensor | Sequence[int],
    *,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
    gamma: float = _DEFAULTS.gamma,
    whiten: bool = _DEFAULTS.whiten,
    whiten_eps: float = _DEFAULTS.whiten_eps,
    grpo_std_eps: float = _DEFAULTS.grpo_std_eps,
) -> tuple[Tensor, Tensor]:
    """RLOO (arXiv:2402.14740): r_i minus the mean reward of the other samples of its group."""
    scalar = _float_rewards(rewards, action_mask)
    sums, sizes = _group_sum_and_size(scalar, _group_ids(group_index, scalar.device))
    others = (sums - scalar) / (sizes - 1).clamp(min=1)
    shaped = torch.where(sizes > 1, scalar - others, torch.zeros_like(scalar))
    return _advantages_from_scalar(shaped, action_mask, kl, kl_coef, gamma, whiten, whiten_eps)


def compute_advantages(
    algo_cfg: AlgoConfig,
    rewards: Tensor | Sequence[float],
    action_mask: Tensor,
    group_index: Tensor | Sequence[int],
    logprobs: Tensor | None = None,
    ref_logprobs: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(advantages, returns), both [B, T] and zero outside the action mask.

    `logprobs` are the sampling policy's (detached) token log-probs, `ref_logprobs` the
    reference model's; they are needed only when KL is applied in the reward.
    """
    kl = None
    if algo_cfg.kl_in_reward and algo_cfg.kl_coef != 0.0:
        if logprobs is None or ref_logprobs is None:
            raise ValueError(
                "algo.kl_in_reward with a non-zero algo.kl_coef needs logprobs and ref_logprobs"
            )
        kl = get_kl_estimator(algo_cfg.kl_estimator)(logprobs, ref_logprobs, action_mask)
    estimator = get_advantage_estimator(algo_cfg.advantage)
    return estimator(
        rewards,
        action_mask,
        group_index,
        kl=kl,
        kl_coef=algo_cfg.kl_coef,
        gamma=algo_cfg.gamma,
        whiten=algo_cfg.whiten,
        whiten_eps=algo_cfg.whiten_eps,
        grpo_std_eps=algo_cfg.grpo_std_eps,
    )


# ----------------------------------------------------------------------------- policy loss


@register_policy_loss("ppo_clip")
def ppo_clip_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    action_mask: Tensor,
    clip_eps: float = _DEFAULTS.clip_eps,
) -> tuple[Tensor, dict[str, float]]:
    """PPO-clip (arXiv:1707.06347): -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A),
    token-level mean over the action mask.

    Diagnostics: `clip_fraction`, the share of action tokens where the clipped term is the
    smaller one (their gradient is zero); `approx_kl`, k3 of KL(old || new) on the sampled
    tokens, (ratio - 1) - log ratio with ratio = new / old.
    """
    mask = action_mask.bool()
    log_ratio = torch.where(mask, logprobs - old_logprobs, torch.zeros_like(logprobs))
    ratio = torch.exp(log_ratio)
    safe_advantages = torch.where(mask, advantages, torch.zeros_like(advantages))
    unclipped = ratio * safe_advantages
    clipped = torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * safe_advantages
    loss = masked_mean(-torch.minimum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped < unclipped).to(ratio.dtype), mask)
        approx_kl = masked_mean(torch.expm1(log_ratio) - log_ratio, mask)
    return loss, {"clip_fraction": clip_fraction.item(), "approx_kl": approx_kl.item()}


def policy_objective(
    algo_cfg: AlgoConfig,
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    action_mask: Tensor,
    ref_logprobs: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The loss of one micro-batch: the registered policy loss, plus kl_coef x KL(policy ||
    reference) when KL is a loss term (`kl_in_reward` false). With a reference, the
    diagnostics carry its `kl` whichever way it is applied."""
    loss, diagnostics = get_policy_loss(algo_cfg.policy_loss)(
        logprobs, old_logprobs, advantages, action_mask, algo_cfg.clip_eps
    )
    if ref_logprobs is None:
        return loss, diagnostics
    kl = kl_loss(logprobs, ref_logprobs, action_mask, algo_cfg.kl_estimator)
    if not algo_cfg.kl_in_reward:
        loss = loss + algo_cfg.kl_coef * kl
    return loss, {**diagnostics, "kl": float(kl.detach())}
