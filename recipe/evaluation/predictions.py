"""A method's predictions file and the record that vouches for it.

    predictions/<name>.jsonl           one scored row per question, in the sample's order
    predictions/<name>.settings.json   {"digest": <settings digest>, "rows": n, "sha256": ...}

The record is written after the file, with the file's row count and hash. A later run reuses the
file only when the settings digest is the same and the content checks: every line is JSON, one
row per question of the sample, the sample's ids in its order, each row scored, and the bytes
are the ones written. Anything else (a line lost, a torn or edited file, an empty one, garbage)
makes the run redo the file and say why in one line: a damaged file is never scored into the
table, and never ends the run with a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from recipe.atomic import write_json, write_jsonl
from recipe.fingerprint import file_sha256

STAMP_SUFFIX = ".settings.json"
SCORED_KEYS = ("id", "prediction", "em", "cover_em", "f1")


def stamp_path(path: Path) -> Path:
    return path.with_suffix(STAMP_SUFFIX)


def write_predictions(path: Path, rows: Sequence[dict], digest: str) -> None:
    """The file, then its record (a kill in between leaves a file no record vouches for)."""
    write_jsonl(path, rows)
    write_json(stamp_path(path), {"digest": digest, "rows": len(rows), "sha256": file_sha256(path)})


def _parse(path: Path) -> tuple[list[dict] | None, str | None]:
    rows = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (UnicodeDecodeError, json.JSONDecodeError):
                return None, f"line {number} is not JSON (a torn or foreign file)"
            if not isinstance(row, dict):
                return None, f"line {number} is not a row"
            rows.append(row)
    return rows, None


def reusable_rows(path: Path, digest: str, ids: Sequence[str]) -> tuple[list[dict] | None, str]:
    """(the rows, "") when the file can be reused for the questions `ids`; else (None, why)."""
    stamp = stamp_path(path)
    if not path.is_file():
        return None, "no predictions yet"
    try:
        record = json.loads(stamp.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{stamp.name} is missing or unreadable"
    if not isinstance(record, dict) or record.get("digest") != digest:
        return None, "its settings changed"
    rows, problem = _parse(path)
    if rows is None:
        return None, problem
    if len(rows) != len(ids):
        return None, f"it holds {len(rows)} rows for {len(ids)} questions"
    if [str(row.get("id")) for row in rows] != [str(i) for i in ids]:
        return None, "its rows are not the sample's questions in order"
    unscored = next((k for k in SCORED_KEYS if any(k not in row for row in rows)), None)
    if unscored is not None:
        return None, f"some rows have no {unscored!r}"
    if "sha256" not in record:
        return None, f"{stamp.name} holds no content hash to check it against"
    if record["sha256"] != file_sha256(path):
        return None, "its content is not what was written (edited or replaced)"
    return rows, ""
