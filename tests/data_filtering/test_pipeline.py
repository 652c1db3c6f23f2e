"""The filtering run on the tiny world (filter_world.py) through the real engine, backend,
retriever and scoring: recorded rollouts-to-first-correct, kill and resume, reselection without
rollouts, shortfalls, invalidation by the reference policy's identity, and the report."""

from __future__ import annotations

import dataclasses
import json

import pytest

from data_filtering.pipeline import INVALIDATED_FILE, check_reference, run_filter
from data_filtering.records import read_records
from data_filtering.sources import load_questions
from tests.data_filtering.filter_world import (
    CountingRunner,
    filter_config,
    save_tiny_model,
    steered_rounds,
    write_question_files,
)

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file")


@pytest.fixture
def world(tmp_path, tiny_model_dir, demo_index):
    files = write_question_files(tmp_path)
    return lambda out, **settings: filter_config(
        tmp_path / out, tiny_model_dir, demo_index, files, **settings
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_model_dir, demo_index, smollm2_tokenizer):
    """One complete run, shared by the tests that only read it."""
    root = tmp_path_factory.mktemp("finished")
    cfg = filter_config(root / "out", tiny_model_dir, demo_index, write_question_files(root))
    runner = CountingRunner(steered_rounds(cfg, smollm2_tokenizer))
    return cfg, run_filter(cfg, runner, tokenizer=smollm2_tokenizer), runner


def _lines(cfg) -> list[dict]:
    path = f"{cfg.filter.output_dir}/difficulty/results.jsonl"
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_rollouts_to_first_correct_are_recorded(finished):
    cfg, outcome, runner = finished
    results = outcome.results
    assert len(results) == 7  # the two unusable rows were skipped
    assert [s.skipped for s in outcome.sources] == [{"bad_question": 1}, {"bad_question": 1}]
    for key in ("hotpotqa/h0", "2wiki/w0"):  # always right: done after the first round
        assert (results[key].first_correct, results[key].rollouts) == (1, 2)
    for key in ("hotpotqa/h3", "2wiki/w2"):  # never right: the cap, unsolved
        assert (results[key].first_correct, results[key].rollouts, results[key].passes) == (
            None,
            6,
            0,
        )
    # Every result is what its stored rollouts say, in order.
    by_key: dict[str, list[int]] = {}
    for line in sorted(_lines(cfg), key=lambda row: row["round"]):
        by_key.setdefault(line["key"], []).extend(line["correct"])
    for key, result in results.items():
        flags = by_key[key]
        assert result.rollouts == len(flags) and result.passes == sum(flags)
        assert result.first_correct == (flags.index(1) + 1 if 1 in flags else None)
    assert {r.first_correct for r in results.values()} - {1, None}  # some need a few tries
    round_0 = [(r, g, sorted(ids)) for r, g, ids in runner.calls if r == 0]
    assert round_0 == [(0, 0, ["h0", "h1", "h2", "h3"]), (0, 1, ["w0", "w1", "w2"])]


def test_stage_files_and_report(finished):
    cfg, outcome, _ = finished
    out = outcome.report.parent
    for selection in outcome.selections:
        records = load_questions(out / f"{selection.stage}.jsonl")  # what the stages read
        assert [r.id for r in records] == selection.keys
        for record in records:
            result = outcome.results[record.id]
            assert record.meta["difficulty"]["first_correct"] == result.first_correct
            assert record.id == f"{record.source}/{record.meta['source_id']}"
    stage2 = {r.id for r in read_records(out / "stage2.jsonl")}
    assert {"hotpotqa/h3", "2wiki/w2"} <= stage2  # the never-solved ones are difficult
    report = (out / "report.md").read_text()
    assert "| hotpotqa | " in report and "of which unsolved" in report
    assert "bad_question 1" in report and "### stage1" in report
    assert (out / "rollouts_to_first_correct.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    selection = json.loads((out / "selection.json").read_text())
    assert selection["buckets"]["hotpotqa"]["unsolved"] == 1
    assert sum(selection["buckets"]["2wiki"][b] for b in ("easy", "medium", "difficult")) == 3


def test_editing_quotas_and_thresholds_reselects_without_rollouts(finished, smollm2_tokenizer):
    cfg, first, _ = finished
    fc = cfg.filter
    edited = dataclasses.replace(
        cfg,
        filter=dataclasses.replace(
            fc,
            buckets=dataclasses.replace(fc.buckets, easy_below=2),
            quotas={"stage1": {"hotpotqa": {"easy": 1, "difficult": 5}}},
            selection_seed=7,
        ),
    )
    runner = CountingRunner(steered_rounds(edited, smollm2_tokenizer))
    again = run_filter(edited, runner, tokenizer=smollm2_tokenizer)
    assert runner.calls == [] and runner.inner.engine is None  # no rollout, no model loaded
    assert again.run.rollouts_now == 0 and again.results == first.results
    hotpot = [r.first_correct for r in first.results.values() if r.source == "hotpotqa"]
    hard = sum(1 for f in hotpot if f is None or f > fc.buckets.difficult_above)
    (rows,) = [s.rows for s in again.selections]
    assert {(r.bucket, r.quota, r.available, r.taken) for r in rows} == {
        ("easy", 1, hotpot.count(1), 1),  # the new threshold: easy is right at rollout 1 only
        ("difficult", 5, hard, hard),  # short of its quota: takes what there is
    }
    report = (again.report.parent / "report.md").read_text()
    assert f"**Short:** stage1 hotpotqa difficult holds {hard} questions, quota 5" in report
    assert len(read_records(again.report.parent / "stage1.jsonl")) == 1 + hard


def test_a_killed_run_resumes_to_the_same_results(world, finished, smollm2_tokenizer):
    cfg = world("killed")

    class Killed(Exception):
        pass

    def kill(round_index, call_index):
        if (round_index, call_index) == (0, 0):
            raise Killed

    with pytest.raises(Killed):
        run_filter(cfg, steered_rounds(cfg, smollm2_tokenizer), tokenizer=smollm2_tokenizer,
                   after_call=kill)  # fmt: skip
    done_before = {(row["key"], row["round"]) for row in _lines(cfg)}
    runner = CountingRunner(steered_rounds(cfg, smollm2_tokenizer))
    resumed = run_filter(cfg, runner, tokenizer=smollm2_tokenizer)
    assert runner.calls[0][:2] == (0, 1)  # the first call's questions were kept
    redone = {(record_id, r) for r, _, ids in runner.calls for record_id in ids}
    assert not {(key.split("/")[1], r) for key, r in done_before} & redone
    assert resumed.run.reused_questions > 0
    assert resumed.results == finished[1].results  # same seeds, same calls: the same rollouts


def test_a_changed_reference_invalidates_and_names_what_changed(world, tmp_path, smollm2_tokenizer):
    cfg = world("changes")
    folder = tmp_path / "changes" / "difficulty"
    assert check_reference(cfg, folder, smollm2_tokenizer) == []

    def changes(changed_cfg) -> list[str]:
        (folder / "results.jsonl").write_text('{"key": "x"}\n')
        found = check_reference(changed_cfg, folder, smollm2_tokenizer)
        assert (folder / INVALIDATED_FILE).is_file() and not (folder / "results.jsonl").exists()
        manifest = json.loads((folder / "manifest.json").read_text())
        assert manifest["invalidated_by"] == found
        return [c.split(":")[0] for c in found]

    metric = dataclasses.replace(cfg, filter=dataclasses.replace(cfg.filter, metric="em"))
    assert changes(metric) == ["metric.metric"]
    topk = dataclasses.replace(metric, retriever=dataclasses.replace(metric.retriever, topk=1))
    assert changes(topk) == ["retriever.topk"]
    style = dataclasses.replace(topk, model=dataclasses.replace(topk.model, prompt_style="base"))
    assert changes(style) == ["prompt.probe_ids_sha256", "prompt.style"]
    other = save_tiny_model(tmp_path / "other_model", smollm2_tokenizer, seed=1)
    moved = dataclasses.replace(style, model=dataclasses.replace(style.model, path=str(other)))
    assert changes(moved) == ["model.files.model.safetensors", "model.path"]
    # Thresholds, quotas, the cap, the batch size and (on the HF backend) the vLLM engine's
    # settings are not part of the identity.
    same = dataclasses.replace(
        moved,
        filter=dataclasses.replace(moved.filter, max_rollouts=8, quotas={}),
        rollout=dataclasses.replace(
            moved.rollout, batch_size=2, vllm_kv_cache_gb=2.0, vllm_enforce_eager=True
        ),
    )
    (folder / "results.jsonl").write_text('{"key": "x"}\n')
    assert check_reference(same, folder, smollm2_tokenizer) == []
    assert (folder / "results.jsonl").is_file()
    on_vllm = dataclasses.replace(same, rollout=dataclasses.replace(same.rollout, backend="vllm"))
    assert "rollout.vllm_kv_cache_gb" in changes(on_vllm)
