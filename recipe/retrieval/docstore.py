"""Row-addressed passage store on disk: a jsonl file plus an int64 offsets array.

The index maps a query to row numbers; the doc store maps a row to its `Passage` by reading one
line at a known byte offset, so a 21M-passage Wikipedia never sits in memory as Python strings.
Reads use `os.pread`, which is safe from several threads at once. The last offset is the
documents file's size, so a store cut short (a copy that stopped, a full disk) is refused when
it is opened rather than at the first search that reaches a lost passage.
"""

from __future__ import annotations

import json
import os
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from recipe.atomic import atomic_file
from recipe.retrieval.base import Passage, RetrievalInputError

DOCS_FILE = "docs.jsonl"
OFFSETS_FILE = "docs.offsets.npy"


def write_docstore(passages: Iterable[Passage], out_dir: str | Path) -> int:
    """Write the passages under `out_dir`; both files appear atomically. Returns the count."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    offsets = array("q", [0])
    # The offsets appear after the documents, and `docstore_exists` wants both.
    with atomic_file(out_dir / DOCS_FILE) as docs_tmp, open(docs_tmp, "wb") as f:
        for p in passages:
            line = json.dumps([p.id, p.title, p.text], ensure_ascii=False).encode() + b"\n"
            f.write(line)
            offsets.append(offsets[-1] + len(line))
    with atomic_file(out_dir / OFFSETS_FILE) as offsets_tmp, open(offsets_tmp, "wb") as f:
        np.save(f, np.frombuffer(offsets, dtype=np.int64))
    return len(offsets) - 1


class DocStoreDamaged(RetrievalInputError, RuntimeError):
    """The doc store's files disagree with each other or with the index manifest."""


REBUILD_HINT = "copy the index folder again or rebuild it (build_index --overwrite)"


def docstore_exists(index_dir: str | Path) -> bool:
    index_dir = Path(index_dir)
    return (index_dir / DOCS_FILE).is_file() and (index_dir / OFFSETS_FILE).is_file()


class DocStore:
    """Read-only `Sequence[Passage]` over a folder written by `write_docstore`."""

    def __init__(self, index_dir: str | Path, expected_count: int | None = None) -> None:
        """`expected_count`: the passage count the index manifest recorded at build time."""
        index_dir = Path(index_dir)
        self._fd = -1
        try:
            self.offsets = np.load(index_dir / OFFSETS_FILE, mmap_mode="r")
        except ValueError as e:  # a .npy file cut short
            raise DocStoreDamaged(
                f"{index_dir / OFFSETS_FILE} is unreadable ({e}); {REBUILD_HINT}"
            ) from None
        self._fd = os.open(index_dir / DOCS_FILE, os.O_RDONLY)
        size, expected = os.fstat(self._fd).st_size, int(self.offsets[-1])
        if size != expected:
            raise DocStoreDamaged(
                f"{index_dir / DOCS_FILE} is {size} bytes where {OFFSETS_FILE} says {expected} "
                f"({len(self)} passages); {REBUILD_HINT}"
            )
        if expected_count is not None and len(self) != expected_count:
            raise DocStoreDamaged(
                f"{index_dir / OFFSETS_FILE} lists {len(self)} passages where the index manifest "
                f"says {expected_count}; {REBUILD_HINT}"
            )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, row: int) -> Passage:
        if not -len(self) <= row < len(self):
            raise IndexError(f"row {row} out of range for {len(self)} passages")
        row = row % len(self)
        start, end = int(self.offsets[row]), int(self.offsets[row + 1])
        pid, title, text = json.loads(os.pread(self._fd, end - start, start))
        return Passage(pid, title, text)

    def __iter__(self) -> Iterator[Passage]:
        return (self[row] for row in range(len(self)))

    def slice(self, start: int, stop: int) -> list[Passage]:
        """Rows [start, stop) with one read."""
        stop = min(stop, len(self))
        if start >= stop:
            return []
        first, last = int(self.offsets[start]), int(self.offsets[stop])
        blob = os.pread(self._fd, last - first, first)
        return [Passage(*json.loads(line)) for line in blob.splitlines()]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()
