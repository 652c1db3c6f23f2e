"""configs/paper/: every file loads through recipe.config and holds R1-Searcher's values
(arXiv:2503.05592 and the release's scripts/qwen_reinforce_plus_train.sh, cited in the YAML)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from data_filtering.config import FilterRunConfig
from recipe.config import load_config
from recipe.schema import RunConfig

REPO = Path(__file__).resolve().parents[2]
PAPER = REPO / "configs" / "paper"
EVAL_SETS = {"hotpotqa": 500, "2wiki": 500, "musique": 500, "bamboogle": 125}


def paper_config(name: str):
    schema = FilterRunConfig if name == "filter" else RunConfig
    return load_config(schema, PAPER / f"{name}.yaml")


def test_every_paper_config_is_covered_here():
    assert sorted(p.stem for p in PAPER.glob("*.yaml")) == [
        "common",
        "eval",
        "filter",
        "stage1",
        "stage2",
    ]


@pytest.mark.parametrize("name", ["common", "stage1", "stage2", "filter", "eval"])
def test_the_shared_published_values(name):
    cfg = paper_config(name)
    # Stage 2 starts from stage 1's export (checked below); the rest from the base model.
    assert cfg.model.path == ("runs/paper_stage1/final" if name == "stage2" else "Qwen/Qwen2.5-7B")
    assert cfg.model.prompt_style == "base"
    r = cfg.retriever
    assert (r.kind, r.encoder, r.pooling, r.corpus_format) == (
        "dense",
        "BAAI/bge-large-en-v1.5",
        "cls",
        "kilt_tsv",
    )
    assert r.query_instruction.startswith("Represent this sentence for searching")
    assert (r.passage_words, r.topk, r.faiss_factory, r.max_passage_tokens) == (100, 3, "Flat", 300)
    assert r.faiss_gpu and r.faiss_gpu_shard and r.faiss_gpu_fp16 and r.faiss_require_gpu
    ro = cfg.rollout
    assert (ro.backend, ro.samples_per_prompt, ro.temperature, ro.top_p) == ("vllm", 16, 1.0, 0.95)
    assert (ro.max_segment_tokens, ro.max_retrievals) == (512, 8)
    a = cfg.algo
    assert (a.advantage, a.clip_eps, a.kl_coef) == ("reinforce_pp_baseline", 0.2, 0.0)
    t = cfg.trainer
    assert t.lr == pytest.approx(2e-6) and not t.lr_decay and t.warmup_steps == 0
    # 64 questions x 16 samples rolled out (RBS=64), 4 updates of 256 samples (TBS=256).
    assert (t.prompts_per_step, t.updates_per_rollout) == (64, 4)
    assert t.prompts_per_step * ro.samples_per_prompt // t.updates_per_rollout == 256
    assert t.deepspeed_config == "configs/deepspeed/zero2.json"
    assert (REPO / t.deepspeed_config).is_file()


def test_the_stages_rewards_data_and_chaining():
    stage1, stage2 = paper_config("stage1"), paper_config("stage2")
    assert stage1.reward.name == "stage1"
    assert (stage1.reward.w_retrieval, stage1.reward.w_format, stage1.reward.w_answer) == (
        0.5,
        0.5,
        0.0,
    )
    assert (stage2.reward.name, stage2.reward.format_penalty) == ("stage2", -2.0)
    assert stage2.model.path == f"runs/{stage1.trainer.run_name}/final"
    assert stage2.trainer.compare_with == f"runs/{stage1.trainer.run_name}"
    # One pass over Table 1's questions (350 in stage 1, 8148 in stage 2) at 64 per step.
    filt = paper_config("filter").filter
    sizes = {s: sum(sum(b.values()) for b in q.values()) for s, q in filt.quotas.items()}
    assert sizes == {"stage1": 350, "stage2": 8148}
    for cfg, stage in ((stage1, "stage1"), (stage2, "stage2")):
        assert cfg.data.train_files == [f"{filt.output_dir}/{stage}.jsonl"]
        assert cfg.trainer.steps == math.ceil(sizes[stage] / cfg.trainer.prompts_per_step)


def test_the_eval_config_runs_every_released_question(r1searcher_data):
    from data_filtering.sources import load_questions

    cfg = paper_config("eval").eval
    assert cfg.questions == 0 and cfg.temperature == 0.0
    assert cfg.methods == ["naive", "rag", "base", "stage1", "stage2"]
    assert cfg.policies["stage2"] == "runs/paper_stage2/final"
    assert cfg.training_runs == ["runs/paper_stage1", "runs/paper_stage2"]
    assert sorted(cfg.datasets) == sorted(EVAL_SETS)
    for name, files in cfg.datasets.items():
        assert len(files) == 1
        path = REPO / files[0]
        assert path.resolve().parent == (r1searcher_data / "eval_set").resolve()
        assert len(load_questions(path)) == EVAL_SETS[name]
