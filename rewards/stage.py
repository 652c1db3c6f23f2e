"""Stage rewards, registered by name and built from the YAML weights in `RewardConfig`.

R1-Searcher (arXiv:2503.05592, section 3.1) trains in two stages:

- ``stage1`` (learn to search): w_retrieval * [at least one well-formed query]
  + w_format * [the whole response is well formed] + w_answer * cover-EM(answer).
  The paper uses 0.5 / 0.5 and does not score the answer (w_answer = 0); the released Llama
  stage-1 recipe scored the answer (w_answer = 1).
- ``stage2`` (learn to answer): F1(answer, golds), 0 without an answer, plus format_penalty
  (-2 in the paper) when the response is malformed. Two optional penalties, 0 by default,
  discourage answer avoidance (Search-R1++): no_search_penalty when no well-formed query was
  made, no_answer_penalty when there is no non-empty answer.

A reward is called as ``reward(response_text, golds) -> RewardResult``. `parts` holds every
term that sums to `total` (names in `RewardResult.terms`) and diagnostics that do not
(valid, n_queries, em, cover_em, f1, has_answer), all as floats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rewards.format import FormatReport, check_format
from rewards.metrics import cover_exact_match, exact_match, f1_score
from rewards.spec import RewardConfig, TagsConfig


@dataclass
class RewardResult:
    total: float
    parts: dict[str, float]
    terms: tuple[str, ...] = field(default=())  # the keys of `parts` that sum to `total`
    # The format checker's report the reward was computed from, so the monitors reuse it
    # instead of checking each response again (None from a reward that checks no format).
    format: FormatReport | None = None


Reward = Callable[[str, Sequence[str]], RewardResult]
REWARDS: dict[str, type] = {}


def register_reward(name: str) -> Callable[[type], type]:
    """Class decorator: `cls(reward_cfg, tags)` builds the reward called `name`."""

    def decorator(cls: type) -> type:
        if name in REWARDS:
            raise ValueError(f"reward {name!r} is already registered")
        REWARDS[name] = cls
        return cls

    return decorator


def build_reward(reward_cfg: RewardConfig, tags: TagsConfig | None = None) -> Reward:
    """The registered reward named `reward_cfg.name`, with its weights."""
    if reward_cfg.name not in REWARDS:
        raise ValueError(f"unknown reward {reward_cfg.name!r}; known: {', '.join(sorted(REWARDS))}")
    cls = REWARDS[reward_cfg.name]
    return cls(reward_cfg, TagsConfig() if tags is None else tags)


def _result(
    terms: dict[str, float], diagnostics: dict[str, float], report: FormatReport
) -> RewardResult:
    return RewardResult(
        total=float(sum(terms.values())),
        parts={**{k: float(v) for k, v in terms.items()}, **diagnostics},
        terms=tuple(terms),
        format=report,
    )


@dataclass(frozen=True)
class _StageReward:
    """Shared by the stage rewards: the format report and the answer metrics of a response."""

    cfg: RewardConfig
    tags: TagsConfig

    def inspect(self, response: str, golds: Sequence[str]) -> tuple[FormatReport, dict]:
        report = check_format(response, self.tags, rules=self.cfg)
        has_answer = bool(report.answer)
        profile = self.cfg.metric_profile
        answer = report.answer or ""
        diagnostics = {
            "valid": float(report.valid),
            "n_queries": float(report.n_queries),
            "has_answer": float(has_answer),
            "em": exact_match(answer, golds, profile) if has_answer else 0.0,
            "cover_em": cover_exact_match(answer, golds, profile) if has_answer else 0.0,
            "f1": f1_score(answer, golds, profile) if has_answer else 0.0,
        }
        return report, diagnostics


@register_reward("stage1")
class Stage1Reward(_StageReward):
    def __call__(self, response: str, golds: Sequence[str]) -> RewardResult:
        report, diag = self.inspect(response, golds)
        terms = {
            "retrieval": self.cfg.w_retrieval * (report.n_queries >= 1),
            "format": self.cfg.w_format * report.valid,
            "answer": self.cfg.w_answer * diag["cover_em"],
        }
        return _result(terms, diag, report)


@register_reward("stage2")
class Stage2Reward(_StageReward):
    def __call__(self, response: str, golds: Sequence[str]) -> RewardResult:
        report, diag = self.inspect(response, golds)
        terms = {
            "f1": diag.pop("f1"),
            "format_penalty": 0.0 if report.valid else self.cfg.format_penalty,
            "no_search_penalty": self.cfg.no_search_penalty if report.n_queries == 0 else 0.0,
            "no_answer_penalty": 0.0 if diag["has_answer"] else self.cfg.no_answer_penalty,
        }
        return _result(terms, diag, report)
