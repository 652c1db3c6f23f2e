"""Corpus readers: every on-disk corpus layout to one stream of `Passage`.

Formats
- `flashrag`: jsonl, `{"id", "contents"}` with contents = "Title\\ntext" (FlashRAG, Search-R1);
  records that carry `title` and `text` fields directly are read as they are.
- `kilt`: the KILT knowledge source, jsonl pages `{"wikipedia_title", "text": [paragraphs]}`,
  split R1-Searcher's way: the paragraphs (the first is the title itself) are joined with their
  `BULLET::::` / `Section::::` markers removed, and cut into passages of `passage_words`
  whitespace-separated words. Ids are the running passage number over the file, which is what
  R1-Searcher's TSV of the same pages uses, so both routes give the same ids.
- `kilt_tsv`: that TSV, `id<TAB>title   text` (the title and the text are separated by three
  spaces).
- `hotpot_abstracts_tsv`: R1-Searcher's HotpotQA-abstract corpus, `id<TAB>"Title: … Text: …"`
  (the field may be CSV-quoted, with doubled inner quotes).

A line that cannot be read is counted in `CorpusStats` and skipped, never fatal; a summary
warning is logged at the end of the file when any were skipped. That includes bytes that are not
UTF-8 and JSON escapes of lone surrogates: neither has a UTF-8 encoding, so the doc store could
not write the passage nor a tokenizer take it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from recipe.retrieval.base import Passage, RetrievalInputError

log = logging.getLogger(__name__)

FORMATS = ("flashrag", "kilt", "kilt_tsv", "hotpot_abstracts_tsv")
KILT_MARKERS = ("BULLET::::", "Section::::")
KILT_TSV_TITLE_SEP = "   "
HOTPOT_ABSTRACT = re.compile(r"^Title:\s*(?P<title>.*?)\s+Text:\s*(?P<text>.*)$", re.DOTALL)
MAX_BAD_EXAMPLES = 10
# Files are decoded with errors="surrogateescape": an undecodable byte b becomes the lone
# surrogate U+DC00+b, so one bad byte spoils its line only, and the line is found by this search.
SURROGATE = re.compile("[\ud800-\udfff]")
ESCAPED_BYTE_BASE = 0xDC00


class EmptyCorpus(RetrievalInputError):
    """A corpus that yields no passage: an empty file, or every line skipped by the reader."""


class CorpusFormatError(RetrievalInputError):
    """The corpus format cannot be determined (or is not one of FORMATS)."""


@dataclass
class CorpusStats:
    """What a reader saw: lines read, passages yielded, lines skipped (with the first reasons)."""

    lines: int = 0
    passages: int = 0
    bad_lines: int = 0
    bad_examples: list[tuple[int, str]] = field(default_factory=list)

    def bad(self, line_no: int, reason: str) -> None:
        self.bad_lines += 1
        if len(self.bad_examples) < MAX_BAD_EXAMPLES:
            self.bad_examples.append((line_no, reason))

    def summary(self, examples: int = MAX_BAD_EXAMPLES) -> str:
        shown = "; ".join(f"line {n}: {r}" for n, r in self.bad_examples[:examples])
        return (
            f"{self.passages} passages from {self.lines} lines, {self.bad_lines} bad lines skipped"
            + (f" ({shown})" if shown else "")
        )


class _BadLine(ValueError):
    pass


def _open_text(path: Path):
    return open(path, encoding="utf-8-sig", errors="surrogateescape")


def detect_format(path: str | Path) -> str:
    """Pick the reader from the file suffix and its first non-empty line."""
    path = Path(path)
    first = ""
    with _open_text(path) as f:
        for line in f:
            if line.strip():
                first = line
                break
    if not first:
        raise EmptyCorpus(f"{path}: the corpus is empty (no line to read)")
    if path.suffix in (".jsonl", ".json"):
        try:
            record = json.loads(first)
        except json.JSONDecodeError as e:
            raise CorpusFormatError(f"{path}: first line is not JSON ({e})") from e
        if "wikipedia_title" in record:
            return "kilt"
        if "contents" in record or {"title", "text"} <= record.keys():
            return "flashrag"
        raise CorpusFormatError(f"{path}: unknown jsonl record keys {sorted(record)}")
    if path.suffix == ".tsv":
        _, _, rest = first.partition("\t")
        return "hotpot_abstracts_tsv" if rest.lstrip('"').startswith("Title:") else "kilt_tsv"
    raise CorpusFormatError(f"{path}: cannot tell the corpus format from suffix {path.suffix!r}")


def _flashrag(record: dict) -> Passage:
    if "id" not in record:
        raise _BadLine("no 'id'")
    if "title" in record and "text" in record:
        return Passage(str(record["id"]), str(record["title"]), str(record["text"]))
    contents = record.get("contents")
    if not isinstance(contents, str):
        raise _BadLine("no 'contents' string")
    title, _, text = contents.partition("\n")
    # FlashRAG's wiki-18 quotes the title line: "\"Aaron\"\nAaron is ...".
    if len(title) >= 2 and title[0] == title[-1] == '"':
        title = title[1:-1]
    return Passage(str(record["id"]), title, text)


def kilt_page_words(paragraphs: list[str]) -> list[str]:
    """The words of a KILT page, markers removed, paragraphs joined."""
    words: list[str] = []
    for paragraph in paragraphs:
        for marker in KILT_MARKERS:
            paragraph = paragraph.replace(marker, "")
        words.extend(paragraph.split())
    return words


def _kilt_page(record: dict, passage_words: int, next_id: int) -> list[Passage]:
    title, paragraphs = record.get("wikipedia_title"), record.get("text")
    if not isinstance(title, str) or not isinstance(paragraphs, list):
        raise _BadLine("needs 'wikipedia_title' (str) and 'text' (list of paragraphs)")
    words = kilt_page_words([str(p) for p in paragraphs])
    return [
        Passage(str(next_id + n), title, " ".join(words[start : start + passage_words]))
        for n, start in enumerate(range(0, len(words), passage_words))
    ]


def _kilt_tsv(line: str) -> Passage:
    pid, tab, rest = line.partition("\t")
    title, sep, text = rest.partition(KILT_TSV_TITLE_SEP)
    if not tab or not sep or not pid.strip():
        raise _BadLine("expected 'id<TAB>title   text'")
    return Passage(pid.strip(), title.strip(), text.strip())


def _hotpot_tsv(line: str) -> Passage:
    pid, tab, rest = line.partition("\t")
    if not tab or not pid.strip():
        raise _BadLine("expected 'id<TAB>Title: … Text: …'")
    if len(rest) >= 2 and rest[0] == rest[-1] == '"':
        rest = rest[1:-1].replace('""', '"')
    match = HOTPOT_ABSTRACT.match(rest)
    if match is None:
        raise _BadLine("field is not 'Title: … Text: …'")
    return Passage(pid.strip(), match["title"].strip(), match["text"].strip())


def _check_unicode(line: str) -> None:
    bad = SURROGATE.search(line)
    if bad is not None:
        byte = ord(bad.group()) - ESCAPED_BYTE_BASE
        raise _BadLine(f"not UTF-8 (byte 0x{byte:02x} at character {bad.start()})")


def _check_passage_unicode(passage: Passage) -> None:
    if SURROGATE.search(passage.title) or SURROGATE.search(passage.text):
        raise _BadLine("a JSON escape decodes to a lone surrogate (not valid Unicode text)")


def _passages_of_line(line: str, fmt: str, passage_words: int, next_id: int) -> list[Passage]:
    _check_unicode(line)
    passages = _parse_line(line, fmt, passage_words, next_id)
    for passage in passages:
        _check_passage_unicode(passage)
    return passages


def _parse_line(line: str, fmt: str, passage_words: int, next_id: int) -> list[Passage]:
    if fmt in ("flashrag", "kilt"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise _BadLine(f"invalid JSON ({e.msg})") from e
        if not isinstance(record, dict):
            raise _BadLine("not a JSON object")
        if fmt == "kilt":
            return _kilt_page(record, passage_words, next_id)
        return [_flashrag(record)]
    if fmt == "kilt_tsv":
        return [_kilt_tsv(line)]
    return [_hotpot_tsv(line)]


def read_corpus(
    path: str | Path,
    fmt: str = "auto",
    *,
    passage_words: int = 100,
    stats: CorpusStats | None = None,
) -> Iterator[Passage]:
    """Yield the passages of a corpus file; bad lines are counted in `stats` and skipped."""
    path = Path(path)
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise CorpusFormatError(f"unknown corpus format {fmt!r}; known: {', '.join(FORMATS)}")
    stats = stats if stats is not None else CorpusStats()
    with _open_text(path) as f:
        for line_no, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            stats.lines += 1
            try:
                passages = _passages_of_line(line, fmt, passage_words, stats.passages)
            except _BadLine as e:
                stats.bad(line_no, str(e))
                continue
            for passage in passages:
                if not passage.text.strip():
                    stats.bad(line_no, "empty passage text")
                    continue
                stats.passages += 1
                yield passage
    if stats.bad_lines:
        log.warning("%s: %s", path, stats.summary())
