"""Difficulty results of a run on several ranks: one append-only file per rank, merged into one.

    difficulty/results.jsonl          the merged results (the only file of a one-rank run)
    difficulty/results.rank<r>.jsonl  what rank r appended during a run on several ranks

A rank appends only to its own file, so no two processes ever write one file and a kill tears
at most each rank's last line. Rank 0 merges the rank files into `results.jsonl` when a run
ends, and again when a run starts (the files a killed run left), before anything is read: so the
rank files only ever hold lines of one run, and a key's lines keep their order (a question whose
text changed between two runs is judged by its newer lines, as in one file). The merged file is
written whole (atomically) before the rank files are removed; a kill in between leaves lines
that are in both, which is harmless: a later line for the same key and round replaces an
earlier one with the same content.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from data_filtering.results import ResultsStore, StoredRounds
from recipe.atomic import atomic_file

RANK_FILE = re.compile(r"results\.rank(\d+)\.jsonl")


def rank_file(folder: Path, rank: int) -> Path:
    return folder / f"results.rank{rank}.jsonl"


def rank_files(folder: Path) -> list[Path]:
    """The rank files in `folder`, in rank order."""
    found = {}
    for path in folder.glob("results.rank*.jsonl"):
        match = RANK_FILE.fullmatch(path.name)
        if match:
            found[int(match.group(1))] = path
    return [found[r] for r in sorted(found)]


def _complete_lines(path: Path) -> bytes:
    """The file's bytes up to its last newline (a torn last line is dropped)."""
    data = path.read_bytes() if path.is_file() else b""
    return data[: data.rfind(b"\n") + 1]


def merge_rank_files(folder: Path, merged_name: str) -> int:
    """Fold every rank file into `merged_name` (rank 0 only); returns how many were merged."""
    parts = rank_files(folder)
    if not parts:
        return 0
    merged = folder / merged_name
    with atomic_file(merged, fsync=True) as tmp:
        tmp.write_bytes(b"".join(_complete_lines(p) for p in [merged, *parts]))
    for part in parts:
        part.unlink()
    return len(parts)


class RankResults:
    """The results store of one rank: reads the merged file, appends to the rank's own file
    (with one rank, the merged file itself)."""

    def __init__(self, folder: Path, merged_name: str, rank: int, world: int):
        self.merged = ResultsStore(folder / merged_name)
        self.own = self.merged if world == 1 else ResultsStore(rank_file(folder, rank))

    def read(self) -> StoredRounds:
        return self.merged.read()

    def append(self, rows: Iterable[dict]) -> None:
        self.own.append(rows)
