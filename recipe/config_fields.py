"""The field reference an entry point's `--help` prints: one line per key, its type, bounds and
help, and, when a config file is in effect, the value that file (with its `extends:` chain and
the command line's overrides) resolves to and where that value came from.

    python -m stages.stage1 --config configs/embedded/stage1.yaml --help
    trainer.steps (int, 4 from configs/embedded/stage1.yaml, default 100, >= 1): ...

A field nothing set reads `(int, default 100, >= 1)`, as without a config. The YAML files are
the values a run takes; the dataclass defaults are only what a key falls back to, so a reference
that printed the defaults alone would misstate the run.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recipe.config import (
    _BOUNDS,
    COMMAND_LINE,
    ConfigError,
    _load_with_sources,
    _section_of_map,
    _type_name,
    split_argv,
)


def describe(
    schema: type, prefix: str = "", cfg: Any = None, sources: dict | None = None
) -> list[str]:
    """One line per field: dotted path, type, value and its source (given a loaded `cfg` and
    the `sources` its loader recorded), default, bounds and help."""
    lines = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        tp, path, help_text = hints[f.name], f"{prefix}{f.name}", f.metadata.get("help", "")
        value = getattr(cfg, f.name) if cfg is not None else None
        if dataclasses.is_dataclass(tp):
            lines.append(f"{path}: {help_text}")
            lines.extend(describe(tp, f"{path}.", value, sources))
            continue
        section = _section_of_map(tp)
        if section is not None:
            lines.append(f"{path}: {help_text}")
            # The names a config holds are the keys a user can set; `<name>` stands for any.
            for name, sub in sorted((value or {}).items()):
                lines.extend(describe(section, f"{path}.{name}.", sub, sources))
            lines.extend(describe(section, f"{path}.<name>."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        bounds = "".join(
            f", {sign} {f.metadata[key]}"
            for key, sign, _ in _BOUNDS
            if f.metadata.get(key) is not None
        )
        source = _source_of(path, sources, value != default) if cfg is not None else None
        resolved = f"{value!r} from {_shown(source)}, " if source is not None else ""
        lines.append(
            f"{path} ({_type_name(tp)}, {resolved}default {default!r}{bounds}): {help_text}"
        )
    return lines


def _source_of(path: str, sources: dict | None, changed: bool) -> str | None:
    """The file (or the command line) that set `path`; for a value that differs from its
    default but was not set by key (a section given whole on the command line), the nearest
    enclosing key's source; None for a default."""
    key = path
    while sources:
        if key in sources:
            return sources[key]
        if "." not in key or not changed:
            return None
        key = key.rsplit(".", 1)[0]
    return None


def _shown(source: str) -> str:
    """A config file relative to the working folder when it lies inside it."""
    if source == COMMAND_LINE:
        return source
    try:
        return (
            os.path.relpath(source) if Path(source).resolve().is_relative_to(Path.cwd()) else source
        )
    except ValueError:
        return source


def help_text(schema: type, argv: Sequence[str], default: str | None, usage: str) -> str:
    """The `--help` page: usage, what the values were resolved from, one line per field.

    A config that does not load (a missing file, an unknown key) still gets the reference, with
    the dataclass defaults and the reason on top, so `--help` never fails."""
    path, overrides = split_argv([a for a in argv if a not in ("-h", "--help")], default)
    head = [usage, ""]
    cfg = sources = None
    if path is not None or overrides:
        try:
            cfg, sources = _load_with_sources(schema, path, overrides)
        except ConfigError as e:
            head.append(f"config error: {e}; the values below are the defaults.")
        else:
            where = " and the command line" if overrides else ""
            origin = f"{_shown(str(Path(path).resolve()))}{where}" if path else COMMAND_LINE
            head.append(f"Values resolved from {origin}; a key nothing set shows its default.")
        head.append("")
    return "\n".join(head + describe(schema, cfg=cfg, sources=sources))
