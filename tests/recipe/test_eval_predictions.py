"""A predictions file is reused only when its settings and its content check: each kind of damage
is found and named in one line, never reused and never raised."""

from __future__ import annotations

import json

import pytest

from recipe.evaluation.predictions import reusable_rows, stamp_path, write_predictions

IDS = ["q1", "q2", "q3"]
DIGEST = "d" * 16


def _rows() -> list[dict]:
    return [
        {"id": i, "prediction": "x", "em": 0.0, "cover_em": 1.0, "f1": 0.5, "response": "…"}
        for i in IDS
    ]


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "predictions" / "rag__demo.jsonl"
    write_predictions(path, _rows(), DIGEST)
    return path


def test_a_current_file_is_reused_as_written(written):
    assert reusable_rows(written, DIGEST, IDS) == (_rows(), "")


def _lines(path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


DAMAGE = {
    "a line lost": (lambda b: b"".join(b[:2]), "it holds 2 rows for 3 questions"),
    "torn": (lambda b: b"".join(b)[:-40], "line 3 is not JSON"),
    "empty": (lambda b: b"", "it holds 0 rows for 3 questions"),
    "garbage": (lambda b: b"\x00\xff\xfe binary \n", "line 1 is not JSON"),
    "a list": (lambda b: b"[1, 2]\n", "line 1 is not a row"),
    "reordered": (lambda b: b"".join([b[1], b[0], b[2]]), "not the sample's questions in order"),
    "unscored": (
        lambda b: b"".join(
            [*b[:2], json.dumps({k: v for k, v in _rows()[2].items() if k != "f1"}).encode()]
        ),
        "some rows have no 'f1'",
    ),
    "edited": (lambda b: b"".join(b).replace(b'"x"', b'"y"'), "not what was written"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damage_is_named_not_reused(written, damage):
    change, why = DAMAGE[damage]
    written.write_bytes(change(_lines(written)))
    rows, reason = reusable_rows(written, DIGEST, IDS)
    assert rows is None and why in reason and "\n" not in reason


def test_other_settings_or_no_record_are_not_reused(written):
    assert reusable_rows(written, "e" * 16, IDS) == (None, "its settings changed")
    stamp_path(written).write_text("{")
    assert (
        reusable_rows(written, DIGEST, IDS)[1] == "rag__demo.settings.json is missing or unreadable"
    )
    stamp_path(written).write_text(json.dumps({"digest": DIGEST}))  # settings alone
    assert "holds no content hash" in reusable_rows(written, DIGEST, IDS)[1]
    stamp_path(written).unlink()
    assert reusable_rows(written, DIGEST, IDS)[0] is None
    assert reusable_rows(written.with_name("none.jsonl"), DIGEST, IDS)[1] == "no predictions yet"
