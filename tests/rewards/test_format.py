"""The format checker: one test per rule, valid transcripts, passages with tags, fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recipe.prompts import format_documents
from recipe.retrieval.base import Passage
from rewards.format import check_format, scan_tags
from rewards.spec import TAG_PROFILES, TagsConfig

T = TagsConfig()
BQ, EQ = T.begin_query, T.end_query
BD, ED = T.begin_docs, T.end_docs
TE, AS, AE = T.think_end, T.answer_start, T.answer_end


def docs(*passages: str) -> str:
    """The block the environment inserts after a query (the rollout layout)."""
    body = "\n".join(f"({i}){p}" for i, p in enumerate(passages, 1))
    return f"\n\n{BD}\n{body}\n{ED}\n\n"


def query(text: str, *passages: str) -> str:
    return f"{BQ}{text}{EQ}" + docs(*(passages or ("some passage",)))


def response(body: str = "", answer: str = "Paris") -> str:
    return f"{body} I know it now.{TE}\n{AS}{answer}{AE}"


def violations(text: str, **kwargs) -> list[str]:
    return check_format(text, **kwargs).violations


# ---------------------------------------------------------------- valid responses


def test_valid_single_query():
    report = check_format(response("Search first." + query("capital of France")))
    assert report.valid and report.violations == []
    assert report.n_queries == 1 and report.queries == ["capital of France"]
    assert report.answer == "Paris"


def test_valid_multi_query():
    body = query("  who directed Alien ") + "Now the birth year." + query("Ridley Scott birth")
    report = check_format(response(body, answer=" 1937 "))
    assert report.valid
    assert report.queries == ["who directed Alien", "Ridley Scott birth"]
    assert report.answer == "1937"


def test_valid_without_any_query():
    report = check_format(response("I just know."))
    assert report.valid and report.n_queries == 0 and report.queries == []


def test_passage_with_tags_and_answer_words_is_skipped():
    passage = (
        f"Title: Tags\nThe string {AS}Lyon{AE} and {TE} and {BQ}x{EQ} and {BD} appear here; "
        "the answer is Lyon."
    )
    report = check_format(response(query("tags in text", passage, "plain")))
    assert report.valid, report.violations
    assert report.queries == ["tags in text"]
    assert report.answer == "Paris"


def test_valid_with_the_rollout_insertion_layout():
    # The block exactly as the environment inserts it (recipe.prompts.format_documents).
    passages = [
        Passage("1", "Tags", f"Quoting {BQ}q{EQ} and {AS}Lyon{AE} and {TE}."),
        Passage("2", "Paris", "Paris is the capital of France."),
    ]
    block = format_documents(passages, T)
    report = check_format(f"Search.{BQ}capital of France{EQ}{block}So.{TE}{AS}Paris{AE}")
    assert report.valid, report.violations
    assert report.queries == ["capital of France"] and report.answer == "Paris"
    empty = format_documents([], T)
    assert check_format(f"{BQ}q{EQ}{empty}{TE}{AS}x{AE}").valid


def test_searchr1_tag_profile():
    tags = TagsConfig(profile="searchr1")
    text = (
        "<search>capital of France</search>\n\n<information>\n(1)Paris\n</information>\n\n"
        "ok</think><answer>Paris</answer>"
    )
    report = check_format(text, tags=tags)
    assert report.valid and report.queries == ["capital of France"]
    assert check_format(text).n_queries == 0  # no R1-Searcher query tags in it


def test_whitespace_variants_around_the_document_block():
    text = f"{BQ}q{EQ}{BD}(1)p{ED}then{TE}{AS}x{AE}"
    assert check_format(text).valid
    text = f"{BQ}q{EQ} \n\t{BD}(1)p{ED}then{TE}{AS}x{AE}"
    assert check_format(text).valid


# ---------------------------------------------------------------- one test per rule


def test_query_nested():
    text = response(f"{BQ}outer {BQ}inner{EQ}" + docs("p"))
    report = check_format(text)
    assert "query_nested" in report.violations
    assert report.queries == ["inner"]  # the query the environment actually answered


def test_query_unopened():
    assert "query_unopened" in violations(response(f"stray {EQ} text"))


def test_query_unclosed():
    text = response() + f"{BQ}late query"
    assert violations(text) == ["query_unclosed"]


def test_query_empty():
    report = check_format(response(f"{BQ}  {EQ}" + docs("p")))
    assert report.violations == ["query_empty"]
    assert report.n_queries == 0


def test_query_has_tags():
    report = check_format(f"{BQ}q {AS}x{AE}{EQ}" + docs("p") + f"{TE}{AS}y{AE}")
    assert "query_has_tags" in report.violations
    assert report.n_queries == 0


def test_query_without_documents():
    report = check_format(response(f"{BQ}q{EQ} and no documents"))
    assert report.violations == ["query_without_documents"]
    assert report.n_queries == 0


def test_query_truncated_after_end_tag():
    report = check_format(f"{BQ}q{EQ}")
    assert {"query_without_documents", "think_end_missing", "answer_missing"} <= set(
        report.violations
    )


def test_documents_written_by_model():
    assert violations(response(f"I write {BD}fake{ED} docs")) == ["documents_written_by_model"]
    assert violations(response(f"only an end {ED}")) == ["documents_written_by_model"]
    # A docs block separated from the query by text is not the environment's.
    text = response(f"{BQ}q{EQ} words {BD}p{ED}")
    assert set(violations(text)) == {"query_without_documents", "documents_written_by_model"}


def test_documents_unclosed():
    report = check_format(f"{BQ}q{EQ}\n\n{BD}\n(1)p {TE}{AS}x{AE}")
    assert "documents_unclosed" in report.violations
    assert report.answer is None  # everything after the block start is passage text


def test_think_end_missing():
    assert violations(f"thinking {AS}x{AE}") == ["think_end_missing"]


def test_think_end_repeated():
    assert violations(f"a{TE} b{TE}{AS}x{AE}") == ["think_end_repeated"]


def test_answer_missing():
    report = check_format(f"thinking{TE} Paris")
    assert report.violations == ["answer_missing"]
    assert report.answer is None


def test_answer_repeated():
    report = check_format(response(answer="Lyon") + f"{AS}Paris{AE}")
    assert report.violations == ["answer_repeated"]
    assert report.answer == "Paris"  # the last closed block
    assert violations(response() + AE) == ["answer_repeated"]


def test_answer_unclosed():
    report = check_format(f"x{TE}{AS}Paris")
    assert report.violations == ["answer_unclosed"]
    assert report.answer is None


def test_answer_before_think_end():
    report = check_format(f"{AS}Paris{AE} then{TE}")
    assert report.violations == ["answer_before_think_end"]
    assert report.answer == "Paris"


def test_answer_has_tags():
    assert violations(f"x{TE}{AS}Paris{TE}{AE}") == ["think_end_repeated", "answer_has_tags"]
    text = f"x{TE}{AS}Paris {BQ}q{EQ}" + docs("p") + AE
    assert "answer_has_tags" in violations(text)


def test_answer_empty():
    report = check_format(response(answer=" \n "))
    assert report.violations == ["answer_empty"]
    assert report.answer == ""


def test_answer_too_long():
    long_answer = " ".join(["word"] * 21)
    assert violations(response(answer=long_answer)) == ["answer_too_long"]
    assert violations(response(answer=" ".join(["word"] * 20))) == []
    assert violations(response(answer="a b c"), max_answer_words=2) == ["answer_too_long"]


def test_empty_response():
    report = check_format("")
    assert not report.valid
    assert report.violations == ["think_end_missing", "answer_missing"]


# ---------------------------------------------------------------- scanning


def test_scan_tags_finds_each_tag_in_order():
    text = response(query("q"))
    names = [e.name for e in scan_tags(text, T)]
    expected = ["begin_query", "end_query", "begin_docs", "end_docs"]
    assert names == expected + ["think_end", "answer_start", "answer_end"]


def test_scan_tags_prefers_the_longest_tag():
    tags = TagsConfig(answer_start="<a>", answer_end="<a>>")
    assert [e.name for e in scan_tags("<a>x<a>>", tags)] == ["answer_start", "answer_end"]


def test_duplicate_tag_strings_are_a_config_error():
    with pytest.raises(ValueError, match="both"):
        scan_tags("x", TagsConfig(answer_start="<x>", answer_end="<x>"))


# ---------------------------------------------------------------- fuzzing

ALL_TAGS = sorted({tag for profile in TAG_PROFILES.values() for tag in profile.values()})
SOUP = st.lists(
    st.one_of(st.sampled_from(ALL_TAGS), st.sampled_from(["", " ", "\n\n", "a b", "x"]), st.text()),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=SOUP, profile=st.sampled_from(sorted(TAG_PROFILES)), words=st.integers(0, 5))
def test_check_format_never_raises_and_report_is_consistent(text, profile, words):
    report = check_format(text, tags=TagsConfig.named(profile), max_answer_words=words)
    assert report.valid == (report.violations == [])
    assert report.n_queries == len(report.queries)
    assert all(q and q == q.strip() for q in report.queries)
    assert len(set(report.violations)) == len(report.violations)
    assert report.answer is None or report.answer == report.answer.strip()
    if report.valid:
        assert report.answer


PASSAGE_SOUP = (
    st.lists(
        st.one_of(st.sampled_from([t for t in ALL_TAGS if t != ED]), st.text(max_size=10)),
        max_size=12,
    )
    .map("".join)
    .filter(lambda passage: ED not in passage)
)


@settings(max_examples=150, deadline=None)
@given(passages=st.lists(PASSAGE_SOUP, min_size=1, max_size=3))
def test_any_passage_without_the_end_tag_keeps_a_valid_response_valid(passages):
    text = response("Let me look." + query("q one", *passages) + query("q two", *passages))
    report = check_format(text)
    assert report.valid, report.violations
    assert report.queries == ["q one", "q two"]
    assert report.answer == "Paris"


# ---------------------------------------------------------------- cost on adversarial responses


def python_lines_run(text: str) -> int:
    """Lines of rewards/format.py executed by one check: the checker's work, not its time."""
    import sys

    import rewards.format as format_module

    counted = format_module.__file__
    lines = 0

    def tracer(frame, event, arg):
        nonlocal lines
        if frame.f_code.co_filename != counted:
            return None
        if event == "line":
            lines += 1
        return tracer

    sys.settrace(tracer)
    try:
        check_format(text)
    finally:
        sys.settrace(None)
    return lines


ADVERSARIAL = {
    "answer_starts": lambda n: AS * n,
    "answer_ends": lambda n: AE * n,
    "answer_pairs_inside_out": lambda n: AS * n + AE * n,
    "answer_blocks": lambda n: f"{TE}" + f"{AS}x{AE}" * n,
    "queries_unclosed_docs": lambda n: f"{BQ}q{EQ}\n{BD}" * n,
    "queries_open": lambda n: BQ * n,
    "think_ends": lambda n: TE * n,
    "docs_tags": lambda n: (BD + ED) * n,
}


@pytest.mark.parametrize("shape", sorted(ADVERSARIAL))
def test_work_grows_linearly_with_the_number_of_tags(shape):
    # A reward runs on every sample of every step: doubling a response may at most double the
    # checker's work (plus a constant); a quadratic scan would cost ~4x on 2000 answer-start tags.
    make = ADVERSARIAL[shape]
    small, large = python_lines_run(make(1000)), python_lines_run(make(2000))
    assert large <= 2.1 * small + 100, (shape, small, large)
