"""Per-step statistics of the rollouts: rewards, searching, format, stops, lengths.

Besides the scalars every RL library logs, the monitors that catch the failures users report
of search agents: a policy that stops searching (`search/calls_per_sample`,
`search/answered_without_search`), one that searches but cannot use what it finds
(`search/answer_in_documents`: a gold answer occurs in the passages it was given), and reward
hacking through the format (`format/violation/<rule>` for each rule of the checker, and
`rollout/stop/<reason>` for each way a trajectory ends).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from recipe.rollout import Trajectory, answer_in_documents
from rewards.format import check_format
from rewards.spec import RewardConfig, TagsConfig
from rewards.stage import RewardResult


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def group_metrics(
    trajectories: Sequence[Trajectory], results: Sequence[RewardResult]
) -> dict[str, float]:
    """The spread of rewards inside each question's group (samples of one record, as the
    batch groups them): `reward/group_std`, the mean over groups of their population std, and
    `reward/groups_all_equal`, the fraction of groups whose rewards are all equal, which a group
    baseline turns into zero advantages: they carry no gradient."""
    groups: dict[str, list[float]] = {}
    for t, r in zip(trajectories, results, strict=True):
        groups.setdefault(t.record_id, []).append(float(r.total))
    stds, equal = [], []
    for rewards in groups.values():
        mean = sum(rewards) / len(rewards)
        stds.append((sum((x - mean) ** 2 for x in rewards) / len(rewards)) ** 0.5)
        equal.append(float(max(rewards) - min(rewards) == 0.0))
    return {"reward/group_std": _mean(stds), "reward/groups_all_equal": _mean(equal)}


def rollout_metrics(
    trajectories: Sequence[Trajectory],
    results: Sequence[RewardResult],
    tags: TagsConfig,
    reward_cfg: RewardConfig,
) -> dict[str, float]:
    n = len(trajectories)
    out: dict[str, float] = {"reward/total": _mean([r.total for r in results])}
    out.update(group_metrics(trajectories, results))
    for name in sorted({k for r in results for k in r.parts}):
        out[f"reward/{name}"] = _mean([r.parts.get(name, 0.0) for r in results])
    reports = [
        r.format if r.format is not None else check_format(t.response_text, tags, rules=reward_cfg)
        for t, r in zip(trajectories, results, strict=True)
    ]
    out["reward/format_valid"] = _mean([float(r.valid) for r in reports])
    searched = [t for t in trajectories if t.n_searches > 0]
    out["search/calls_per_sample"] = _mean([float(t.n_searches) for t in trajectories])
    out["search/samples_searching"] = len(searched) / n
    out["search/answer_in_documents"] = _mean(
        [float(answer_in_documents(t, reward_cfg.metric_profile)) for t in searched]
    )
    out["search/answered_without_search"] = _mean(
        [
            float(bool(r.answer) and t.n_searches == 0)
            for t, r in zip(trajectories, reports, strict=True)
        ]
    )
    violations = Counter(v for r in reports for v in r.violations)
    for rule, count in sorted(violations.items()):
        out[f"format/violation/{rule}"] = count / n
    stops = Counter(t.stop_reason for t in trajectories)
    for reason, count in sorted(stops.items()):
        out[f"rollout/stop/{reason}"] = count / n
    sampled = [sum(t.action_mask) for t in trajectories]
    total = [len(t.action_mask) for t in trajectories]
    out["response_length/mean"] = _mean([float(s) for s in sampled])
    out["response_length/max"] = float(max(sampled, default=0))
    out["masked_token_fraction"] = 1.0 - sum(sampled) / max(1, sum(total))
    return out
