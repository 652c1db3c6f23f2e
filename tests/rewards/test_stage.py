"""Stage rewards: the numbers the YAML weights give, term by term."""

from __future__ import annotations

from pathlib import Path

import pytest

from recipe.config import load_config
from recipe.schema import RewardConfig, RunConfig, TagsConfig
from rewards.stage import REWARDS, RewardResult, build_reward, register_reward

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
T = TagsConfig()


def transcript(queries: list[str], answer: str | None, tags: TagsConfig = T) -> str:
    body = "I should search."
    for q in queries:
        block = f"\n\n{tags.begin_docs}\n(1)Some passage about {q}.\n{tags.end_docs}\n\n"
        body += f"{tags.begin_query}{q}{tags.end_query}{block}Next."
    body += f" Done.{tags.think_end}"
    if answer is not None:
        body += f"\n{tags.answer_start}{answer}{tags.answer_end}"
    return body


VALID_WITH_QUERY = transcript(["Eiffel Tower height"], "330 metres")
VALID_NO_QUERY = transcript([], "330 metres")
INVALID_WITH_QUERY = transcript(["Eiffel Tower height"], " ".join(["long"] * 30))
INVALID_NO_QUERY = "I give up."


def reward_from(setting: str, stage: str, *overrides: str):
    cfg = load_config(RunConfig, CONFIGS / setting / f"{stage}.yaml", overrides)
    return build_reward(cfg.reward, cfg.tags)


def assert_consistent(result: RewardResult) -> None:
    assert result.total == pytest.approx(sum(result.parts[t] for t in result.terms))
    assert all(isinstance(v, float) for v in result.parts.values())


@pytest.mark.parametrize("setting", ["embedded", "paper"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID_WITH_QUERY, 1.0),
        (VALID_NO_QUERY, 0.5),
        (INVALID_WITH_QUERY, 0.5),
        (INVALID_NO_QUERY, 0.0),
    ],
)
def test_stage1_totals_from_yaml(setting, text, expected):
    result = reward_from(setting, "stage1")(text, ["330 m"])
    assert result.total == pytest.approx(expected)
    assert result.parts["answer"] == 0.0  # w_answer is 0: the answer is not scored
    assert_consistent(result)


def test_stage1_parts_and_diagnostics():
    result = reward_from("embedded", "stage1")(INVALID_WITH_QUERY, ["330 m"])
    assert result.terms == ("retrieval", "format", "answer")
    assert result.parts["retrieval"] == 0.5
    assert result.parts["format"] == 0.0
    assert result.parts["valid"] == 0.0
    assert result.parts["n_queries"] == 1.0


def test_stage1_answer_weight_scores_cover_em():
    reward = reward_from("embedded", "stage1", "reward.w_answer=1", "reward.w_retrieval=0.25")
    hit = reward(transcript(["q"], "It is 330 metres tall"), ["330 metres"])
    assert hit.parts["cover_em"] == 1.0 and hit.parts["em"] == 0.0
    assert hit.total == pytest.approx(0.25 + 0.5 + 1.0)
    miss = reward(transcript(["q"], "300 metres"), ["330 metres"])
    assert miss.total == pytest.approx(0.25 + 0.5)


@pytest.mark.parametrize("setting", ["embedded", "paper"])
def test_stage2_totals_from_yaml(setting):
    reward = reward_from(setting, "stage2")
    golds = ["330 metres", "1,083 ft"]
    # "330 metres tall" vs "330 metres": p = 2/3, r = 1 -> F1 = 0.8.
    valid = reward(transcript(["q"], "330 metres tall"), golds)
    assert valid.total == pytest.approx(0.8)
    assert valid.parts["format_penalty"] == 0.0
    exact = reward(transcript([], "330 metres"), golds)
    assert exact.total == pytest.approx(1.0)  # no search needed without a no-search penalty
    invalid = reward(transcript(["q"], "330 metres tall") + "</think>", golds)
    assert invalid.total == pytest.approx(0.8 - 2.0)
    assert invalid.parts["format_penalty"] == -2.0
    no_answer = reward(INVALID_NO_QUERY, golds)
    assert no_answer.total == pytest.approx(-2.0)
    assert no_answer.parts["f1"] == 0.0 and no_answer.parts["has_answer"] == 0.0
    for result in (valid, exact, invalid, no_answer):
        assert_consistent(result)


def test_stage2_optional_penalties():
    reward = reward_from(
        "embedded", "stage2", "reward.no_search_penalty=-0.5", "reward.no_answer_penalty=-1"
    )
    no_search = reward(transcript([], "330 metres"), ["330 metres"])
    assert no_search.parts["no_search_penalty"] == -0.5
    assert no_search.total == pytest.approx(0.5)
    searched = reward(transcript(["q"], "330 metres"), ["330 metres"])
    assert searched.total == pytest.approx(1.0)
    empty = reward(transcript(["q"], "  "), ["330 metres"])
    assert empty.parts["no_answer_penalty"] == -1.0
    assert empty.total == pytest.approx(-2.0 - 1.0)  # empty answer is also malformed
    nothing = reward(INVALID_NO_QUERY, ["330 metres"])
    assert nothing.total == pytest.approx(-2.0 - 0.5 - 1.0)


def test_stage2_metric_profile_changes_f1():
    text = transcript(["q"], "US Route 22")
    squad = reward_from("embedded", "stage2", "reward.metric_profile=squad")(
        text, ["U.S. Route 22"]
    )
    r1 = reward_from("embedded", "stage2", "reward.metric_profile=r1searcher")(
        text, ["U.S. Route 22"]
    )
    assert squad.total == 1.0
    assert r1.total == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))


def test_tags_come_from_config():
    reward = reward_from("embedded", "stage1", "tags.profile=searchr1")
    searchr1 = TagsConfig(profile="searchr1")
    assert reward(transcript(["q"], "x", searchr1), ["x"]).total == 1.0
    assert reward(transcript(["q"], "x"), ["x"]).parts["n_queries"] == 0.0


def test_unknown_reward_names_the_registered_ones():
    with pytest.raises(ValueError, match="stage1, stage2"):
        build_reward(RewardConfig(name="nope"))  # type: ignore[arg-type]


def test_register_reward_adds_a_buildable_reward_and_refuses_duplicates():
    @register_reward("length_test_only")
    class LengthReward:
        def __init__(self, cfg: RewardConfig, tags: TagsConfig) -> None:
            self.scale = cfg.w_format

        def __call__(self, response: str, golds: list[str]) -> RewardResult:
            value = self.scale * len(response)
            return RewardResult(value, {"length": value}, ("length",))

    try:
        reward = build_reward(RewardConfig(name="length_test_only", w_format=2.0))  # type: ignore[arg-type]
        assert reward("abc", []).total == 6.0
        with pytest.raises(ValueError, match="already registered"):
            register_reward("length_test_only")(LengthReward)
    finally:
        REWARDS.pop("length_test_only")
