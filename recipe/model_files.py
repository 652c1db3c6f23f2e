"""Checks of a model folder's weight files that read a few bytes, not the weights.

A safetensors file is an 8-byte header length, a JSON header whose `data_offsets` locate every
tensor, then the tensor bytes; its exact size follows from the header. A file cut short (a copy
or an export that stopped midway, a full disk) is found here and named, instead of failing
inside the loader with a message that names no file.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from recipe.exit_status import BAD_INPUT

HEADER_LENGTH_BYTES = 8
MAX_HEADER_BYTES = 100 << 20  # safetensors' own cap on the header


class ModelFileError(OSError):
    """A weight file in a model folder is damaged (the message names it and what to do)."""

    exit_status = BAD_INPUT


def safetensors_problem(path: Path) -> str | None:
    """Why `path` is not a complete safetensors file, or None when its size is as declared."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_LENGTH_BYTES)
        if len(head) < HEADER_LENGTH_BYTES:
            return f"{size} bytes, shorter than a safetensors header"
        (header_bytes,) = struct.unpack("<Q", head)
        if header_bytes > MAX_HEADER_BYTES or HEADER_LENGTH_BYTES + header_bytes > size:
            return f"{size} bytes, cut inside its header"
        try:
            header = json.loads(f.read(header_bytes))
        except ValueError:
            return "its header is not valid JSON"
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry
    ]
    expected = HEADER_LENGTH_BYTES + header_bytes + max(ends, default=0)
    if size < expected:
        return f"truncated: {size} of {expected} bytes"
    return None


def check_model_files(folder: str | Path) -> None:
    """Raise `ModelFileError` naming the first damaged `*.safetensors` file in `folder` (a
    folder that does not exist, or a hub id, is left to the loader)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*.safetensors")):
        problem = safetensors_problem(path)
        if problem is not None:
            raise ModelFileError(
                f"{path} is damaged ({problem}); copy or export the model folder again"
            )
