"""The paper profile rewards as the R1-Searcher Qwen reward server does.

The server is the release's train/reward_server_qwen_zero.py (docs/reward_rules.md has its rules
row by row, with line numbers). Each case below is a hand-written response and the score that
server gives it for the gold, worked out by reading its code: F1 of the text after the last
answer-start tag (0 without both answer tags), minus 2 when any of its format rules fails. The
server appends the EOS string to the response before reading it, so an answer that runs to the
end reads "<|endoftext|>" too, which normalises to the extra token "endoftext".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recipe.config import load_config, save_config
from recipe.prompts import format_documents
from recipe.retrieval.base import Passage
from recipe.schema import RunConfig
from rewards.format import _outside_documents, check_format
from rewards.spec import RewardConfig, TagsConfig
from rewards.stage import build_reward

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
T = TagsConfig()
BQ, EQ, BD, ED = T.begin_query, T.end_query, T.begin_docs, T.end_docs
TS, TE, AS, AE = T.think_start, T.think_end, T.answer_start, T.answer_end


def paper(stage: str) -> RunConfig:
    return load_config(RunConfig, CONFIGS / "paper" / f"{stage}.yaml", [])


PAPER2 = paper("stage2")
PAPER_STAGE2 = build_reward(PAPER2.reward, PAPER2.tags)
PAPER_STAGE1 = build_reward(paper("stage1").reward, PAPER2.tags)
DEFAULT_STAGE2 = build_reward(RewardConfig(name="stage2"), T)

PARIS = Passage("1", "Paris", "Paris is the capital and most populous city of France.")
COACH = Passage("2", "Bill Belichick", "He was an assistant coach of the New York Giants.")
CJK = Passage("3", "Paris", "Paris (法语: Paris) is the capital of France.")
THINK_TAG = Passage("4", "Markup", f"A tag such as {TE} closes a block.")
QUERY_TAG = Passage("5", "Tokens", f"The token {BQ} opens a query.")
ANSWER_TAGS = Passage("6", "Tags", f"Write {AS}x{AE} at the end.")


def search(query: str = "capital of France", *passages: Passage) -> str:
    """A query and the block the paper profile's environment inserts after it."""
    block = format_documents(passages or (PARIS,), T, PAPER2.rollout.doc_template)
    return f"{BQ}{query}{EQ}{block}"


def respond(think: str = "", answer: str = "Paris", lookup: str | None = None) -> str:
    """Reasoning with one search, the think-end tag, then the answer."""
    lookup = search() if lookup is None else lookup
    return f"I should look it up. {lookup}{think}So it is settled.{TE}\n\n{AS}{answer}{AE}"


@dataclass(frozen=True)
class Case:
    response: str
    gold: str
    valid: bool  # no format rule of the server fails
    total: float  # the server's score: F1, minus 2 when a format rule fails


TEN_WORDS = "Paris is the capital and largest city of France today"
CASES = {
    "well_formed": Case(respond(), "Paris", True, 1.0),
    "no_search": Case(respond(lookup=""), "Paris", True, 1.0),
    "two_searches": Case(
        respond(lookup=search() + "Once more." + search("Paris")), "Paris", True, 1.0
    ),
    # L192-194: no answer tags, F1 is not scored; L226-231 then breaks the format too.
    "no_answer": Case(f"I do not know.{TE}", "Paris", False, -2.0),
    # L239-241: at most 10 words. 10 words: 9 tokens after "the" goes, F1 = 2/10.
    "answer_10_words": Case(respond(answer=TEN_WORDS), "Paris", True, 0.2),
    "answer_11_words": Case(respond(answer=TEN_WORDS + " indeed"), "Paris", False, 2 / 11 - 2),
    # L212-217: "Assistant" or "assistant" anywhere, the inserted passages included.
    "Assistant_in_thinking": Case(respond(" The Assistant checks."), "Paris", False, -1.0),
    "assistant_in_thinking": Case(respond(" As an assistant I check."), "Paris", False, -1.0),
    "assistant_in_a_passage": Case(
        respond(lookup=search("Giants coach", COACH)), "Paris", False, -1.0
    ),
    "ASSISTANT_upper_case": Case(respond(" ASSISTANT MODE."), "Paris", True, 1.0),
    # L243-246: CJK ideographs outside the document blocks.
    "cjk_in_thinking": Case(respond(" 巴黎 is Paris."), "Paris", False, -1.0),
    "cjk_in_a_passage": Case(respond(lookup=search("Paris", CJK)), "Paris", True, 1.0),
    "cjk_in_the_answer": Case(respond(answer="Paris (巴黎)"), "Paris", False, 2 / 3 - 2),
    "kana_and_hangul_in_thinking": Case(respond(" パリ, 파리."), "Paris", True, 1.0),
    # L219-224: no think-start tag, exactly one think-end tag, passages included.
    "think_start_in_response": Case(respond(f" {TS}Again."), "Paris", False, -1.0),
    "think_end_twice": Case(respond(f" Wait.{TE}"), "Paris", False, -1.0),
    "think_end_missing": Case(f"{search()}So {AS}Paris{AE}", "Paris", False, -1.0),
    "think_end_in_a_passage": Case(
        respond(lookup=search("markup", THINK_TAG)), "Paris", False, -1.0
    ),
    # L226-231: one answer-start and one answer-end tag; their order is not checked.
    "answer_twice": Case(respond() + f" Or {AS}Lyon{AE}", "Lyon", False, -1.0),
    "answer_tags_in_a_passage": Case(
        respond(lookup=search("tags", ANSWER_TAGS)), "Paris", False, -1.0
    ),
    # L109-110: the answer runs from the last answer-start to the next answer-end, or to the
    # end with the EOS string: "London<|endoftext|>" scores F1 2/3 against "London".
    "last_answer_unclosed": Case(respond() + f" Or {AS}London", "London", False, 2 / 3 - 2),
    "answer_tags_reversed": Case(f"So.{TE}{AE} then {AS}Paris", "Paris", True, 2 / 3),
    "answer_before_think_end": Case(f"{AS}Paris{AE} that is it.{TE}", "Paris", True, 1.0),
    "answer_empty": Case(respond(answer=" "), "Paris", True, 0.0),
    # L233-237: the answer holds neither "begin_of_query" nor "begin_of_documents";
    # "paris begin of query": F1 = 2/5.
    "answer_names_a_tag": Case(respond(answer="Paris begin_of_query"), "Paris", False, 0.4 - 2),
    "answer_holds_think_end": Case(f"Hmm. {AS}Paris{TE}{AE}", "Paris", True, 2 / 3),
    # L199-210: the seven tag counts agree; the environment writes "(1)" and the blank lines.
    "query_without_documents": Case(respond(lookup=f"{BQ}q{EQ} nothing. "), "Paris", False, -1.0),
    "query_empty": Case(respond(lookup=search(" ")), "Paris", True, 1.0),
    "empty_result_block": Case(
        respond(lookup=f"{BQ}q{EQ}" + format_documents([], T)), "Paris", False, -1.0
    ),
    "documents_without_the_blank_lines": Case(
        respond(lookup=f"{BQ}q{EQ}\n\n{BD}\n(1)Paris\n{ED}Then "), "Paris", False, -1.0
    ),
    "documents_written_by_the_model": Case(
        respond(lookup=f"{BD}\n(1)I recall Paris.\n{ED}\n\n"), "Paris", False, -1.0
    ),
    "query_tag_in_a_passage": Case(
        respond(lookup=search("tokens", QUERY_TAG)), "Paris", False, -1.0
    ),
    # L150-154: only the text after the last "\nAssistant: <think>" is read.
    "restarted_transcript": Case(
        f"I guess.{TE}{AS}London{AE}\nUser: and?\nAssistant: {TS}Checking.{TE}\n{AS}Paris{AE}",
        "Paris",
        True,
        1.0,
    ),
    # L41-47 and L62-88: "True" reads as "yes"; punctuation becomes spaces ("u s" vs "us").
    "true_is_yes": Case(respond(answer="True"), "yes", True, 1.0),
    "punctuation_to_spaces": Case(respond(answer="US Route 22"), "U.S. Route 22", True, 4 / 7),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_paper_stage2_scores_as_the_release(name):
    case = CASES[name]
    result = PAPER_STAGE2(case.response, [case.gold])
    assert result.parts["valid"] == float(case.valid), check_format(
        case.response, T, rules=PAPER2.reward
    ).violations
    assert result.total == pytest.approx(case.total)


# Today's verdicts under the default rules, for the cases where the release's differ.
DEFAULT_VALID = {
    "answer_11_words": True,
    "Assistant_in_thinking": True,
    "assistant_in_a_passage": True,
    "cjk_in_thinking": True,
    "think_start_in_response": True,
    "think_end_in_a_passage": True,
    "answer_tags_in_a_passage": True,
    "query_tag_in_a_passage": True,
    "answer_names_a_tag": True,
    "empty_result_block": True,
    "documents_without_the_blank_lines": True,
    "answer_tags_reversed": False,
    "answer_before_think_end": False,
    "answer_empty": False,
    "answer_holds_think_end": False,
    "query_empty": False,
    "restarted_transcript": False,
}


@pytest.mark.parametrize("name", sorted(DEFAULT_VALID))
def test_default_rules_keep_their_verdicts(name):
    result = DEFAULT_STAGE2(CASES[name].response, [CASES[name].gold])
    assert result.parts["valid"] == float(DEFAULT_VALID[name])


def test_default_rules_score_the_last_closed_answer():
    # The default reads the last closed block ("Paris"), the release the unclosed "London".
    case = CASES["last_answer_unclosed"]
    assert DEFAULT_STAGE2(case.response, [case.gold]).total == pytest.approx(-2.0)
    assert DEFAULT_STAGE2(case.response, ["Paris"]).total == pytest.approx(-1.0)


def test_each_switch_alone_on_the_default_rules():
    rules = RewardConfig()
    text = respond(" The Assistant checks 巴黎.", answer="Paris begin_of_query")
    assert check_format(text, T, rules=rules).valid
    for field, value, violation in [
        ("forbidden_words", ["Assistant"], "forbidden_word"),
        ("forbid_cjk", True, "cjk_outside_documents"),
        ("answer_forbidden_words", ["begin_of_query"], "answer_forbidden_word"),
        ("max_answer_words", 1, "answer_too_long"),
    ]:
        report = check_format(text, T, rules=replace(rules, **{field: value}))
        assert report.violations == [violation], field
    restarted = replace(rules, judge_after_last="\nAssistant: ")
    assert check_format("x\nAssistant: " + respond(), T, rules=restarted).valid
    suffixed = check_format(f"x{TE}{AS}Paris{AE}", T, rules=replace(rules, response_suffix="!"))
    assert suffixed.valid and suffixed.answer == "Paris"


def test_counts_rules_name_each_failure():
    counts = RewardConfig(tag_rules="counts")
    report = check_format(f"{TS}{BQ}q{EQ} {AS}a{AE}{AS}", T, rules=counts)
    assert report.violations == ["query_document_counts", "think_counts", "answer_counts"]
    assert report.n_queries == 0 and report.answer == ""
    report = check_format(respond(lookup=search() + search(" ")), T, rules=counts)
    assert report.valid and report.queries == ["capital of France", ""]


def test_unknown_tag_rules_is_an_error():
    with pytest.raises(ValueError, match="sequence, counts"):
        check_format("x", rules=RewardConfig(tag_rules="order"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- stage 1


@pytest.mark.parametrize(
    ("name", "retrieval", "format_term"),
    [
        ("well_formed", 0.5, 0.5),
        ("no_search", 0.0, 0.5),
        ("answer_empty", 0.5, 0.5),
        ("Assistant_in_thinking", 0.5, 0.0),
        ("query_without_documents", 0.0, 0.0),  # the counts disagree: no query counts
        ("empty_result_block", 0.0, 0.0),
    ],
)
def test_paper_stage1_retrieval_and_format(name, retrieval, format_term):
    # The Qwen release has no stage-1 server. The retrieval term holds when the seven counts
    # agree and are at least 1 (the Llama stage-1 server's retrieval rule), the format term
    # when every rule above holds.
    result = PAPER_STAGE1(CASES[name].response, [CASES[name].gold])
    assert result.parts["retrieval"] == retrieval
    assert result.parts["format"] == format_term
    assert result.total == pytest.approx(retrieval + format_term)


# ---------------------------------------------------------------- the paper configuration


def test_paper_configs_set_the_release_rules():
    for stage in ("stage1", "stage2", "eval"):
        reward = paper(stage).reward
        assert reward.tag_rules == "counts"
        assert reward.forbidden_words == ["Assistant", "assistant"]
        assert reward.answer_forbidden_words == ["begin_of_query", "begin_of_documents"]
        assert reward.max_answer_words == 10
        assert reward.forbid_cjk is True
        assert reward.judge_after_last == "\nAssistant: <think>"
        assert reward.response_suffix == "<|endoftext|>"
        assert reward.metric_profile == "r1searcher"
    assert PAPER2.reward.format_penalty == -2.0


def test_the_release_rules_survive_the_saved_config_and_overrides(tmp_path):
    # A run folder's config.yaml reproduces the rules; the lists take command-line overrides.
    saved = save_config(PAPER2, tmp_path)
    assert load_config(RunConfig, saved, []).reward == PAPER2.reward
    overrides = ["reward.forbidden_words=[User]", "reward.judge_after_last="]
    reward = load_config(RunConfig, CONFIGS / "paper" / "stage2.yaml", overrides).reward
    assert reward.forbidden_words == ["User"] and reward.judge_after_last == ""


def test_the_paper_prompt_ends_with_the_line_the_release_splits_on():
    from recipe.prompts import base_prompt

    assert PAPER2.model.prompt_style == "base"
    assert base_prompt("Q?", T).endswith(PAPER2.reward.judge_after_last)


# ---------------------------------------------------------------- fuzzing

TAGS = [
    BQ,
    EQ,
    BD,
    ED,
    TS,
    TE,
    AS,
    AE,
    "\n(1)",
    "\n\n",
    "Assistant",
    "巴黎",
    "\nAssistant: <think>",
]
SOUP = st.lists(
    st.one_of(st.sampled_from(TAGS), st.sampled_from(["", " ", "a b", "x"]), st.text(max_size=8)),
    max_size=30,
).map("".join)


@settings(max_examples=200, deadline=None)
@given(text=SOUP)
def test_release_rules_never_raise_and_report_is_consistent(text):
    report = check_format(text, T, rules=PAPER2.reward)
    assert report.valid == (report.violations == [])
    assert report.n_queries == len(report.queries)
    assert len(set(report.violations)) == len(report.violations)
    assert report.answer is None or report.answer == report.answer.strip()


@settings(max_examples=300, deadline=None)
@given(text=SOUP)
def test_documents_are_removed_as_the_release_regex_removes_them(text):
    # L243: re.sub(begin_docs + ".*?" + end_docs, "", solution, flags=re.DOTALL).
    pattern = re.escape(BD) + ".*?" + re.escape(ED)
    assert _outside_documents(text, T) == re.sub(pattern, "", text, flags=re.DOTALL)
