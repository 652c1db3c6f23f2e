"""Read question files of every supported format into `QARecord`s.

Row formats (auto-detected from the first JSON object's keys; a file may be a JSON list or jsonl):
- `r1searcher`: the R1-Searcher release, `{"idx", "question", "answer", ...}` (its eval sets and
  its Stage-1 / Stage-2 training files);
- `hotpotqa`: official HotpotQA records, `{"_id", "question", "answer", "type", "level",
  "supporting_facts", "context"}` (the Hugging Face copy names the id `id`);
- `2wiki`: official 2WikiMultiHopQA records, as HotpotQA plus `"evidences"`;
- `flashrag`: FlashRAG's jsonl, `{"id", "question", "golden_answers": [...], "metadata"}`;
- `qarecord`: our own jsonl (`data_filtering.records`), what the stage files are.
miniwiki writes the official HotpotQA and 2Wiki layouts, so its files are read as those two.
`hf` (the filter's sources only) reads a Hugging Face `datasets` name or a local dataset folder
(`save_to_disk`, or data files `load_dataset` understands); its rows are one of the formats above.

`source` is the file's stem (`hotpotqa_500`, `2wiki_dev`, `stage_2`) unless given. Every other
field of the input, except the bulky `context` paragraphs, is kept in `meta` along with
`meta["format"]`, so labels (type, level, supporting facts, sampled answers) travel with it.

Two modes: `load_questions` is strict (the first bad row raises `SourceError` naming its file
and line: training files are ours and must be clean); `read_source` skips bad rows and counts
them by reason (`LoadedSource.skipped`), so one broken row never stops a filtering run. A file
that cannot be read at all, or whose first object fits no format, fails in both modes.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data_filtering.records import FIELDS, QARecord
from recipe.exit_status import BAD_INPUT

FORMATS = ("r1searcher", "hotpotqa", "2wiki", "flashrag", "qarecord")
HF_FORMAT = "hf"  # a `datasets` name or folder, not a row format
DROPPED_KEYS = ("context",)  # the paragraphs a reader model gets; we retrieve instead


class SourceError(ValueError):
    """A question file is unreadable or a record lacks what its format requires."""

    exit_status = BAD_INPUT


class RowError(SourceError):
    """One row is unusable; `reason` is a short code the skip counts are grouped by."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class SkippedRow:
    where: str
    reason: str
    message: str


@dataclass
class LoadedSource:
    """The usable records of one source and what was skipped on the way."""

    name: str
    path: str
    format: str
    records: list[QARecord] = field(default_factory=list)
    skipped: list[SkippedRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.records) + len(self.skipped)

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped))


def _not_utf8(where: str, error: UnicodeDecodeError) -> str:
    byte = error.object[error.start]
    return f"{where}: not UTF-8 text (byte {byte:#04x}); save the file as UTF-8"


def _file_rows(path: Path) -> Iterator[tuple[str, object]]:
    """(where, parsed row or RowError) for a JSON-list file or a jsonl file. Bytes are decoded
    line by line, so a jsonl line that is not UTF-8 is one bad row like any other."""
    with open(path, "rb") as f:
        head = f.read(1)
        while head and head.isspace():
            head = f.read(1)
        f.seek(0)
        if head == b"[":
            raw = f.read()
            try:
                rows = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:  # the whole list is unreadable: fatal
                lineno = raw.count(b"\n", 0, e.start) + 1
                raise SourceError(_not_utf8(f"{path}:{lineno}", e)) from None
            except json.JSONDecodeError as e:
                raise SourceError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from e
            for i, row in enumerate(rows):
                yield f"{path} (record {i})", row
            return
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                yield where, json.loads(line.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield where, RowError(_not_utf8(where, e), "not_utf8")
            except json.JSONDecodeError as e:
                yield where, RowError(f"{where}: not valid JSON: {e.msg}", "not_json")


def _hf_rows(path: str, split: str, subset: str | None) -> Iterator[tuple[str, object]]:
    """Rows of a `datasets` folder written by `save_to_disk`, or of `load_dataset(path)`."""
    import datasets

    folder = Path(path)
    saved = folder.is_dir() and any(
        (folder / name).exists() for name in ("dataset_dict.json", "state.json")
    )
    try:
        data = datasets.load_from_disk(path) if saved else datasets.load_dataset(path, subset)
        if isinstance(data, datasets.DatasetDict):
            data = data[split]
    except Exception as e:  # offline hub lookups, missing splits, unreadable folders
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SourceError(f"hf dataset {path} [{split}]: {type(e).__name__}: {first_line}") from e
    for i, row in enumerate(data):
        yield f"{path} [{split}] (row {i})", dict(row)


def _id_key(row: dict) -> str | None:
    return "_id" if "_id" in row else "id" if "id" in row else None


def detect_format(row: object, where: str) -> str:
    if not isinstance(row, dict):
        raise SourceError(f"{where}: expected a JSON object, got {type(row).__name__}")
    keys = set(row)
    if set(FIELDS) <= keys:
        return "qarecord"
    if {"question", "golden_answers"} <= keys:
        return "flashrag"
    if {"question", "answer", "evidences"} <= keys and _id_key(row):
        return "2wiki"
    if {"question", "answer"} <= keys and _id_key(row):
        return "hotpotqa"
    if {"idx", "question", "answer"} <= keys:
        return "r1searcher"
    raise SourceError(
        f"{where}: cannot tell the format from keys {sorted(keys)}; expected one of {FORMATS}"
    )


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"{where}: `{key}` must be a non-empty string, got {value!r}", f"bad_{key}")
    return value


def _answers(row: dict, key: str, where: str) -> list[str]:
    value = row.get(key)
    answers = value if isinstance(value, list) else [value]
    if not answers or not all(isinstance(a, str) and a.strip() for a in answers):
        raise RowError(f"{where}: `{key}` must be a non-empty string, got {value!r}", "bad_answer")
    return answers


def to_record(row: object, fmt: str, source: str, where: str) -> QARecord:
    if not isinstance(row, dict):
        raise RowError(f"{where}: expected a JSON object, got {type(row).__name__}", "not_object")
    if fmt == "qarecord":
        try:
            return QARecord.from_dict(row, where)
        except ValueError as e:
            raise RowError(str(e), "bad_record") from e
    id_key = {"r1searcher": "idx", "flashrag": "id"}.get(fmt) or _id_key(row) or "_id"
    if id_key not in row:
        raise RowError(f"{where}: `{id_key}` missing for format {fmt}", "missing_id")
    answer_key = "golden_answers" if fmt == "flashrag" else "answer"
    meta = {"format": fmt}
    meta.update(
        {
            k: v
            for k, v in row.items()
            if k not in (id_key, "question", answer_key) and k not in DROPPED_KEYS
        }
    )
    return QARecord(
        id=str(row[id_key]),
        question=_text(row, "question", where),
        answers=_answers(row, answer_key, where),
        source=source,
        meta=meta,
    )


def _records(
    rows: Iterator[tuple[str, object]], fmt: str, source: str, on_bad
) -> tuple[str, list[QARecord]]:
    """(format, records); `on_bad(RowError, where)` raises (strict) or records the skip."""
    records: list[QARecord] = []
    seen: dict[str, str] = {}
    for where, row in rows:
        if isinstance(row, RowError):
            on_bad(row, where)
            continue
        if fmt == "auto" and isinstance(row, dict):
            fmt = detect_format(row, where)  # fatal: the file is not a question file
        try:
            if fmt == "auto":
                raise RowError(
                    f"{where}: expected a JSON object, got {type(row).__name__}", "not_object"
                )
            record = to_record(row, fmt, source, where)
            if record.id in seen:
                raise RowError(
                    f"{where}: duplicate id {record.id!r} (first at {seen[record.id]})",
                    "duplicate_id",
                )
        except RowError as e:
            on_bad(e, where)
            continue
        seen[record.id] = where
        records.append(record)
    return fmt, records


def _check_format_name(fmt: str, allowed: tuple[str, ...]) -> None:
    if fmt != "auto" and fmt not in allowed:
        raise SourceError(f"unknown question format {fmt!r}; expected auto or one of {allowed}")


def load_questions(
    path: str | Path, fmt: str = "auto", source: str | None = None
) -> list[QARecord]:
    """All records of `path`, strictly; `fmt` is one of FORMATS or "auto" (from the first
    record). The first bad row raises `SourceError` naming its file and line."""
    path = Path(path)
    _check_format_name(fmt, FORMATS)
    if not path.is_file():
        raise SourceError(f"question file not found: {path}")

    def raise_it(error: RowError, where: str) -> None:
        raise error

    return _records(_file_rows(path), fmt, source or path.stem, raise_it)[1]


def read_source(
    path: str | Path,
    fmt: str = "auto",
    name: str | None = None,
    split: str = "train",
    subset: str | None = None,
) -> LoadedSource:
    """One source, skipping bad rows (counted by reason in `skipped`). `fmt` is one of FORMATS,
    `hf` (a `datasets` name or folder, `split` and `subset` apply) or "auto"."""
    _check_format_name(fmt, FORMATS + (HF_FORMAT,))
    if fmt == HF_FORMAT:
        rows, row_fmt = _hf_rows(str(path), split, subset), "auto"
    else:
        if not Path(path).is_file():
            raise SourceError(f"question file not found: {path}")
        rows, row_fmt = _file_rows(Path(path)), fmt
    name = name or Path(path).stem
    loaded = LoadedSource(name=name, path=str(path), format=fmt)

    def skip(error: RowError, where: str) -> None:
        loaded.skipped.append(SkippedRow(where, error.reason, str(error)))

    detected, loaded.records = _records(rows, row_fmt, name, skip)
    loaded.format = detected if fmt != HF_FORMAT else f"{HF_FORMAT}/{detected}"
    return loaded
