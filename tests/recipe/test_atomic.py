"""Atomic writes: a failed write leaves the old content and no temporary file behind."""

from __future__ import annotations

import json

import pytest

from recipe.atomic import atomic_dir, atomic_file, write_json, write_jsonl, write_text


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_json_and_jsonl_round_trip(tmp_path):
    write_json(tmp_path / "x.json", {"b": "ü", "a": 1}, sort_keys=True)
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1, "b": "ü"}
    write_jsonl(tmp_path / "sub" / "x.jsonl", [{"i": 0}, {"i": 1}])
    lines = (tmp_path / "sub" / "x.jsonl").read_text().splitlines()
    assert [json.loads(line)["i"] for line in lines] == [0, 1]


def test_a_folder_appears_whole_or_not_at_all(tmp_path):
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(OSError), atomic_dir(tmp_path / "model") as tmp:
        (tmp / "weights").write_text("v2 half")
        raise OSError(28, "No space left on device")
    assert (tmp_path / "model" / "weights").read_text() == "v1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
