"""One writer per output folder: an exclusive `flock` held for as long as the process writes.

Two launches of one stage on one run folder (two shells, `make` twice) would both append to
`metrics.jsonl` and save checkpoints over each other; two filters on one output folder would
both append rounds to the same results. The lock file `.lock` (`.lock.rank<r>` for rank r > 0,
so the ranks of one launch do not exclude each other) holds the owner's PID for the message
the second launch prints. The kernel drops a `flock` when its process dies, however it dies,
so a lock file left by a killed run is simply taken over. Within one process the lock is
re-entrant (the entry point takes it before loading models, the trainer again for its run).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recipe.exit_status import BAD_INPUT

LOCK_FILE = ".lock"

_held: dict[Path, list] = {}  # lock path -> [open file, holders in this process]


class FolderBusy(RuntimeError):
    """Another process writes into the folder (the entry points exit 2 on it)."""

    exit_status = BAD_INPUT


def lock_path(folder: str | Path, rank: int = 0) -> Path:
    name = LOCK_FILE if rank == 0 else f"{LOCK_FILE}.rank{rank}"
    return Path(folder).resolve() / name


def acquire(folder: str | Path, rank: int = 0, what: str = "folder") -> Path:
    """Take the folder's lock for this process, or raise `FolderBusy` naming the holder."""
    path = lock_path(folder, rank)
    if path in _held:
        _held[path][1] += 1
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise FolderBusy(
            f"{path.parent} is in use by another {what} (pid {holder}, lock {path}); wait for "
            "it to finish or stop it"
        ) from None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    _held[path] = [f, 1]
    return path


def release(path: Path) -> None:
    entry = _held.get(path)
    if entry is None:
        return
    entry[1] -= 1
    if entry[1] == 0:
        del _held[path]
        entry[0].close()  # closing drops the flock; the file stays for the next owner


@contextmanager
def folder_lock(folder: str | Path, rank: int = 0, what: str = "folder") -> Iterator[Path]:
    path = acquire(folder, rank, what)
    try:
        yield path
    finally:
        release(path)
