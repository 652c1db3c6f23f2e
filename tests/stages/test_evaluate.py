"""`python -m stages.evaluate` on a tiny world: a tiny policy saved as a model folder, the demo
passages behind a real BM25 index, the demo questions in R1-Searcher's jsonl format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from demo.world import DEMO_PASSAGES, DEMO_RECORDS, tiny_policy
from recipe.retrieval.index import build_index
from stages.evaluate import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def world(tmp_path, smollm2_tokenizer) -> dict:
    model_dir = tmp_path / "model"
    tiny_policy(smollm2_tokenizer, seed=0).save_pretrained(model_dir)
    smollm2_tokenizer.save_pretrained(model_dir)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": p.id, "contents": p.contents}) + "\n" for p in DEMO_PASSAGES)
    )
    questions = tmp_path / "questions.jsonl"
    questions.write_text(
        "".join(
            json.dumps({"idx": r.id, "question": r.question, "answer": r.answers[0]}) + "\n"
            for r in DEMO_RECORDS
        )
    )
    overrides = [
        "retriever.kind=bm25",
        f"retriever.corpus={corpus}",
        "retriever.corpus_format=flashrag",
        f"retriever.index_dir={tmp_path / 'index'}",
        "retriever.topk=2",
        "model.dtype=float32",
        "rollout.max_segment_tokens=24",
        "rollout.max_response_tokens=48",
        f"eval.out_dir={tmp_path / 'eval'}",
        "eval.methods=[naive, rag, tiny]",
        f"eval.baseline_model={model_dir}",
        f"eval.policies={{tiny: {model_dir}}}",
        f"eval.datasets={{demo: [{questions}]}}",
        "eval.questions=0",
        "eval.goal_policy=tiny",
        "eval.goals={rag: 0.1, naive: 0.3}",
        "eval.training_runs=[]",
        "logging.progress=false",
    ]
    from recipe.config import load_config
    from recipe.schema import RunConfig

    build_index(load_config(RunConfig, None, overrides).retriever, progress=False)
    return {"overrides": overrides, "out": tmp_path / "eval"}


def _run(world, *extra) -> int:
    return main(["--config", "configs/embedded/eval.yaml", *world["overrides"], *extra])


def test_every_method_writes_predictions_metrics_and_the_report(world, capsys):
    assert _run(world) == 0
    out: Path = world["out"]
    for method in ("naive", "rag", "tiny"):
        rows = [json.loads(line) for line in open(out / "predictions" / f"{method}__demo.jsonl")]
        assert [r["id"] for r in rows] == [r.id for r in DEMO_RECORDS]
        for row in rows:
            assert {
                "question",
                "golds",
                "prediction",
                "response",
                "f1@squad",
                "em@r1searcher",
            } <= set(row)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["summaries"]) == {"naive", "rag", "tiny"}
    assert metrics["summaries"]["rag"]["demo"]["questions"] == len(DEMO_RECORDS)
    assert metrics["summaries"]["naive"]["demo"]["searches"] == 0.0  # the naive mode never searches
    assert {(c["baseline"], c["wanted"]) for c in metrics["checks"]} == {
        ("rag", 0.1),
        ("naive", 0.3),
    }
    report = (out / "report.md").read_text()
    assert "| tiny | demo | 3 |" in report and "## Held to" in report
    printed = capsys.readouterr().out
    assert "| naive | demo | 3 |" in printed and "tiny over rag on demo" in printed


def test_a_rerun_reuses_current_predictions_and_redoes_changed_ones(world):
    assert _run(world) == 0
    files = {p.name: p.stat().st_mtime_ns for p in (world["out"] / "predictions").glob("*.jsonl")}
    assert _run(world) == 0
    again = {p.name: p.stat().st_mtime_ns for p in (world["out"] / "predictions").glob("*.jsonl")}
    assert again == files
    report = (world["out"] / "report.md").read_text()
    assert "reused from an earlier run with the same settings" in report
    tuned_engine = ("rollout.vllm_kv_cache_gb=3", "rollout.gpu_memory_utilization=0.9")
    assert _run(world, *tuned_engine) == 0  # an engine the HF backend never starts
    tuned = {p.name: p.stat().st_mtime_ns for p in (world["out"] / "predictions").glob("*.jsonl")}
    assert tuned == files
    assert _run(world, "retriever.topk=1") == 0  # naive does not read the retriever, but the
    redone = {p.name: p.stat().st_mtime_ns for p in (world["out"] / "predictions").glob("*.jsonl")}
    assert all(redone[name] != files[name] for name in files)  # settings name it: all redone
    assert _run(world, "retriever.topk=1", "model.dtype=bfloat16") == 0  # other samples
    in_bf16 = {p.name: p.stat().st_mtime_ns for p in (world["out"] / "predictions").glob("*.jsonl")}
    assert all(in_bf16[name] != redone[name] for name in files)


def test_an_unknown_method_or_a_missing_model_exits_2_with_one_line(world, tmp_path, capsys):
    assert _run(world, "eval.methods=[naive, oracle]") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["evaluate: eval.methods: unknown method 'oracle'; known: naive, rag, tiny"]
    assert _run(world, f"eval.baseline_model={tmp_path / 'nothing'}", "eval.methods=[naive]") == 2
    assert "does not exist" in capsys.readouterr().err


def test_sampled_evaluations_are_one_file_per_seed_and_a_mean_and_std(world):
    assert _run(world, "eval.methods=[naive]", "eval.sample_seeds=[1, 2]") == 0
    names = sorted(p.name for p in (world["out"] / "predictions").glob("*.jsonl"))
    assert names == ["naive__demo.jsonl", "naive__demo__seed1.jsonl", "naive__demo__seed2.jsonl"]
    responses = [
        [json.loads(line)["response"] for line in open(world["out"] / "predictions" / name)]
        for name in names
    ]
    assert responses[1] != responses[2]  # another seed samples other responses
    report = (world["out"] / "report.md").read_text()
    assert "## Sampled evaluations" in report and "| naive | demo | 2 |" in report


def test_training_runs_without_logs_are_noted_not_fatal(world, tmp_path):
    missing = tmp_path / "no-such-run"
    assert _run(world, "eval.methods=[naive]", f"eval.training_runs=[{missing}]") == 0
    report = (world["out"] / "report.md").read_text()
    assert "## Notes" in report and str(missing) in report and "![training curves]" not in report


def test_the_judge_column_when_the_judge_is_on(world, serve, monkeypatch):
    from tests.recipe.test_judge import KEY, KEY_ENV, judge_server

    app, _ = judge_server()
    monkeypatch.setenv(KEY_ENV, KEY)
    judge = [
        "eval.judge.enabled=true",
        f"eval.judge.url={serve(app).url}/v1",
        f"eval.judge.api_key_env={KEY_ENV}",
        f"eval.judge.cache={world['out'] / 'judge.jsonl'}",
    ]
    assert _run(world, "eval.methods=[naive]", *judge) == 0
    rows = [json.loads(line) for line in open(world["out"] / "predictions" / "naive__demo.jsonl")]
    assert all(row["judge"] in (0.0, 1.0) for row in rows)
    assert "| judge |" in (world["out"] / "report.md").read_text()


def test_a_damaged_predictions_file_is_redone_with_one_line_saying_why(world, capsys):
    assert _run(world, "eval.methods=[naive, rag]") == 0
    predictions = world["out"] / "predictions"
    rag = predictions / "rag__demo.jsonl"
    rag.write_text("".join(rag.read_text().splitlines(keepends=True)[:-1]))  # a line lost
    (predictions / "naive__demo.jsonl").write_bytes(b"\x00\xffgarbage")
    capsys.readouterr()
    assert _run(world, "eval.methods=[naive, rag]") == 0
    err = capsys.readouterr().err
    assert "evaluate: redoing rag__demo: it holds 2 rows for 3 questions" in err
    assert "evaluate: redoing naive__demo: line 1 is not JSON" in err
    metrics = json.loads((world["out"] / "metrics.json").read_text())
    assert all(metrics["summaries"][m]["demo"]["questions"] == 3 for m in ("naive", "rag"))
    assert len(rag.read_text().splitlines()) == 3
    assert (
        "redone, the earlier file did not check: naive__demo"
        in (world["out"] / "report.md").read_text()
    )


def test_one_engine_per_model_folder_closed_before_the_next(world, tmp_path, smollm2_tokenizer):
    from recipe.config import load_config
    from recipe.evaluation.runner import PolicyEngines, by_model
    from recipe.schema import RunConfig

    other = tmp_path / "other"
    tiny_policy(smollm2_tokenizer, seed=1).save_pretrained(other)
    smollm2_tokenizer.save_pretrained(other)
    methods = "eval.methods=[naive, other, rag]"
    cfg = load_config(
        RunConfig, None, [*world["overrides"], methods, f"eval.policies={{other: {other}}}"]
    )
    assert by_model(cfg) == ["naive", "rag", "other"]  # the baseline's two methods in a row
    engines = PolicyEngines(cfg)
    baseline = engines.backend_for(cfg.eval.baseline_model)
    assert engines.backend_for(cfg.eval.baseline_model) is baseline and engines.built == 1
    engines.backend_for(str(other))
    assert baseline.model is None and engines.built == 2  # closed before the next was built
    engines.close()
    assert engines.backend is None
