"""The one question record every data source is turned into, and its jsonl round trip.

Labels travel with the record (`answers`, and in `meta` whatever the source knew: question
type, level, supporting facts, sampled answers); nothing downstream parses a question back out
of prompt text.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recipe.atomic import write_jsonl

FIELDS = ("id", "question", "answers", "source", "meta")


@dataclass
class QARecord:
    id: str
    question: str
    answers: list[str]
    source: str
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: dict, where: str = "record") -> QARecord:
        """Strict: the five fields, of the right types, nothing else."""
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
        missing = [k for k in FIELDS if k not in row]
        extra = [k for k in row if k not in FIELDS]
        if missing or extra:
            raise ValueError(f"{where}: QARecord fields missing {missing}, unknown {extra}")
        if not isinstance(row["answers"], list) or not all(
            isinstance(a, str) for a in row["answers"]
        ):
            raise ValueError(f"{where}: `answers` must be a list of strings")
        if not isinstance(row["meta"], dict):
            raise ValueError(f"{where}: `meta` must be an object")
        for key in ("id", "question", "source"):
            if not isinstance(row[key], str):
                raise ValueError(f"{where}: `{key}` must be a string")
        return cls(**{k: row[k] for k in FIELDS})


def write_records(path: str | Path, records: Iterable[QARecord]) -> Path:
    """One JSON object per line; written to a temporary file and renamed (atomic)."""
    return write_jsonl(path, (r.to_dict() for r in records))


def read_records(path: str | Path) -> list[QARecord]:
    path = Path(path)
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{where}: not valid JSON: {e.msg}") from e
            out.append(QARecord.from_dict(row, where))
    return out
