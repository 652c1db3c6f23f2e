"""The paper setting's prompt path on CPU: a stage-1 step from configs/paper/stage1.yaml with a
tiny random Qwen2-architecture model (Qwen2.5-7B's architecture class) and R1-Searcher's
base-model prompt, through the stage's composition root, the real trainer, the stage-1 reward
and a BM25 index built by the index builder. Only the sizes are overridden (and the vLLM
backend, which this machine lacks, by the Hugging Face one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from demo.world import DEMO_PASSAGES, DEMO_RECORDS
from recipe.config import load_config
from recipe.generation.hf import HFBackend
from recipe.prompts import base_prompt, question_prompt_ids
from recipe.retrieval.index import build_index
from recipe.schema import RunConfig
from stages.run import run_stage
from tests.recipe.tiny_world import ParityScript

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

REPO = Path(__file__).resolve().parents[2]


def tiny_qwen2(tokenizer, folder: Path) -> Path:
    """A randomly initialised Qwen2ForCausalLM over the tokenizer, saved as an HF folder."""
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,  # grouped KV heads, as Qwen2.5-7B (28 query, 4 KV heads)
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class PromptRecorder:
    """A pass-through logits processor that keeps the context of every segment's first token:
    for a trajectory's first segment, exactly the prompt the model was given."""

    def __init__(self) -> None:
        self.first_contexts: list[list[int]] = []

    def __call__(self, context_ids, output_ids, logits: torch.Tensor) -> torch.Tensor:
        if len(output_ids) == 0:
            self.first_contexts.append(list(context_ids))
        return logits


def paper_stage1_config(tmp_path: Path, model_dir: Path) -> RunConfig:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": p.id, "contents": p.contents}) + "\n" for p in DEMO_PASSAGES)
    )
    questions = tmp_path / "stage1.jsonl"
    rows = [{"idx": r.id, "question": r.question, "answer": r.answers[0]} for r in DEMO_RECORDS]
    questions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    overrides = [
        f"model.path={model_dir}",
        "model.dtype=float32",
        f"data.train_files=[{questions}]",
        "retriever.kind=bm25",
        f"retriever.corpus={corpus}",
        "retriever.corpus_format=flashrag",
        f"retriever.index_dir={tmp_path / 'index'}",
        "retriever.topk=2",
        "rollout.backend=hf",
        "rollout.samples_per_prompt=4",
        "rollout.max_segment_tokens=24",
        "rollout.max_response_tokens=400",
        "rollout.max_retrievals=2",
        "rollout.batch_size=12",
        "trainer.steps=1",
        "trainer.prompts_per_step=3",
        "trainer.updates_per_rollout=1",  # the paper's 4 mini-batches need 4 questions per rank
        "trainer.lr=3e-3",
        "trainer.micro_batch_tokens=2000",
        f"trainer.deepspeed_config={REPO / 'configs/deepspeed/cpu_zero2.json'}",  # the paper's stage
        f"trainer.runs_dir={tmp_path / 'runs'}",
        "trainer.eval_at_start=false",
        "trainer.eval_at_end=false",
        "logging.progress=false",
    ]
    return load_config(RunConfig, REPO / "configs/paper/stage1.yaml", overrides)


def test_a_paper_stage1_step_with_a_tiny_qwen2_and_the_base_prompt(tmp_path, smollm2_tokenizer):
    model_dir = tiny_qwen2(smollm2_tokenizer, tmp_path / "qwen2")
    cfg = paper_stage1_config(tmp_path, model_dir)
    # What the paper config itself decides, kept by the overrides above:
    assert cfg.model.prompt_style == "base" and cfg.reward.name == "stage1"
    assert (cfg.rollout.top_p, cfg.algo.kl_coef, cfg.trainer.lr_decay) == (0.95, 0.0, False)
    build_index(cfg.retriever, progress=False)
    recorder = PromptRecorder()
    loaded = {}

    def backend(model, tokenizer):
        # The tokenizer the stage loaded from model.path (AutoTokenizer over a Qwen2 folder),
        # not the fixture's object. The steering makes about half of the samples search (the
        # parity of their first sampled token), so the stage-1 rewards differ within a group
        # and the update is not zero.
        loaded["tokenizer"] = tokenizer
        return HFBackend(model, tokenizer, [recorder, ParityScript(tokenizer, cfg, DEMO_RECORDS)])

    run_stage(cfg, backend_factory=backend)
    run_dir = Path(cfg.trainer.runs_dir) / cfg.trainer.run_name

    # The step ran: one metrics row, searches made, rewards that differ.
    (row,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 1
    assert row["search/calls_per_sample"] > 0
    samples = [
        json.loads(line) for line in (run_dir / "trajectories.jsonl").read_text().splitlines()
    ]
    assert len(samples) == 3 * 4
    assert len({s["reward"] for s in samples}) > 1
    assert any(s["parts"]["retrieval"] == 0.5 for s in samples)

    # The model saw R1-Searcher's base-model prompt, token for token, and no chat template.
    tokenizer = loaded["tokenizer"]
    prompts = {
        tuple(question_prompt_ids(r.question, tokenizer, cfg.tags, "base")): r for r in DEMO_RECORDS
    }
    first_segments = [c for c in recorder.first_contexts if tuple(c) in prompts]
    assert len(first_segments) >= 3 * 4  # every trajectory's first segment
    for context in first_segments:
        text = tokenizer.decode(context, skip_special_tokens=True)
        assert text == base_prompt(prompts[tuple(context)].question, cfg.tags)
        assert text.startswith("The User asks a question, and the Assistant solves it.")
        assert text.endswith("\nAssistant: <think>") and "<|im_start|>" not in text

    # The weights changed, and the export is a Qwen2 model again.
    before = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    after_model = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    assert isinstance(after_model, Qwen2ForCausalLM)
    after = after_model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(before[k].shape == after[k].shape for k in before)
