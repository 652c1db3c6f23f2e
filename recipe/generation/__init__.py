"""Generation backends behind one interface (`base.GenerationBackend`).

`build_backend(run_cfg, model, tokenizer)` is the one place `rollout.backend` is read: the
trainer, the difficulty filter, the gate and the evaluation all get their backend from it.
"""

from __future__ import annotations

from collections.abc import Sequence

from recipe.generation.base import GenerationBackend, LogitsProcessor


def build_backend(
    run_cfg, model, tokenizer, logits_processors: Sequence[LogitsProcessor] = ()
) -> GenerationBackend:
    """The configured backend over `model` (for vLLM: exported to a folder and loaded)."""
    rollout = run_cfg.rollout
    if rollout.backend == "hf":
        from recipe.generation.hf import HFBackend

        return HFBackend(model, tokenizer, logits_processors)
    if rollout.backend == "vllm":
        from recipe.generation.vllm import VLLMBackend, VLLMSettings, logprobs_mode_for
        from recipe.precision import resolve_dtype

        settings = VLLMSettings(
            dtype=resolve_dtype(run_cfg.model.dtype),
            gpu_memory_utilization=rollout.gpu_memory_utilization,
            kv_cache_gb=rollout.vllm_kv_cache_gb,
            max_model_len=rollout.vllm_max_model_len,
            max_num_seqs=rollout.vllm_max_num_seqs,
            enforce_eager=rollout.vllm_enforce_eager,
            sleep=rollout.vllm_sleep,
            logprobs_mode=logprobs_mode_for(rollout.temperature),
            export_dir=rollout.vllm_export_dir,
            seed=rollout.seed,
        )
        return VLLMBackend(model, tokenizer, settings, logits_processors)
    raise ValueError(f"rollout.backend={rollout.backend!r}: expected 'hf' or 'vllm'")
