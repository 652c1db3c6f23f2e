"""Read question files of every supported format into `QARecord`s.

Formats (auto-detected from the first record's keys; the file may be a JSON list or jsonl):
- `r1searcher`: the R1-Searcher release, `{"idx", "question", "answer", ...}`;
- `hotpotqa`: official HotpotQA records, `{"_id", "question", "answer", "type", "level",
  "supporting_facts", "context"}`;
- `2wiki`: official 2WikiMultiHopQA records, as HotpotQA plus `"evidences"`;
- `qarecord`: our own jsonl (`data_filtering.records`).

`source` is the file's stem (`hotpotqa_500`, `2wiki_dev`, `stage_2`) unless given. Every other
field of the input, except the bulky `context` paragraphs, is kept in `meta` along with
`meta["format"]`, so labels (type, level, supporting facts, sampled answers) travel with it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from data_filtering.records import FIELDS, QARecord

FORMATS = ("r1searcher", "hotpotqa", "2wiki", "qarecord")
DROPPED_KEYS = ("context",)  # the paragraphs a reader model gets; we retrieve instead


class SourceError(ValueError):
    """A question file is unreadable or a record lacks what its format requires."""


def _rows(path: Path) -> Iterator[tuple[str, object]]:
    """(where, parsed row) for a JSON-list file or a jsonl file."""
    with open(path) as f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == "[":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise SourceError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
            for i, row in enumerate(rows):
                yield f"{path} (record {i})", row
            return
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{path}:{lineno}: not valid JSON: {e.msg}") from e


def detect_format(row: object, where: str) -> str:
    if not isinstance(row, dict):
        raise SourceError(f"{where}: expected a JSON object, got {type(row).__name__}")
    keys = set(row)
    if set(FIELDS) <= keys:
        return "qarecord"
    if {"_id", "question", "answer", "evidences"} <= keys:
        return "2wiki"
    if {"_id", "question", "answer"} <= keys:
        return "hotpotqa"
    if {"idx", "question", "answer"} <= keys:
        return "r1searcher"
    raise SourceError(
        f"{where}: cannot tell the format from keys {sorted(keys)}; expected one of {FORMATS}"
    )


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise SourceError(f"{where}: `{key}` must be a non-empty string, got {value!r}")
    return value


def _answers(row: dict, where: str) -> list[str]:
    value = row.get("answer")
    answers = value if isinstance(value, list) else [value]
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise SourceError(f"{where}: `answer` must be a non-empty string, got {value!r}")
    return answers


def to_record(row: dict, fmt: str, source: str, where: str) -> QARecord:
    if fmt == "qarecord":
        try:
            return QARecord.from_dict(row, where)
        except ValueError as e:
            raise SourceError(str(e)) from e
    id_key = "idx" if fmt == "r1searcher" else "_id"
    if id_key not in row:
        raise SourceError(f"{where}: `{id_key}` missing for format {fmt}")
    meta = {"format": fmt}
    meta.update(
        {
            k: v
            for k, v in row.items()
            if k not in (id_key, "question", "answer") and k not in DROPPED_KEYS
        }
    )
    return QARecord(
        id=str(row[id_key]),
        question=_text(row, "question", where),
        answers=_answers(row, where),
        source=source,
        meta=meta,
    )


def load_questions(
    path: str | Path, fmt: str = "auto", source: str | None = None
) -> list[QARecord]:
    """All records of `path`; `fmt` is one of FORMATS or "auto" (from the first record)."""
    path = Path(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise SourceError(f"unknown question format {fmt!r}; expected auto or one of {FORMATS}")
    if not path.is_file():
        raise SourceError(f"question file not found: {path}")
    source = source or path.stem
    records: list[QARecord] = []
    seen: dict[str, str] = {}
    for where, row in _rows(path):
        if fmt == "auto":
            fmt = detect_format(row, where)
        if not isinstance(row, dict):
            raise SourceError(f"{where}: expected a JSON object, got {type(row).__name__}")
        record = to_record(row, fmt, source, where)
        if record.id in seen:
            raise SourceError(f"{where}: duplicate id {record.id!r} (first at {seen[record.id]})")
        seen[record.id] = where
        records.append(record)
    return records
