"""Content fingerprints: what changes a step's fingerprint and what does not."""

from __future__ import annotations

from pathlib import Path

from recipe.fingerprint import (
    REPO_ROOT,
    changed_parts,
    code_closure,
    config_digest,
    file_digest,
    source_digest,
    step_fingerprint,
)

MODULE = '''"""Module docstring."""

import os  # a comment


def f(x):
    """Function docstring."""
    return x + 1


class C:
    """Only a docstring."""
'''


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_comments_docstrings_and_layout_do_not_count(tmp_path):
    path = _write(tmp_path / "m.py", MODULE)
    before = source_digest(path)
    edited = (
        MODULE.replace("Function docstring.", "Another text, longer.")
        .replace("# a comment", "# another comment")
        .replace('"""Module docstring."""', '"""Rewritten."""\n\n\n')
    )
    _write(path, edited)
    assert source_digest(path) == before
    _write(path, MODULE.replace("x + 1", "x + 2"))
    assert source_digest(path) != before


def test_a_string_that_is_not_a_docstring_counts(tmp_path):
    path = _write(tmp_path / "m.py", 'x = 1\n"""kept: not first in its scope"""\n')
    before = source_digest(path)
    _write(path, 'x = 1\n"""changed"""\n')
    assert source_digest(path) != before


def test_yaml_config_by_resolved_tree(tmp_path):
    _write(tmp_path / "base.yaml", "trainer:\n  steps: 4\n  lr: 1.0e-5\n")
    child = _write(tmp_path / "child.yaml", "extends: base.yaml\n# why\nreward:\n  w: 0.5\n")
    before = config_digest(child)
    _write(tmp_path / "child.yaml", "extends: base.yaml\nreward: {w: 0.5}  # same value\n")
    assert config_digest(child) == before
    _write(tmp_path / "base.yaml", "trainer:\n  lr: 1.0e-5\n  steps: 4\n")  # key order only
    assert config_digest(child) == before
    _write(tmp_path / "base.yaml", "trainer:\n  steps: 5\n  lr: 1.0e-5\n")  # the parent counts
    assert config_digest(child) != before


def test_file_digest_reuses_known_hash_only_when_size_and_mtime_agree(tmp_path):
    path = _write(tmp_path / "data.jsonl", '{"q": 1}\n')
    first = file_digest(path)
    fake = {**first, "sha256": "recorded"}
    assert file_digest(path, fake)["sha256"] == "recorded"
    _write(path, '{"q": 2, "longer": true}\n')
    assert file_digest(path, fake)["sha256"] not in ("recorded", first["sha256"])


def test_folder_digest_covers_each_file(tmp_path):
    folder = tmp_path / "final"
    _write(folder / "config.json", "{}")
    _write(folder / "weights.bin", "abc")
    before = file_digest(folder)
    assert set(before["files"]) == {"config.json", "weights.bin"}
    _write(folder / "weights.bin", "abd")
    assert file_digest(folder, before)["sha256"] != before["sha256"]
    _write(folder / ".lock", "1234")
    reported = file_digest(folder, ignore=["*.json"])
    assert set(reported["files"]) == {"weights.bin"}
    _write(folder / "config.json", '{"changed": 1}')
    assert file_digest(folder, ignore=["*.json"])["sha256"] == reported["sha256"]


def _tiny_repo(root: Path) -> None:
    _write(root / "pkg/__init__.py", "")
    _write(root / "pkg/entry.py", "from pkg import helper\nfrom .sub import deep\n")
    _write(root / "pkg/helper.py", "import json\n\ndef h():\n    from pkg import lazy\n")
    _write(root / "pkg/lazy.py", "Y = 1\n")
    _write(root / "pkg/sub/__init__.py", "")
    _write(root / "pkg/sub/deep.py", "Z = 1\n")
    _write(root / "pkg/unused.py", "W = 1\n")


def test_code_closure_follows_imports_inside_the_repository(tmp_path):
    _tiny_repo(tmp_path)
    names = {str(p.relative_to(tmp_path)) for p in code_closure(["pkg.entry"], tmp_path)}
    assert names == {
        "pkg/__init__.py",
        "pkg/entry.py",
        "pkg/helper.py",
        "pkg/lazy.py",  # imported inside a function: still code the step may run
        "pkg/sub/__init__.py",
        "pkg/sub/deep.py",
    }


def test_step_fingerprint_names_what_changed(tmp_path):
    _tiny_repo(tmp_path)
    cfg = _write(tmp_path / "c.yaml", "a: 1\n")
    data = _write(tmp_path / "d.jsonl", "1\n")

    def fp(overrides=("x=1",)):
        return step_fingerprint([cfg], overrides, [data], ["pkg.entry"], root=tmp_path)

    base = fp()
    assert fp()["fingerprint"] == base["fingerprint"]
    _write(tmp_path / "pkg/unused.py", "W = 2\n")
    assert fp()["fingerprint"] == base["fingerprint"]
    _write(tmp_path / "pkg/sub/deep.py", "Z = 2\n")
    assert changed_parts(base, fp()) == ["code:pkg/sub/deep.py"]
    assert changed_parts(base, fp(("x=2",))) == ["code:pkg/sub/deep.py", "overrides"]
    _write(tmp_path / "pkg/sub/deep.py", "Z = 1\n")
    _write(data, "2\n")
    assert changed_parts(base, fp()) == [f"input:{data}"]


def test_a_missing_input_is_a_part_of_its_own(tmp_path):
    absent = tmp_path / "not_yet.jsonl"
    before = step_fingerprint(inputs=[absent], root=tmp_path)
    assert before["parts"][f"input:{absent}"] == "missing"
    _write(absent, "1\n")
    assert changed_parts(before, step_fingerprint(inputs=[absent], root=tmp_path)) == [
        f"input:{absent}"
    ]


def test_the_stage_entry_point_closure_stays_inside_its_dependencies():
    names = {str(p.relative_to(REPO_ROOT)) for p in code_closure(["stages.stage1"])}
    assert {"stages/stage1.py", "recipe/trainer.py", "rewards/stage.py"} <= names
    assert not any(n.startswith(("miniwiki/", "benchmarks/", "tests/")) for n in names)
