"""The append-only results file of difficulty estimation: one line per question and round.

    {"key": "hotpotqa/5a8b57f2", "check": "3f0c9a1e", "round": 2,
     "correct": [0, 1], "searched": [1, 1], "predictions": ["Oslo", "Bergen"]}

`key` is `<source>/<record id>`; `check` is a hash of the question text and its gold answers, so
a line written for a question whose text or answers have since changed is ignored (and counted)
instead of answering for the new question. Lines are appended, flushed and fsynced after each
batch of questions, so a killed run loses at most the batch it was rolling out. A kill in the
middle of a write leaves a torn last line: reading skips it, and opening for append cuts it off
first, so the next line never lands glued to a fragment. A later line for the same key and round
replaces an earlier one (a batch redone after a torn write).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from data_filtering.records import QARecord

CHECK_CHARS = 16


def question_check(record: QARecord) -> str:
    """A short hash of what the rollouts were scored against: the question and its golds."""
    text = json.dumps([record.question, record.answers], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:CHECK_CHARS]


@dataclass
class SampleOutcome:
    correct: bool
    searched: bool
    prediction: str | None


@dataclass
class StoredRounds:
    """What the results file holds, keyed by question, and what it could not use."""

    rounds: dict[str, dict[int, list[SampleOutcome]]] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)
    unreadable_lines: int = 0  # not JSON or not a round line (a torn tail included)


class ResultsStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self) -> StoredRounds:
        stored = StoredRounds()
        if not self.path.is_file():
            return stored
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    key, check, round_index = row["key"], row["check"], int(row["round"])
                    outcomes = [
                        SampleOutcome(bool(c), bool(s), p)
                        for c, s, p in zip(
                            row["correct"], row["searched"], row["predictions"], strict=True
                        )
                    ]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    stored.unreadable_lines += 1
                    continue
                if stored.checks.get(key, check) != check:
                    stored.rounds[key] = {}  # the question changed under this key: start over
                stored.checks[key] = check
                stored.rounds.setdefault(key, {})[round_index] = outcomes
        return stored

    def _cut_torn_tail(self) -> None:
        """Drop bytes after the last newline (a line a kill tore in half)."""
        if not self.path.is_file():
            return
        with open(self.path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            end = size
            while end > 0:
                start = max(0, end - 65536)
                f.seek(start)
                chunk = f.read(end - start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    f.truncate(start + newline + 1)
                    return
                end = start
            f.truncate(0)

    def append(self, rows: Iterable[dict]) -> None:
        """Append round lines; on disk (fsync) before returning."""
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        if not lines:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_tail()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())


def round_line(key: str, check: str, round_index: int, outcomes: list[SampleOutcome]) -> dict:
    return {
        "key": key,
        "check": check,
        "round": round_index,
        "correct": [int(o.correct) for o in outcomes],
        "searched": [int(o.searched) for o in outcomes],
        "predictions": [o.prediction for o in outcomes],
    }
