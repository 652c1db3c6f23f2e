"""Content fingerprints of what a pipeline step depends on: config, overrides, inputs, code.

A step is redone when one of these changes by content, not by timestamp: a `git pull` or a
docstring edit rewrites files without changing what runs. So Python source is hashed as its
syntax tree with docstrings dropped (comments and layout never reach the tree), a YAML config as
its resolved `extends:` tree (comments and key order do not count), and any other file by its
bytes. The code a step runs is the static import closure of its entry modules inside this
repository: an edit to a module the step never imports does not redo it.

Each part keeps its own digest, so a caller can say *what* changed, not only that something did.
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from recipe.config import load_yaml_tree

HASH_CHUNK_BYTES = 1 << 20
REPO_ROOT = Path(__file__).resolve().parent.parent


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _drop_docstrings(tree: ast.AST) -> None:
    scopes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if not isinstance(node, scopes) or not node.body:
            continue
        first = node.body[0]
        if (
            isinstance(first, ast.Expr)
            and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)
        ):
            # An emptied body would not be valid Python; `pass` keeps the tree well formed.
            node.body = node.body[1:] or [ast.Pass()]


def source_digest(path: str | Path) -> str:
    """Digest of a Python file's syntax tree without docstrings (bytes if it does not parse)."""
    raw = Path(path).read_bytes()
    try:
        tree = ast.parse(raw)
    except SyntaxError:
        return _sha256(raw)
    _drop_docstrings(tree)
    return _sha256(ast.dump(tree, include_attributes=False).encode())


def config_digest(path: str | Path) -> str:
    """Digest of a YAML config's resolved tree, its `extends:` chain included."""
    tree = load_yaml_tree(path, sources={})
    return _sha256(json.dumps(tree, sort_keys=True, default=str).encode())


def _counted(relative: str, ignore: Sequence[str]) -> bool:
    # Lock files hold the PID of whoever last wrote the folder, not content.
    name = Path(relative).name
    return not name.startswith(".lock") and not any(fnmatch.fnmatch(name, p) for p in ignore)


def file_digest(path: str | Path, known: dict | None = None, ignore: Sequence[str] = ()) -> dict:
    """{size, mtime_ns, sha256} of a file; `known`'s hash is reused when size and mtime agree,
    so a large unchanged input is not read again. A folder is hashed over its files, except
    those whose name matches an `ignore` pattern (a report written beside a model, say)."""
    path = Path(path)
    if path.is_dir():
        files = [str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()]
        known_files = (known or {}).get("files", {})
        digests = {
            name: file_digest(path / name, known_files.get(name))
            for name in sorted(files)
            if _counted(name, ignore)
        }
        joined = json.dumps({k: v["sha256"] for k, v in digests.items()}, sort_keys=True)
        return {"sha256": _sha256(joined.encode()), "files": digests}
    return stat_digest(path, known)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, read in chunks (model weights do not fit in memory twice)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def stat_digest(path: str | Path, known: dict | None = None) -> dict:
    """{size, mtime_ns, sha256} of one file; `known`'s hash is reused when size and mtime agree."""
    stat = os.stat(path)
    entry = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    if known and all(known.get(key) == entry[key] for key in ("size", "mtime_ns")):
        return {**entry, "sha256": known["sha256"]}
    return {**entry, "sha256": file_sha256(path)}


def _module_file(name: str, root: Path) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imported_names(path: Path, root: Path) -> set[str]:
    """Every module name an `import` anywhere in the file may load (function-level ones too)."""
    tree = ast.parse(path.read_bytes())
    package = _module_name(path, root)
    if path.name != "__init__.py":
        package = package.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in [*anchor, node.module or ""] if p)
            else:
                base = node.module or ""
            names.add(base)
            # `from pkg import sub` may name a submodule rather than an attribute.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def code_closure(modules: Iterable[str], root: Path = REPO_ROOT) -> list[Path]:
    """The repository's source files that importing `modules` may run: the modules, their
    packages' `__init__.py` files, and everything they import from this repository."""
    todo = list(modules)
    seen: set[Path] = set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
        for i in range(1, len(parts) + 1):
            path = _module_file(".".join(parts[:i]), root)
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imported_names(path, root))
    return sorted(seen)


def step_fingerprint(
    configs: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    inputs: Sequence[str | Path] = (),
    code: Sequence[str] = (),
    known: dict | None = None,
    root: Path = REPO_ROOT,
    ignore: Sequence[str] = (),
) -> dict:
    """{"fingerprint": digest of all parts, "parts": {name: digest}, "files": hash cache}.

    Parts are named `config:<path>`, `overrides`, `input:<path>`, `code:<path>`; `known` is a
    previous result's "files", reused for unchanged large inputs; `ignore` names file patterns
    inside input folders that do not count. A missing input is a part of
    its own ("missing"), so the step reruns once it appears.
    """
    known_files = (known or {}).get("files", {})
    parts: dict[str, str] = {}
    files: dict[str, dict] = {}
    for path in configs:
        parts[f"config:{path}"] = config_digest(path)
    parts["overrides"] = _sha256(json.dumps(list(overrides)).encode())
    for path in inputs:
        if not Path(path).exists():
            parts[f"input:{path}"] = "missing"
            continue
        files[str(path)] = file_digest(path, known_files.get(str(path)), ignore)
        parts[f"input:{path}"] = files[str(path)]["sha256"]
    for path in code_closure(code, root):
        parts[f"code:{path.relative_to(root)}"] = source_digest(path)
    whole = _sha256(json.dumps(parts, sort_keys=True).encode())
    return {"fingerprint": whole, "parts": parts, "files": files}


def changed_parts(old: dict, new: dict) -> list[str]:
    """Names of the parts added, removed or changed between two `step_fingerprint` results."""
    before, after = old.get("parts", {}), new.get("parts", {})
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
