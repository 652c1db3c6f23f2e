"""The two entry points as a user runs them: build an index, serve it, query both routes."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import replace

import httpx
import pytest

from recipe.retrieval.build_index import main as build_main
from recipe.retrieval.client import build_retriever
from recipe.retrieval.manifest import read_manifest
from recipe.retrieval.server import main as server_main
from tests.loopback import closed_port

from .conftest import FACTS, write_flashrag

STARTUP_TIMEOUT_S = 60.0


@pytest.fixture
def served_bm25(bm25_cfg, tmp_path):
    """`python -m recipe.retrieval.server` in its own process over a freshly built index."""
    overrides = [
        "retriever.kind=bm25",
        f"retriever.corpus={bm25_cfg.corpus}",
        f"retriever.index_dir={bm25_cfg.index_dir}",
    ]
    build_main(overrides)
    port = closed_port()
    command = [sys.executable, "-m", "recipe.retrieval.server", *overrides]
    process = subprocess.Popen(command + [f"retriever.port={port}"])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    try:
        while True:
            assert process.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                httpx.get(f"{url}/health", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_build_serve_and_query_both_routes(bm25_cfg, served_bm25):
    assert read_manifest(bm25_cfg.index_dir)["count"] == 16
    local = build_retriever(bm25_cfg)
    remote = build_retriever(replace(bm25_cfg, url=served_bm25))
    queries = ["Which city is the capital of Spain?", "Who found penicillin?"]
    assert [[h.passage.title for h in hs] for hs in remote.search(queries, 2)] == [
        [h.passage.title for h in hs] for hs in local.search(queries, 2)
    ]
    assert remote.search(queries, 1)[0][0].passage.title == "Madrid"
    body = {"queries": queries, "k": 1}
    answers = httpx.post(f"{served_bm25}/queries", json=body, timeout=10).json()["answers"]
    assert answers[1][0].startswith("Penicillin\n")
    health = httpx.get(f"{served_bm25}/health", timeout=10).json()
    assert health["passages"] == 16 and health["kind"] == "bm25"


def _exit_code(main, argv: list[str]) -> int:
    """What `python -m` would exit with: main's return value, or the code of its SystemExit."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def _one_line_error(capsys, entry: str) -> str:
    """The entry point's message: one line on stderr, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith(f"{entry}: ")]
    assert len(lines) == 1, err
    return lines[0]


def _build_args(cfg, *extra: str) -> list[str]:
    return [
        f"retriever.kind={cfg.kind}",
        f"retriever.corpus={cfg.corpus}",
        f"retriever.index_dir={cfg.index_dir}",
        f"retriever.encoder={cfg.encoder}",
        *extra,
    ]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing corpus", "retriever.corpus .* does not exist"),
        ("corpus is a folder", "retriever.corpus .* is a folder"),
        ("index folder is a file", "retriever.index_dir .* is a file"),
        ("batch_size=0", r"retriever.batch_size .*must be >= 1, got 0"),
        ("encoder path missing", "retriever.encoder .* does not exist"),
        ("encoder folder without a model", "retriever.encoder .*: cannot load"),
        ("encoder folder without weights", "retriever.encoder .*: cannot load"),
        ("bm25 over an empty corpus", "the corpus is empty"),
        ("wrong reader", "no passages .*'kilt' reader"),
        ("bad factory", "retriever.faiss_factory 'Flatt'"),
    ],
)
def test_build_mistakes_exit_2_with_one_line(case, message, dense_cfg, tmp_path, capsys):
    cfg = replace(dense_cfg, index_dir=str(tmp_path / "index"))
    extra: list[str] = []
    if case == "missing corpus":
        cfg = replace(cfg, corpus=str(tmp_path / "nothing.jsonl"))
    elif case == "corpus is a folder":
        cfg = replace(cfg, corpus=str(tmp_path))
    elif case == "index folder is a file":
        (tmp_path / "index").write_text("not a folder")
    elif case == "batch_size=0":
        extra = ["retriever.batch_size=0"]
    elif case == "encoder path missing":
        cfg = replace(cfg, encoder=str(tmp_path / "no" / "such" / "model"))
    elif case == "encoder folder without a model":
        (tmp_path / "model").mkdir()
        cfg = replace(cfg, encoder=str(tmp_path / "model"))
    elif case == "encoder folder without weights":
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "config.json").write_text('{"model_type": "bert"}')
        cfg = replace(cfg, encoder=str(tmp_path / "model"))
    elif case == "bm25 over an empty corpus":
        (tmp_path / "empty.jsonl").write_text("")
        cfg = replace(cfg, kind="bm25", corpus=str(tmp_path / "empty.jsonl"))
    elif case == "wrong reader":
        cfg = replace(cfg, kind="bm25")
        extra = ["retriever.corpus_format=kilt"]
    elif case == "bad factory":
        extra = ["retriever.faiss_factory=Flatt"]
    assert _exit_code(build_main, _build_args(cfg, *extra)) == 2
    entry = "config error" if case == "batch_size=0" else "build_index"
    assert re.search(message, _one_line_error(capsys, entry))
    assert not (tmp_path / "index" / "manifest.json").is_file()


def test_index_refusals_exit_2_with_one_line(bm25_cfg, tmp_path, capsys):
    assert server_main(_build_args(bm25_cfg)) == 2
    assert "no index at" in _one_line_error(capsys, "server")
    assert build_main(_build_args(bm25_cfg)) == 0
    other = write_flashrag(tmp_path / "other.jsonl", FACTS[:3])
    changed = _build_args(replace(bm25_cfg, corpus=str(other)))
    assert build_main(changed) == 2
    line = _one_line_error(capsys, "build_index")
    assert "already holds a different index" in line and "--overwrite" in line
    assert server_main(changed) == 2
    assert "corpus_sha256" in _one_line_error(capsys, "server")
    a_file = _build_args(replace(bm25_cfg, index_dir=str(other)))
    assert server_main(a_file) == 2
    assert "is a file, not an index folder" in _one_line_error(capsys, "server")


def test_python_m_build_index_exits_2_without_a_traceback(tmp_path):
    command = [sys.executable, "-m", "recipe.retrieval.build_index", "retriever.kind=bm25"]
    command += [f"retriever.corpus={tmp_path / 'missing.jsonl'}", f"retriever.index_dir={tmp_path}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"build_index: retriever.corpus {tmp_path / 'missing.jsonl'} does not exist"
    ]
