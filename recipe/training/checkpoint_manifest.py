"""What a checkpoint holds, recorded when it is written and checked before it is loaded.

`MANIFEST.json` lists every file of the checkpoint folder with its size, and the SHA-256 of
each file up to `trainer.checkpoint_hash_limit_mb` (larger files, a 7B model's optimizer
shards, would cost minutes to hash at each save: their size alone is checked). It is written
after every other file and before the `COMPLETE` marker, so a marker vouches for a manifest
that vouches for the files. A file cut short by a full disk, damaged by a copy or replaced by
another run's then fails `verify_checkpoint`, which names the first file that differs.
"""

from __future__ import annotations

import json
from pathlib import Path

from recipe.atomic import write_json
from recipe.fingerprint import file_sha256

MANIFEST = "MANIFEST.json"
MANIFEST_VERSION = 1
MB = 1 << 20


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: Path, hash_limit_mb: float, exclude: tuple[str, ...] = ()) -> Path:
    """Record every file under `folder` (but the names in `exclude`), fsynced."""
    limit = hash_limit_mb * MB
    files = {}
    for path in _files(folder):
        name = path.relative_to(folder).as_posix()
        if name in exclude:
            continue
        size = path.stat().st_size
        files[name] = {"size": size, "sha256": file_sha256(path) if size <= limit else None}
    manifest = {"version": MANIFEST_VERSION, "files": files}
    return write_json(folder / MANIFEST, manifest, fsync=True, sort_keys=True)


def verify_checkpoint(folder: Path) -> str | None:
    """None when every file the manifest lists is there with its size (and hash, where one was
    recorded); else what is wrong, naming the file."""
    path = folder / MANIFEST
    if not path.is_file():
        return f"no {MANIFEST} (written before the marker; nothing vouches for the files)"
    try:
        manifest = json.loads(path.read_text())
        files = manifest["files"]
        if manifest.get("version") != MANIFEST_VERSION or not isinstance(files, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return f"{path} is not a checkpoint manifest"
    for name, entry in sorted(files.items()):
        file = folder / name
        if not file.is_file():
            return f"{file} is missing"
        size = file.stat().st_size
        if size != entry.get("size"):
            return f"{file} has {size} bytes, {entry.get('size')} when written"
        if entry.get("sha256") and file_sha256(file) != entry["sha256"]:
            return f"{file} differs from what was written (SHA-256)"
    return None
