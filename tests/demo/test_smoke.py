"""`make smoke`: the whole pipeline on the tiny world, through the real entry points, writes the
run folders of the real settings; and `demo.build` makes that world from a seed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from data_filtering.sources import load_questions
from demo.build import CORPUS, MODEL_DIR, QUESTIONS, SPLITS, build, question_file
from demo.format_warmup import format_examples, warm_up_format
from demo.world import DEMO_PASSAGES, tiny_policy
from recipe.schema import TagsConfig
from recipe.training.engine import SINGLE_RANK_ENV
from tests.recipe.tiny_world import REPO

pytestmark = pytest.mark.usefixtures("smollm2_gguf_file")


def test_demo_build_writes_the_tiny_world_of_its_seed(tmp_path, smollm2_tokenizer):
    build(tmp_path, seed=3, tokenizer=smollm2_tokenizer, format_steps=0)
    for split in SPLITS:
        records = load_questions(tmp_path / question_file(split), "hotpotqa")
        assert [r.id.split("/")[-1] for r in records] == [q[1] for q in QUESTIONS if q[0] == split]
    saved = load_file(tmp_path / MODEL_DIR / "model.safetensors")
    expected = tiny_policy(smollm2_tokenizer, seed=3).state_dict()
    assert all(saved[k].equal(expected[k]) for k in saved)
    assert len((tmp_path / CORPUS).read_text().splitlines()) == len(DEMO_PASSAGES)
    assert json.loads((tmp_path / "index/manifest.json").read_text())["identity"]["kind"] == "bm25"


def test_format_warm_up_teaches_the_answer_tokens(smollm2_tokenizer):
    """Loss on the response tokens alone: the prompt's tokens are not targets."""
    train = [(q, a) for split, _, q, a, _ in QUESTIONS if split == "train"][:3]
    examples = format_examples(smollm2_tokenizer, train, TagsConfig())
    for (ids, start), (_, answer) in zip(examples, train, strict=True):
        response = smollm2_tokenizer.decode(ids[start:])
        assert response == f" </think>\n\n<answer> {answer} </answer>"
    losses = warm_up_format(tiny_policy(smollm2_tokenizer, seed=0), examples, steps=15)
    assert losses[0] > 10.0  # about ln(49152): the random policy
    assert losses[-1] < losses[0] / 2


@pytest.mark.slow
def test_make_smoke_runs_filter_both_stages_and_the_evaluation(tmp_path):
    (tmp_path / "configs").symlink_to(REPO / "configs")
    # Without this process's single-rank settings: a trainer test before this one set them,
    # and its process group still holds MASTER_PORT.
    env = {k: v for k, v in os.environ.items() if k not in SINGLE_RANK_ENV and k != "MASTER_PORT"}
    env.update(PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE")
    venv = Path(sys.prefix)
    done = subprocess.run(
        ["make", "-f", str(REPO / "Makefile"), "smoke", f"VENV={venv}", "STAMP="],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = tmp_path / "runs/smoke"
    for stage in ("stage1", "stage2"):
        assert (runs / f"data/{stage}.jsonl").read_text().strip()
        summary = json.loads((runs / stage / "summary.json").read_text())
        assert summary["steps"] == 2 and "dev_final" in summary
        assert (runs / stage / "final/config.json").is_file()
        steps = [json.loads(line)["step"] for line in (runs / stage / "metrics.jsonl").open()]
        assert {1, 2} <= set(steps)
    assert "paired" in json.loads((runs / "stage2/summary.json").read_text())
    metrics = json.loads((runs / "eval/metrics.json").read_text())
    assert metrics, "empty evaluation metrics"
    report = (runs / "eval/report.md").read_text()
    for method in ("naive", "rag", "base", "stage1", "stage2"):
        assert f"| {method} |" in report
