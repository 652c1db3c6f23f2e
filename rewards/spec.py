"""The sections of the run configuration that the reward specification reads: its tags and its
reward weights. They live here, not in `recipe.schema`, because `rewards/` is the specification
and imports nothing of ours; `recipe.schema` places them in the run config (`tags:`, `reward:`).

Each field is documented once, below; the `help` metadata is what `recipe.config.describe`
prints, the same key `recipe.config.doc` writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# The tag roles, in the order a response uses them; every tag list derives from this one.
TAG_NAMES = (
    "think_start",
    "think_end",
    "begin_query",
    "end_query",
    "begin_docs",
    "end_docs",
    "answer_start",
    "answer_end",
)

# Tag profiles: R1-Searcher (arXiv:2503.05592) and Search-R1 (arXiv:2503.09516).
_SHARED = {
    "think_start": "<think>",
    "think_end": "</think>",
    "answer_start": "<answer>",
    "answer_end": "</answer>",
}
TAG_PROFILES: dict[str, dict[str, str]] = {
    "r1searcher": {
        **_SHARED,
        "begin_query": "<|begin_of_query|>",
        "end_query": "<|end_of_query|>",
        "begin_docs": "<|begin_of_documents|>",
        "end_docs": "<|end_of_documents|>",
    },
    "searchr1": {
        **_SHARED,
        "begin_query": "<search>",
        "end_query": "</search>",
        "begin_docs": "<information>",
        "end_docs": "</information>",
    },
}


def _doc(default: Any, help: str) -> Any:
    if isinstance(default, list):
        value = default
        return field(default_factory=lambda: list(value), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TagsConfig:
    profile: Literal["r1searcher", "searchr1"] = _doc(
        "r1searcher", "Tag set; any tag left null below takes this profile's string."
    )
    think_start: str | None = _doc(None, "Opens the reasoning; the prompt ends with it.")
    think_end: str | None = _doc(None, "Closes the reasoning; exactly one per response.")
    begin_query: str | None = _doc(None, "Opens a search query written by the model.")
    end_query: str | None = _doc(None, "Closes a query; generation stops on it.")
    begin_docs: str | None = _doc(None, "Opens the passages the environment inserts.")
    end_docs: str | None = _doc(None, "Closes the inserted passages.")
    answer_start: str | None = _doc(None, "Opens the final answer.")
    answer_end: str | None = _doc(None, "Closes the final answer.")

    def __post_init__(self) -> None:
        for name in TAG_NAMES:
            if getattr(self, name) is None:
                setattr(self, name, TAG_PROFILES[self.profile][name])

    @classmethod
    def named(cls, profile: str) -> TagsConfig:
        return cls(profile=profile)  # type: ignore[arg-type]

    def strings(self) -> dict[str, str]:
        """{role: tag string} for every role of TAG_NAMES."""
        return {name: getattr(self, name) for name in TAG_NAMES}


@dataclass
class RewardConfig:
    name: Literal["stage1", "stage2"] = _doc("stage1", "Registered stage reward.")
    metric_profile: Literal["squad", "r1searcher"] = _doc(
        "r1searcher", "Answer normalisation (rewards.metrics)."
    )
    # The format rules (rewards.format). The defaults are the recipe's own rules; the
    # paper profile sets the R1-Searcher Qwen reward server's (docs/reward_rules.md).
    tag_rules: Literal["sequence", "counts"] = _doc(
        "sequence",
        "How tags are checked: 'sequence' reads the order of the tags outside the environment's "
        "document blocks; 'counts' counts tag strings over the whole response, documents "
        "included, as the R1-Searcher Qwen reward server does.",
    )
    max_answer_words: int = _doc(20, "Answers of more whitespace-separated words break the format.")
    forbidden_words: list[str] = _doc(
        [],
        "Strings that break the format anywhere in the response, inserted passages included "
        "(R1-Searcher Qwen: Assistant, assistant).",
    )
    answer_forbidden_words: list[str] = _doc(
        [],
        "Strings that break the format inside the answer "
        "(R1-Searcher Qwen: begin_of_query, begin_of_documents).",
    )
    forbid_cjk: bool = _doc(
        False,
        "CJK ideographs (U+4E00-U+9FFF) outside the spans from a begin-docs tag to the next "
        "end-docs tag break the format.",
    )
    judge_after_last: str = _doc(
        "",
        "When set, only the response text after the last occurrence of this string is checked "
        "and scored (R1-Searcher Qwen re-splits on the base prompt's last line, "
        "'\\nAssistant: <think>').",
    )
    response_suffix: str = _doc(
        "",
        "Appended to the response before it is checked and scored (R1-Searcher Qwen appends "
        "the tokenizer's EOS string, '<|endoftext|>').",
    )
    w_retrieval: float = _doc(0.5, "stage1: weight of 'at least one well-formed query'.")
    w_format: float = _doc(0.5, "stage1: weight of 'the whole response is well formed'.")
    w_answer: float = _doc(0.0, "stage1: weight of answer cover-EM (R1-Searcher Llama: 1).")
    format_penalty: float = _doc(-2.0, "stage2: added when the response is malformed.")
    no_search_penalty: float = _doc(0.0, "stage2: added when the model never searched.")
    no_answer_penalty: float = _doc(0.0, "stage2: added when there is no answer (Search-R1++).")
