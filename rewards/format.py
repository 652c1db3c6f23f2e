"""The format checker: is a response a well-formed search-and-answer transcript?

`response` is everything after the prompt (the prompt ends with the think-start tag), including
the document blocks the environment inserted. The response is first cut into tag and text
segments by scanning for the configured tag strings (longest tag first at equal positions);
the rules are then checked on the tag sequence, never by pattern-matching the whole text.

Environment blocks. The environment inserts ``\\n\\n<begin_docs>\\n...\\n<end_docs>\\n\\n`` right
after an end-of-query tag. A begin-docs tag is the environment's only when it directly follows
an end-of-query tag (nothing but whitespace between); the block then runs to the first
end-docs tag after it, and everything inside, tags included, is passage text that no rule
looks at. Any other docs tag was written by the model. (A passage containing the end-docs tag
string itself is the one case text cannot disambiguate; the block then ends there.)

Only tags outside the environment's blocks count for the rules below. `answer` is the text of
the last closed answer block (stripped), reported even when the response breaks a rule, so a
stage reward can score it; None when there is no closed block.

Well-formed query: a begin-query tag, non-empty text with no tag in it, an end-query tag, then
an environment document block. `n_queries` and `queries` count only those.

Rules, by violation name:
- ``query_nested``: a begin-query tag while a query is open.
- ``query_unopened``: an end-query tag with no open query.
- ``query_unclosed``: a query still open at the end of the response.
- ``query_empty``: a query whose text is only whitespace.
- ``query_has_tags``: another tag between the query tags.
- ``query_without_documents``: a closed query not followed by a document block.
- ``documents_written_by_model``: a docs tag outside the environment's blocks.
- ``documents_unclosed``: an environment block without its end-docs tag.
- ``think_end_missing`` / ``think_end_repeated``: not exactly one think-end tag.
- ``answer_missing``: no answer-start tag.
- ``answer_repeated``: more than one answer-start or more than one answer-end tag.
- ``answer_unclosed``: an answer-start tag with no answer-end tag after it.
- ``answer_before_think_end``: the answer block starts before the think-end tag.
- ``answer_has_tags``: a tag inside the answer block.
- ``answer_empty``: only whitespace inside the answer block.
- ``answer_too_long``: more than `max_answer_words` whitespace-separated words.

Those are the ``sequence`` tag rules (`RewardConfig.tag_rules`, the default). The ``counts`` tag
rules are the R1-Searcher Qwen reward server's (train/reward_server_qwen_zero.py; the row by row
comparison is docs/reward_rules.md). They count tag strings over the whole response, the
inserted passages included, and look at no order:
- ``query_document_counts``: the begin-query, end-query, begin-docs and end-docs tags, a
  begin-docs tag followed by a newline and by a newline and "(1)", and an end-docs tag followed
  by two newlines do not all occur equally often (the environment's layout is
  ``<end_query>\n\n<begin_docs>\n(1)...\n<end_docs>\n\n``).
- ``think_counts``: a think-start tag, or not exactly one think-end tag.
- ``answer_counts``: not exactly one answer-start and one answer-end tag.
There the answer is the text after the last answer-start tag up to the next answer-end tag (to
the end when none follows), stripped, when both tags occur anywhere; the queries are the texts
from each begin-query tag to the next end-query tag when the counts rule holds (empty texts
included), none otherwise.

``answer_too_long`` applies under both. So do these, each off by default (`RewardConfig`):
- ``forbidden_word``: one of `forbidden_words` anywhere in the response, passages included.
- ``answer_forbidden_word``: one of `answer_forbidden_words` in the answer.
- ``cjk_outside_documents`` (`forbid_cjk`): a CJK ideograph (U+4E00-U+9FFF) once every span from
  a begin-docs tag to the next end-docs tag is removed.
Before any rule reads it, `response_suffix` is appended to the response, and when
`judge_after_last` is set only the text after its last occurrence is kept.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from rewards.spec import RewardConfig, TagsConfig


@dataclass
class FormatReport:
    valid: bool
    n_queries: int
    queries: list[str]
    answer: str | None
    violations: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TagEvent:
    """One occurrence of a tag in the response: its name and character span."""

    name: str
    start: int
    end: int


@functools.lru_cache(maxsize=16)
def _tag_scanner(tag_strings: tuple[tuple[str, str], ...]) -> tuple[re.Pattern, dict[str, str]]:
    by_string: dict[str, str] = {}
    for name, tag in tag_strings:
        if not tag:
            raise ValueError(f"tag {name} is empty")
        if tag in by_string:
            raise ValueError(f"tags {by_string[tag]} and {name} are both {tag!r}")
        by_string[tag] = name
    # Longest first, so a tag that is a prefix of another never shadows it.
    alternatives = sorted(by_string, key=len, reverse=True)
    return re.compile("|".join(re.escape(tag) for tag in alternatives)), by_string


def scan_tags(response: str, tags: TagsConfig) -> list[TagEvent]:
    """Every tag occurrence in `response`, in order, without overlaps."""
    pattern, name_of = _tag_scanner(tuple(tags.strings().items()))
    return [TagEvent(name_of[m.group()], m.start(), m.end()) for m in pattern.finditer(response)]


class _Checker:
    """One pass over the tag events: queries, environment blocks and the tags the model wrote."""

    def __init__(self, response: str, events: list[TagEvent]) -> None:
        self.response = response
        self.events = events
        self.violations: list[str] = []
        self.queries: list[str] = []
        self.written: list[TagEvent] = []  # every tag outside the environment's blocks, in order

    def flag(self, rule: str) -> None:
        if rule not in self.violations:
            self.violations.append(rule)

    def run(self) -> None:
        i = 0
        while i < len(self.events):
            event = self.events[i]
            self.written.append(event)
            if event.name == "begin_query":
                i = self._read_query(i)
                continue
            if event.name == "end_query":
                self.flag("query_unopened")
            elif event.name in ("begin_docs", "end_docs"):
                self.flag("documents_written_by_model")
            i += 1

    def _read_query(self, begin: int) -> int:
        """Read the query opened at events[begin]; return the index of the next event to read."""
        i = begin + 1
        while i < len(self.events) and self.events[i].name != "end_query":
            inner = self.events[i]
            if inner.name == "begin_query":
                self.flag("query_nested")
                return i  # the inner query is read from its own begin tag
            self.flag("query_has_tags")
            if inner.name in ("begin_docs", "end_docs"):
                self.flag("documents_written_by_model")
            self.written.append(inner)
            i += 1
        if i == len(self.events):
            self.flag("query_unclosed")
            return i
        self.written.append(self.events[i])
        text = self.response[self.events[begin].end : self.events[i].start].strip()
        if not text:
            self.flag("query_empty")
        after_docs = self._skip_environment_block(i)
        if after_docs is None:
            self.flag("query_without_documents")
            return i + 1
        if text and i == begin + 1:
            self.queries.append(text)
        return after_docs

    def _skip_environment_block(self, end_query: int) -> int | None:
        """Index after the environment's block following events[end_query]; None if absent."""
        nxt = end_query + 1
        if nxt >= len(self.events) or self.events[nxt].name != "begin_docs":
            return None
        gap = self.response[self.events[end_query].end : self.events[nxt].start]
        if gap.strip():
            return None
        for j in range(nxt + 1, len(self.events)):
            if self.events[j].name == "end_docs":
                return j + 1
        self.flag("documents_unclosed")
        return len(self.events)


def _check_think_end(checker: _Checker) -> TagEvent | None:
    think_ends = [e for e in checker.written if e.name == "think_end"]
    if not think_ends:
        checker.flag("think_end_missing")
        return None
    if len(think_ends) > 1:
        checker.flag("think_end_repeated")
    return think_ends[0]


def _answer_blocks(events: list[TagEvent]) -> list[tuple[int, int]]:
    """(start, end) event indices of each closed answer block, in order.

    A start tag owns the first end tag after it unless another start tag comes first (the later
    start owns that end). One backward pass, so the work stays linear in the number of tags
    however many answer tags a response repeats.
    """
    blocks = []
    next_answer_tag: int | None = None  # index of the nearest answer tag after the current one
    for k in range(len(events) - 1, -1, -1):
        name = events[k].name
        if name not in ("answer_start", "answer_end"):
            continue
        if name == "answer_start" and next_answer_tag is not None:
            if events[next_answer_tag].name == "answer_end":
                blocks.append((k, next_answer_tag))
        next_answer_tag = k
    return blocks[::-1]


def _check_answer(checker: _Checker, think_end: TagEvent | None) -> str | None:
    """Apply the answer rules; return the text of the last closed answer block, if any."""
    events = checker.written
    n_starts = sum(e.name == "answer_start" for e in events)
    n_ends = sum(e.name == "answer_end" for e in events)
    if not n_starts:
        checker.flag("answer_missing")
    elif n_starts > 1 or n_ends > 1:
        checker.flag("answer_repeated")
    blocks = _answer_blocks(events)
    if any(end > start + 1 for start, end in blocks):
        checker.flag("answer_has_tags")
    answer = None
    if blocks:
        start, end = blocks[-1]
        answer = checker.response[events[start].end : events[end].start].strip()
    if n_starts and answer is None:
        checker.flag("answer_unclosed")
    first_start = next((e for e in events if e.name == "answer_start"), None)
    if first_start is not None and think_end is not None and first_start.start < think_end.start:
        checker.flag("answer_before_think_end")
    if answer is not None and not answer:
        checker.flag("answer_empty")
    return answer


def _check_sequence(response: str, tags: TagsConfig) -> FormatReport:
    checker = _Checker(response, scan_tags(response, tags))
    checker.run()
    think_end = _check_think_end(checker)
    answer = _check_answer(checker, think_end)
    return FormatReport(False, len(checker.queries), checker.queries, answer, checker.violations)


def _check_counts(response: str, tags: TagsConfig) -> FormatReport:
    """The ``counts`` tag rules of the module docstring."""
    bq, eq, bd, ed = tags.begin_query, tags.end_query, tags.begin_docs, tags.end_docs
    # The release's seven counts. "(1)" is the first passage's mark, which the environment
    # writes with a `rollout.doc_template` that starts with "({rank})" (the default).
    layout_counts = {
        response.count(tag) for tag in (bq, eq, bd, ed, bd + "\n", bd + "\n(1)", ed + "\n\n")
    }
    violations, queries = [], []
    if len(layout_counts) > 1:
        violations.append("query_document_counts")
    else:
        queries = [piece.split(eq)[0].strip() for piece in response.split(bq)[1:]]
    if response.count(tags.think_start) != 0 or response.count(tags.think_end) != 1:
        violations.append("think_counts")
    start, end = tags.answer_start, tags.answer_end
    if response.count(start) != 1 or response.count(end) != 1:
        violations.append("answer_counts")
    answer = None
    if start in response and end in response:
        answer = response.split(start)[-1].split(end)[0].strip()
    return FormatReport(False, len(queries), queries, answer, violations)


TAG_RULES = {"sequence": _check_sequence, "counts": _check_counts}


def _outside_documents(response: str, tags: TagsConfig) -> str:
    """`response` without any span from a begin-docs tag to the next end-docs tag (what the
    release's non-greedy regex removes, found in one pass: a begin-docs tag with no end-docs
    tag after it ends the search, as no later one can have one either)."""
    kept, position = [], 0
    while (start := response.find(tags.begin_docs, position)) >= 0:
        end = response.find(tags.end_docs, start + len(tags.begin_docs))
        if end < 0:
            break
        kept.append(response[position:start])
        position = end + len(tags.end_docs)
    kept.append(response[position:])
    return "".join(kept)


def _has_cjk_ideograph(text: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in text)


def _content_violations(
    response: str, answer: str | None, tags: TagsConfig, rules: RewardConfig, max_words: int
) -> list[str]:
    """The rules of both families: the answer's length, forbidden words, CJK ideographs."""
    found = []
    if answer is not None and len(answer.split()) > max_words:
        found.append("answer_too_long")
    if any(word in response for word in rules.forbidden_words):
        found.append("forbidden_word")
    if answer is not None and any(word in answer for word in rules.answer_forbidden_words):
        found.append("answer_forbidden_word")
    if rules.forbid_cjk and _has_cjk_ideograph(_outside_documents(response, tags)):
        found.append("cjk_outside_documents")
    return found


def judged_text(response: str, rules: RewardConfig) -> str:
    """The text the rules read: `response_suffix` appended, then only the part after the last
    `judge_after_last` when that is set."""
    text = response + rules.response_suffix
    if rules.judge_after_last:
        text = text.split(rules.judge_after_last)[-1]
    return text


def check_format(
    response: str,
    tags: TagsConfig | None = None,
    max_answer_words: int | None = None,
    *,
    rules: RewardConfig | None = None,
) -> FormatReport:
    """Check the rules `rules` selects (the module docstring); never raises on any response.

    `rules` is the reward configuration whose format fields apply (`RewardConfig()`, the
    recipe's rules, when None); `max_answer_words`, when given, replaces its word limit.
    """
    tags = TagsConfig() if tags is None else tags
    rules = RewardConfig() if rules is None else rules
    max_words = rules.max_answer_words if max_answer_words is None else max_answer_words
    text = judged_text(response if isinstance(response, str) else "", rules)
    if rules.tag_rules not in TAG_RULES:
        raise ValueError(f"unknown tag_rules {rules.tag_rules!r}; known: {', '.join(TAG_RULES)}")
    report = TAG_RULES[rules.tag_rules](text, tags)
    for rule in _content_violations(text, report.answer, tags, rules, max_words):
        if rule not in report.violations:
            report.violations.append(rule)
    report.valid = not report.violations
    return report
