"""Atomic writes: every file or folder the project writes appears whole or not at all.

The content goes to a temporary sibling first (same folder, so the same file system) and is
renamed over the target with `os.replace`, which POSIX makes atomic for files. A reader (a
resumed run, make's timestamp check, another process) never sees a half-written file; a crash
leaves at worst a `*.tmp` sibling, which the next write replaces. A folder cannot be replaced
atomically when the target exists, so `atomic_dir` removes the old folder right before the
rename; writers that must never lose the old copy (checkpoints) write to a new name instead.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_SUFFIX = ".tmp"


def tmp_sibling(path: Path) -> Path:
    """Where `atomic_file` / `atomic_dir` stage `path` (other ranks of a run write there too)."""
    return path.with_name(path.name + TMP_SUFFIX)


@contextmanager
def atomic_file(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces `path`, on error it is removed.

    `fsync` flushes the data to disk before the rename (for state a crash must not lose).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yields an empty temporary folder to fill; on success it takes the place of `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_sibling(path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def write_text(path: str | Path, text: str, fsync: bool = False) -> Path:
    with atomic_file(path, fsync) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any, fsync: bool = False, **dump_kwargs: Any) -> Path:
    """`json.dump(obj, **dump_kwargs)` (default: indent 2, UTF-8 kept as is), atomically."""
    dump_kwargs = {"indent": 2, "ensure_ascii": False, **dump_kwargs}
    return write_text(path, json.dumps(obj, **dump_kwargs), fsync)


def write_jsonl(path: str | Path, rows: Iterable[Any]) -> Path:
    """One JSON value per line, atomically."""
    with atomic_file(path) as tmp, open(tmp, "w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)
