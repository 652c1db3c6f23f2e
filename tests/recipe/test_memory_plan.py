"""The memory plan: model-state rows against DeepSpeed's own estimator, the architecture's
parameter count against a built model, and the activation and logits rows against the memory a
tiny Qwen2 model actually allocates in one forward/backward pass of the masked forward."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs
from torch.profiler import ProfilerActivity, profile
from transformers import Qwen2Config, Qwen2ForCausalLM

from recipe.schema import RunConfig
from recipe.training.architectures import KNOWN, from_config_dict
from recipe.training.logprobs import sequence_logprobs
from recipe.training.memory_plan import (
    GB,
    Hardware,
    Phase,
    activation_rows,
    build_plan,
    model_state_rows,
)

ZERO2 = {"zero_optimization": {"stage": 2, "reduce_bucket_size": 5e8, "overlap_comm": True}}
BF16_ZERO2 = {**ZERO2, "bf16": {"enabled": True}}


def tiny_qwen2_config(**over) -> Qwen2Config:
    values = dict(
        vocab_size=4096,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
    )
    return Qwen2Config(**{**values, **over})


@pytest.mark.parametrize("params", [1_543_714_304, 7_615_616_512])
@pytest.mark.parametrize("gpus", [1, 2, 8, 16])
def test_zero2_model_states_equal_deepspeeds_estimate(params, gpus):
    _, deepspeed_gpu = estimate_zero2_model_states_mem_needs(
        params, num_gpus_per_node=gpus, cpu_offload=False
    )
    ours = sum(r.bytes for r in model_state_rows(params, 2, zero_stage=2, ranks=gpus))
    assert ours == pytest.approx(deepspeed_gpu, abs=4)  # integer division per row


@pytest.mark.parametrize("stage", [0, 1])
def test_zero0_and_zero1_on_one_rank_equal_deepspeeds_one_gpu_estimate(stage):
    params = 7_615_616_512
    _, one_gpu = estimate_zero2_model_states_mem_needs(params, 1, cpu_offload=False)
    assert sum(r.bytes for r in model_state_rows(params, 2, stage, 1)) == one_gpu
    # Over 8 ranks ZeRO-0 partitions nothing; ZeRO-1 all but the bf16 gradients.
    assert sum(r.bytes for r in model_state_rows(params, 2, 0, 8)) == one_gpu
    zero1 = sum(r.bytes for r in model_state_rows(params, 2, 1, 8))
    assert zero1 == 2 * params + 2 * params + 16 * params // 8


def test_the_logits_chunk_is_the_masked_forwards():
    from recipe.training import logprobs, memory_plan

    assert memory_plan.CHUNK_ROWS == logprobs.CHUNK_ROWS


def test_parameter_count_matches_a_built_model():
    config = tiny_qwen2_config()
    model = Qwen2ForCausalLM(config)
    arch = from_config_dict(config.to_dict())
    assert arch.parameters() == sum(p.numel() for p in model.parameters())
    tied = tiny_qwen2_config(tie_word_embeddings=True)
    built = Qwen2ForCausalLM(tied)
    counted = sum(dict((p.data_ptr(), p.numel()) for p in built.parameters()).values())
    assert from_config_dict(tied.to_dict()).parameters() == counted
    # The published Qwen2.5-7B count.
    assert KNOWN["qwen2.5-7b"].parameters() == 7_615_616_512


def measured_peak(model, ids, mask, targets) -> int:
    """Bytes allocated at the peak of one forward/backward pass (the profiler's allocation
    events in time order): the parameter gradients alive then are in it, a few per cent here."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        values, _ = sequence_logprobs(model, ids, mask, targets)
        values.sum().backward()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    now = peak = 0
    for event in events:
        now += event.nbytes()
        peak = max(peak, now)
    return peak


# Logits and activations about even (fp32, 4096 entries); activations dominating in bf16 (on
# fewer rows: bf16 matrix products are slow on the CPU).
CASES = [(torch.float32, 4096, 4), (torch.bfloat16, 512, 2)]


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("dtype,vocab,rows", CASES)
def test_activation_and_logits_rows_within_20_percent_of_the_measured_peak(
    checkpointing, dtype, vocab, rows
):
    torch.manual_seed(0)
    config = tiny_qwen2_config(vocab_size=vocab)
    config._attn_implementation = "sdpa"
    model = Qwen2ForCausalLM(config).to(dtype).train()
    if checkpointing:
        model.gradient_checkpointing_enable({"use_reentrant": False})
    length, prompt = 384, 80
    ids = torch.randint(0, config.vocab_size, (rows, length))
    mask = torch.ones(rows, length, dtype=torch.long)
    targets = torch.zeros(rows, length, dtype=torch.long)
    targets[:, prompt:] = 1
    measured = measured_peak(model, ids, mask, targets)
    arch = from_config_dict(config.to_dict())
    element = torch.finfo(dtype).bits // 8
    planned = activation_rows(arch, element, rows * length, rows * (length - prompt), checkpointing)
    total = Phase("update", planned).total()
    assert total == pytest.approx(measured, rel=0.2)


def test_the_paper_shape_fits_with_checkpointing_and_sleep_and_not_without():
    cfg = RunConfig()
    cfg.rollout = dataclasses.replace(
        cfg.rollout,
        backend="vllm",
        vllm_max_model_len=8704,
        vllm_max_num_seqs=64,
        vllm_kv_cache_gb=30.0,
        vllm_sleep=True,
    )
    cfg.algo = dataclasses.replace(cfg.algo, kl_coef=0.0)
    cfg.trainer = dataclasses.replace(cfg.trainer, gradient_checkpointing=True)
    hw = Hardware(gpus=8, gpu_bytes=int(80 * GB))
    plan = build_plan(cfg, KNOWN["qwen2.5-7b"], hw, BF16_ZERO2)
    assert plan.fits() and plan.verdict().endswith(": fits"), plan.table()
    assert plan.warnings == []
    names = {row.name for phase in plan.phases for row in phase.rows}
    assert {"vLLM KV cache", "activations (gradient checkpointing)"} <= names
    awake = dataclasses.replace(cfg.rollout, vllm_sleep=False)
    cfg.trainer = dataclasses.replace(cfg.trainer, gradient_checkpointing=False)
    plan = build_plan(dataclasses.replace(cfg, rollout=awake), KNOWN["qwen2.5-7b"], hw, BF16_ZERO2)
    assert not plan.fits()
    verdict = plan.verdict()
    assert "does not fit; lower" in verdict and "trainer.gradient_checkpointing=true" in verdict
    assert "rollout.vllm_sleep=true" in verdict


def test_kv_cache_rows_follow_the_share_and_warn_when_sequences_do_not_fit():
    cfg = RunConfig()
    cfg.rollout = dataclasses.replace(
        cfg.rollout,
        backend="vllm",
        gpu_memory_utilization=0.5,
        vllm_max_model_len=8704,
        vllm_max_num_seqs=512,
    )
    arch = KNOWN["qwen2.5-7b"]
    plan = build_plan(cfg, arch, Hardware(8, int(80 * GB)), BF16_ZERO2)
    rollout = {r.name: r.bytes for r in plan.phases[0].rows}
    # The share is 40 GB: weights, the runtime allowance, and the cache in the rest.
    share = rollout["vLLM weights"] + rollout["vLLM KV cache"] + rollout["vLLM runtime (allowance)"]
    assert share == pytest.approx(40 * GB, abs=1)
    assert arch.kv_bytes_per_token(2) == 2 * 28 * 4 * 128 * 2
    held = rollout["vLLM KV cache"] // (arch.kv_bytes_per_token(2) * 8704)
    assert plan.warnings == [
        f"the vLLM KV cache holds {held} sequences of 8704 tokens, fewer than "
        "rollout.vllm_max_num_seqs 512: longer batches are preempted and recomputed"
    ]


def test_hf_backend_and_kl_add_their_policy_copies_and_an_index_shard():
    cfg = RunConfig()  # hf backend, kl_coef 1e-3
    arch = KNOWN["qwen2.5-1.5b"]
    hw = Hardware(4, int(80 * GB), colocated_index_bytes=int(40 * GB))
    plan = build_plan(cfg, arch, hw, BF16_ZERO2)
    rollout, update = plan.phases
    rows = {r.name: r.bytes for r in update.rows}
    assert rows["generation copy (HF backend)"] == arch.parameters() * 2
    assert rows["reference model (algo.kl_coef > 0)"] == arch.parameters() * 2
    assert rows["retrieval index"] == 10 * GB
    cache = {r.name: r.bytes for r in rollout.rows}["HF generation KV cache"]
    ro = cfg.rollout
    assert cache == ro.batch_size * ro.max_response_tokens * 2 * 28 * 2 * 128 * 2
