"""Typed YAML configuration: `extends:`, dotted command-line overrides, strict validation.

Every setting is a dataclass; each field is declared once with `doc(default, help)`, and that
help text is the field's documentation (an entry point's `--help` prints it all, with the
values its config resolves to: `recipe.config_fields`). A YAML file may name a base with
`extends: other.yaml` (relative to itself); the child's keys override the base's, section by
section. Overrides `section.key=value` come last and are coerced to the
field's declared type. Unknown keys and wrong types raise `ConfigError` naming the full key path
and the file (or "command line") that supplied the value. A field typed `dict[str, Section]`
holds named sections (`sources: {hotpotqa: {path: ...}}`), each validated like any section.

Bounds are declared with the field (`doc(..., ge=, gt=, le=, lt=)`), and a float must be finite
unless `finite=False`. A rule across fields lives in the section's `__post_init__` (it then also
holds for sections built in code) or `check_fields()` (checked only when a config is loaded);
either raises `FieldError` with the keys it is about, and the error names each key's source.
An entry point's rules that need more than the config (the environment, a model folder) go to
`parse_cli(..., check=)`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from recipe.atomic import write_text

T = TypeVar("T")
COMMAND_LINE = "command line"


class ConfigError(ValueError):
    """A configuration value is unknown, missing or of the wrong type."""


def doc(
    default: Any,
    help: str,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    finite: bool = True,
    **kwargs: Any,
) -> Any:
    """A dataclass field with a default and its one-line documentation; `ge` / `gt` / `le` /
    `lt` bound a number, and a float (or a float inside a list or mapping) must be finite unless
    `finite=False` (a value outside is a `ConfigError` naming the key and its source)."""
    metadata = {"help": help, "ge": ge, "gt": gt, "le": le, "lt": lt, "finite": finite}
    if isinstance(default, list | dict):
        value = default
        return dataclasses.field(default_factory=lambda: value.copy(), metadata=metadata, **kwargs)
    if dataclasses.is_dataclass(default) and not isinstance(default, type):
        # A section instance is the default as given (non-class defaults included); each config
        # gets its own copy.
        section = default
        return dataclasses.field(
            default_factory=lambda: copy.deepcopy(section), metadata=metadata, **kwargs
        )
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


class FieldError(ValueError):
    """A section's own check failed (a rule across fields, or one `doc` bounds cannot say).

    Raised from a section's `__post_init__` or `check_fields()`; `fields` are the keys (relative
    to the section) the message is about, so the config loader can name where each came from.
    """

    def __init__(self, fields: str | Sequence[str], message: str) -> None:
        super().__init__(message)
        self.fields = (fields,) if isinstance(fields, str) else tuple(fields)


_BOUNDS = (
    ("ge", ">=", lambda v, b: v >= b),
    ("gt", ">", lambda v, b: v > b),
    ("le", "<=", lambda v, b: v <= b),
    ("lt", "<", lambda v, b: v < b),
)


def _check_bounds(value: Any, field: dataclasses.Field, where: Where) -> None:
    if field.metadata.get("finite", True):
        _check_finite(value, where)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    for key, sign, holds in _BOUNDS:
        bound = field.metadata.get(key)
        if bound is not None and not holds(value, bound):
            raise ConfigError(f"{where}: must be {sign} {bound}, got {value!r}")


def _check_finite(value: Any, where: Where) -> None:
    """NaN and infinities pass every comparison test the wrong way (a NaN bound check is
    False for >= and <= alike), so floats are refused here first, in lists and mappings too."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_finite(item, where.item(i))
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_finite(item, where.key(key))


# ---------------------------------------------------------------- reading YAML with extends


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file not found: {path}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _merge(base: dict, child: dict, sources: dict, child_file: str, prefix: str = "") -> dict:
    """Deep-merge child into base; `sources` maps each dotted key path to the file that set it."""
    merged = dict(base)
    for key, value in child.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, sources, child_file, prefix=f"{path}.")
        else:
            merged[key] = value
            _record_sources(value, path, child_file, sources)
    return merged


def _record_sources(value: Any, path: str, source: str, sources: dict) -> None:
    sources[path] = source
    if isinstance(value, dict):
        for key, sub in value.items():
            _record_sources(sub, f"{path}.{key}", source, sources)


def load_yaml_tree(path: str | Path, sources: dict, _seen: tuple = ()) -> dict:
    """Read a YAML file and its `extends:` chain into one dict (child wins)."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: `extends` cycle through {' -> '.join(map(str, _seen))}")
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    base: dict = {}
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: `extends` must be a file name, got {parent!r}")
        base = load_yaml_tree(path.parent / parent, sources, _seen + (path,))
    return _merge(base, data, sources, str(path))


# ---------------------------------------------------------------- dotted overrides


def apply_overrides(tree: dict, overrides: Sequence[str], schema: type, sources: dict) -> dict:
    """Set `a.b.c=value` entries; the raw string is coerced later against the field type."""
    tree = dict(tree)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(
                f"{COMMAND_LINE}: override {item!r} is not of the form key.path=value"
            )
        key_path, raw = item.split("=", 1)
        keys = key_path.strip().split(".")
        node = tree
        for depth, key in enumerate(keys[:-1]):
            child = node.get(key)
            if not isinstance(child, dict):  # a section (or named section) this override makes
                sources[".".join(keys[: depth + 1])] = COMMAND_LINE
            node[key] = dict(child) if isinstance(child, dict) else {}
            node = node[key]
        node[keys[-1]] = _OverrideValue(raw)
        sources[key_path.strip()] = COMMAND_LINE
    return tree


@dataclasses.dataclass(frozen=True)
class _OverrideValue:
    """A command-line string, parsed against the target field's type rather than as YAML."""

    raw: str


# ---------------------------------------------------------------- validation and coercion

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: Where) -> Any:
    """Return `value` as type `tp` or raise ConfigError mentioning `where`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if isinstance(value, _OverrideValue):
        value = _parse_override(value.raw, tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        return [_coerce(v, item_tp, where.item(i)) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        value_tp = args[1] if len(args) == 2 else Any
        return {k: _coerce(v, value_tp, where.key(k)) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        raise ConfigError(f"{where}: expected a section (mapping), got {value!r}")
    return _coerce_scalar(value, tp, where)


def _coerce_scalar(value: Any, tp: Any, where: Where) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "2e-6" (no dot) as a string.
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")
    raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _parse_override(raw: str, tp: Any) -> Any:
    """Interpret a command-line string for a field of type `tp`."""
    text = raw.strip()
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        if text.lower() in ("null", "none", "~"):
            return None
        non_none = [a for a in args if a is not type(None)]
        return _parse_override(raw, non_none[0]) if len(non_none) == 1 else yaml.safe_load(text)
    if tp is str:
        return raw
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        return text
    if tp is int:
        try:
            return int(text)
        except ValueError:
            return text
    if tp is float:
        try:
            return float(text)
        except ValueError:
            return text
    if origin is typing.Literal:
        return text if all(isinstance(a, str) for a in args) else yaml.safe_load(text)
    return yaml.safe_load(text)


def build(schema: type[T], tree: dict, sources: dict, prefix: str = "") -> T:
    """Instantiate dataclass `schema` from a nested dict, strictly."""
    if not isinstance(tree, dict):
        raise ConfigError(f"{prefix.rstrip('.') or '<root>'}: expected a mapping")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    for key in tree:
        if key not in fields:
            path = f"{prefix}{key}"
            known = ", ".join(sorted(fields))
            raise ConfigError(
                f"{_where(path, sources)}: unknown key; {prefix.rstrip('.') or 'the top level'} "
                f"accepts: {known}"
            )
    kwargs = {}
    for name, value in tree.items():
        path = f"{prefix}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp) and not isinstance(value, _OverrideValue):
            kwargs[name] = build(tp, value or {}, sources, prefix=f"{path}.")
        elif _section_of_map(tp):
            if isinstance(value, _OverrideValue):  # `filter.sources={a: {path: x}}`, whole
                value = yaml.safe_load(value.raw)
            kwargs[name] = _build_section_map(_section_of_map(tp), value, path, sources)
        else:
            kwargs[name] = _coerce(value, tp, Where(path, sources))
            _check_bounds(kwargs[name], fields[name], Where(path, sources))
    try:
        section = schema(**kwargs)
        check = getattr(section, "check_fields", None)
        if check is not None:
            check()
    except FieldError as e:
        blamed = ", ".join(_where(f"{prefix}{name}", sources) for name in e.fields)
        raise ConfigError(f"{blamed}: {e}") from e
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{prefix.rstrip('.') or '<root>'}: {e}") from e
    return section


def _section_of_map(tp: Any) -> type | None:
    """The section type of a `dict[str, Section]` field (named sections, e.g. data sources)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
        return args[1]
    return None


def _build_section_map(section: type, value: Any, path: str, sources: dict) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{_where(path, sources)}: expected a mapping of name: section")
    return {
        str(key): build(section, sub or {}, sources, prefix=f"{path}.{key}.")
        for key, sub in value.items()
    }


def _where(path: str, sources: dict, suffix: str = "") -> str:
    """`path (from <file or command line or defaults>)`: the source of the key, else of the
    nearest enclosing key that has one; `suffix` names a part of the value (a list item)."""
    key = path
    source = sources.get(key)
    while source is None and "." in key:
        key = key.rsplit(".", 1)[0]
        source = sources.get(key)
    return f"{path}{suffix} (from {source or 'defaults'})"


@dataclasses.dataclass(frozen=True)
class Where:
    """A key path being validated; prints as `path (from source)` in error messages. Mapping
    keys are key paths of their own (an override may set one); list items share the list's
    source (an override sets a list whole)."""

    path: str
    sources: dict
    suffix: str = ""

    def __str__(self) -> str:
        return _where(self.path, self.sources, self.suffix)

    def key(self, key: Any) -> Where:
        if self.suffix:
            return Where(self.path, self.sources, f"{self.suffix}.{key}")
        return Where(f"{self.path}.{key}", self.sources)

    def item(self, index: int) -> Where:
        return Where(self.path, self.sources, f"{self.suffix}[{index}]")


def load_config(
    schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()
) -> T:
    """Load `path` (and its `extends:` chain), apply overrides, validate into `schema`."""
    return _load_with_sources(schema, path, overrides)[0]


def _load_with_sources(
    schema: type[T], path: str | Path | None, overrides: Sequence[str]
) -> tuple[T, dict]:
    sources: dict = {}
    tree = load_yaml_tree(path, sources) if path is not None else {}
    tree = apply_overrides(tree, overrides, schema, sources)
    return build(schema, tree, sources), sources


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, run_dir: str | Path, name: str = "config.yaml") -> Path:
    """Write the resolved config (every field, defaults included) into the run folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return write_text(run_dir / name, yaml.safe_dump(to_dict(cfg), sort_keys=False))


def parse_cli(
    schema: type[T],
    argv: Sequence[str] | None = None,
    default: str | None = None,
    check: Callable[[T], None] | None = None,
    usage: str | None = None,
) -> T:
    """`--config FILE` (or `default`) followed by any number of `key.path=value` overrides.

    Meant for entry points: `-h`/`--help` prints every field with the value the config and
    overrides resolve it to (`recipe.config_fields`) and exits 0; a bad config exits 2 with the
    one-line message instead of a traceback. `check(cfg)` adds the entry point's own rules (the
    environment, files the config names); a `FieldError` it raises is reported the same way,
    with the source of each key it names (keys are dotted paths from the top).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in argv):
        from recipe.config_fields import help_text

        usage = (
            usage or f"usage: python -m {_entry_point()} [--config FILE] [section.key=value ...]"
        )
        print(help_text(schema, argv, default, usage))
        raise SystemExit(0)
    path, overrides = split_argv(argv, default)
    try:
        cfg, sources = _load_with_sources(schema, path, overrides)
        if check is not None:
            check(cfg)
    except FieldError as e:
        blamed = ", ".join(_where(name, sources) for name in e.fields)
        print(f"config error: {blamed}: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    except ConfigError as e:
        print(f"config error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    return cfg


def split_argv(argv: Sequence[str], default: str | None) -> tuple[str | None, list[str]]:
    """The config file (`--config FILE`, `--config=FILE`, else `default`) and the overrides."""
    path, overrides = default, []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config" and i + 1 < len(argv):
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        else:
            overrides.append(arg)
        i += 1
    return path, overrides


def _entry_point() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is None:
        return Path(sys.argv[0]).name
    return spec.name.removesuffix(".__main__")  # `python -m miniwiki`, not `miniwiki.__main__`
