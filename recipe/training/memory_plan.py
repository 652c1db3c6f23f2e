"""The memory plan: what one GPU holds in each phase of an RL step, row by row, before anything
heavy is loaded.

A step has two phases. Rollout: the vLLM engine (weights and KV cache) generates while the
trainer's module, optimizer state and reduce buckets stay resident. Update: the trainer's
forward/backward passes over micro-batches; with `rollout.vllm_sleep` the engine has freed its
weights and KV cache (level-2 sleep), otherwise it keeps them. The peak per GPU is the larger
phase. Everything is arithmetic on the architecture's shapes and the config; torch is not
imported.

Model states follow DeepSpeed's own estimator (`estimate_zero2_model_states_mem_needs` without
offload: 2 bytes a parameter for the bf16 module plus 18 over the ranks: bf16 and fp32
gradients, fp32 master weights, two Adam moments); ZeRO-1 keeps the bf16 gradients whole,
ZeRO-0 keeps everything whole (DeepSpeed's estimate for one GPU). Activations count the tensors
autograd keeps per token in a pre-norm RMSNorm / grouped-query attention / SwiGLU decoder as
transformers writes it (`activation_bytes_per_token_layer`); a test measures them on a tiny
Qwen2 model. The logits row is the output head at the target tokens only (the masked forward of
`recipe.training.logprobs`): its log-softmax runs a chunk of rows at a time and keeps only the
logits, so at the head's backward the logits and their gradient are alive together, two
elements per vocabulary entry and token, beside one chunk's float32 buffers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from recipe.schema import RunConfig
from recipe.training.architectures import Architecture, resolve_architecture

GB = 1e9
# Allowances, not derived: the CUDA context and NCCL buffers of one process, and vLLM's runtime
# beyond weights and cache (its profiling pass's activations, CUDA graphs), which a level-2
# sleep leaves in place.
CUDA_CONTEXT_BYTES = int(1.5 * GB)
VLLM_RUNTIME_BYTES = int(2.0 * GB)
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
CHUNK_ROWS = 64  # recipe.training.logprobs.CHUNK_ROWS


def _gpu_dtype(cfg) -> str:
    """`model.dtype` on the GPUs the plan is for, where `auto` means bf16 (every GPU the paper
    setting targets multiplies it natively), whatever the machine printing the plan has."""
    return "bfloat16" if cfg.model.dtype == "auto" else cfg.model.dtype


@dataclass(frozen=True)
class Row:
    name: str
    bytes: int
    note: str = ""
    # Rows of one phase that are alive one after the other, not together: the phase counts the
    # largest of them (the output head's backward runs before any layer is recomputed).
    alternative: bool = False


@dataclass
class Phase:
    name: str
    rows: list[Row] = field(default_factory=list)

    def total(self) -> int:
        fixed = sum(r.bytes for r in self.rows if not r.alternative)
        return fixed + max((r.bytes for r in self.rows if r.alternative), default=0)


@dataclass(frozen=True)
class Hardware:
    gpus: int  # ranks the ZeRO state is partitioned over, one per GPU
    gpu_bytes: int
    colocated_index_bytes: int = 0  # the index a retrieval service keeps on these GPUs, in all


@dataclass
class MemoryPlan:
    phases: list[Phase]
    hardware: Hardware
    knobs: list[str]  # the settings that lower the largest phase, most effective first
    warnings: list[str] = field(default_factory=list)

    def peak(self) -> int:
        return max(p.total() for p in self.phases)

    def fits(self) -> bool:
        return self.peak() <= self.hardware.gpu_bytes

    def verdict(self) -> str:
        head = f"peak per GPU {self.peak() / GB:.1f} GB of {self.hardware.gpu_bytes / GB:.1f} GB"
        if self.fits():
            return f"{head}: fits"
        return f"{head}: does not fit; lower {', '.join(self.knobs)}"

    def table(self) -> str:
        lines = []
        for phase in self.phases:
            lines.append(f"{phase.name} phase, per GPU:")
            for row in phase.rows:
                note = row.note
                if row.alternative:
                    note = f"{note} (not at once with the other such row)".strip()
                lines.append(f"  {row.name:<44} {row.bytes / GB:7.2f} GB  {note}".rstrip())
            lines.append(f"  {'total':<44} {phase.total() / GB:7.2f} GB")
        lines.extend(f"note: {w}" for w in self.warnings)
        lines.append(self.verdict())
        return "\n".join(lines)


def model_state_rows(params: int, element_bytes: int, zero_stage: int, ranks: int) -> list[Row]:
    """The trainer's parameters, gradients and AdamW state per GPU (DeepSpeed mixed precision:
    the module in `element_bytes`, fp32 master weights, fp32 gradient partitions)."""
    shards = ranks if zero_stage >= 1 else 1
    grad_shards = ranks if zero_stage >= 2 else 1
    where = f"over {shards} rank{'s' if shards > 1 else ''}"
    return [
        Row("module", params * element_bytes, f"{params / 1e9:.2f}B x {element_bytes} B"),
        Row(
            "fp32 master weights + Adam moments",
            params * 12 // shards,
            f"12 B a parameter {where} (ZeRO-{zero_stage})",
        ),
        Row(
            "gradients",
            params * element_bytes // grad_shards + params * 4 // shards,
            f"{element_bytes} B whole{'' if grad_shards == 1 else ' / ' + str(grad_shards)}"
            f" + 4 B fp32 {where}",
        ),
    ]


def activation_bytes_per_token_layer(arch: Architecture, element_bytes: int) -> int:
    """What autograd keeps per token in one decoder layer: two RMSNorms (the fp32 upcast of the
    input, the normalised and the scaled output), attention (rotated queries, keys and values
    repeated to every head, as sdpa is called with a padding mask, the attention output and
    its contiguous copy for o_proj, fp32 log-sum-exp per head) and the SwiGLU MLP (gate, its
    SiLU, up, their product)."""
    e = element_bytes
    norms = 2 * (4 * arch.hidden_size + 2 * e * arch.hidden_size)
    attention = 5 * e * arch.q_dim + 4 * arch.num_heads
    mlp = 4 * e * arch.intermediate_size
    return norms + attention + mlp


def activation_rows(
    arch: Architecture, element_bytes: int, tokens: int, targets: int, checkpointing: bool
) -> list[Row]:
    """One forward/backward pass over `tokens` tokens with `targets` target positions."""
    e, h = element_bytes, arch.hidden_size
    layer = activation_bytes_per_token_layer(arch, e)
    final = tokens * (4 * h + 2 * e * h) + targets * e * h  # final norm, hidden at targets
    if checkpointing:
        kept = tokens * arch.num_layers * e * h + final
        rows = [
            Row(
                "activations (gradient checkpointing)",
                kept,
                f"each layer's input, {tokens} tokens x {arch.num_layers} layers",
            ),
            Row(
                "one layer recomputed in backward",
                tokens * (layer + 2 * e * arch.intermediate_size),
                "its activations and the MLP's gradients",
                alternative=True,
            ),
        ]
    else:
        kept = tokens * arch.num_layers * layer + final
        rows = [
            Row(
                "activations (no checkpointing)",
                kept,
                f"{layer / 1e3:.0f} kB a token a layer x {tokens} tokens x {arch.num_layers}",
            )
        ]
    # A chunk's float32 log-probs and their exp (forward) or probabilities (backward).
    chunk = min(targets, CHUNK_ROWS) * arch.vocab_size * 4 * 2
    logits = 2 * e * targets * arch.vocab_size + chunk  # the logits and their gradient
    note = f"{targets} targets x {arch.vocab_size} vocabulary x 2 x {e} B"
    return rows + [Row("logits at the target tokens", logits, note, alternative=checkpointing)]


def vllm_rows(cfg: RunConfig, arch: Architecture, hw: Hardware, params: int) -> list[Row]:
    ro = cfg.rollout
    weights = params * DTYPE_BYTES[_gpu_dtype(cfg)]
    per_token = arch.kv_bytes_per_token(DTYPE_BYTES[_gpu_dtype(cfg)])
    if ro.vllm_kv_cache_gb is not None:
        kv = int(ro.vllm_kv_cache_gb * 2**30)
        kv_note = "rollout.vllm_kv_cache_gb"
    else:
        kv = max(0, int(ro.gpu_memory_utilization * hw.gpu_bytes) - weights - VLLM_RUNTIME_BYTES)
        kv_note = f"rollout.gpu_memory_utilization {ro.gpu_memory_utilization} x GPU - the rest"
    return [
        Row("vLLM weights", weights, _gpu_dtype(cfg)),
        Row("vLLM KV cache", kv, f"{kv_note}; {per_token / 1024:.0f} KiB a token"),
        Row("vLLM runtime (allowance)", VLLM_RUNTIME_BYTES, "profiling activations, CUDA graphs"),
    ]


def hf_cache_row(cfg: RunConfig, arch: Architecture) -> Row:
    """The HF backend's KV cache: `rollout.batch_size` rows at the longest response (their
    prompts not counted)."""
    ro = cfg.rollout
    per_token = arch.kv_bytes_per_token(DTYPE_BYTES[_gpu_dtype(cfg)])
    size = ro.batch_size * ro.max_response_tokens * per_token
    note = f"{ro.batch_size} rows x {ro.max_response_tokens} tokens, prompts not counted"
    return Row("HF generation KV cache", size, note)


def kv_warnings(cfg: RunConfig, arch: Architecture, kv_bytes: int) -> list[str]:
    ro = cfg.rollout
    per_token = arch.kv_bytes_per_token(DTYPE_BYTES[_gpu_dtype(cfg)])
    longest = ro.vllm_max_model_len
    if longest is None:
        return ["rollout.vllm_max_model_len is unset: vLLM sizes for the model's own limit"]
    held = kv_bytes // (per_token * longest)
    seqs = ro.vllm_max_num_seqs
    if held < 1:
        return [f"the vLLM KV cache holds no {longest}-token sequence: vLLM refuses to start"]
    if seqs is None or held < seqs:
        wanted = f"rollout.vllm_max_num_seqs {seqs}" if seqs else "vLLM's default max_num_seqs"
        return [
            f"the vLLM KV cache holds {held} sequences of {longest} tokens, fewer than "
            f"{wanted}: longer batches are preempted and recomputed"
        ]
    return []


def index_row(hw: Hardware, cfg: RunConfig) -> list[Row]:
    if not hw.colocated_index_bytes:
        return []
    r = cfg.retriever
    shard = hw.colocated_index_bytes // hw.gpus if r.faiss_gpu_shard else hw.colocated_index_bytes
    return [Row("retrieval index", shard, "sharded over the GPUs" if r.faiss_gpu_shard else "")]


def policy_copy_rows(cfg: RunConfig, params: int) -> list[Row]:
    """The frozen copies the trainer keeps besides the module: the HF backend's generation
    copy, and the reference model when KL is on."""
    each = params * DTYPE_BYTES[_gpu_dtype(cfg)]
    rows = []
    if cfg.rollout.backend != "vllm":
        rows.append(Row("generation copy (HF backend)", each, _gpu_dtype(cfg)))
    if cfg.algo.kl_coef != 0.0:
        rows.append(Row("reference model (algo.kl_coef > 0)", each, _gpu_dtype(cfg)))
    return rows


def read_json(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"trainer.deepspeed_config: {path} not found") from None


def index_bytes(cfg: RunConfig) -> int:
    """The built index's vectors on the GPUs (manifest count x dim, fp16 or fp32); 0 when it
    is not built here or is not kept on GPUs."""
    r = cfg.retriever
    if r.kind != "dense" or not r.faiss_gpu:
        return 0
    try:
        manifest = json.loads((Path(r.index_dir) / "manifest.json").read_text())
        count, dim = int(manifest["count"]), int(manifest["dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return count * dim * (2 if r.faiss_gpu_fp16 else 4)


def plan_for_config(
    cfg: RunConfig, gpus: int, gpu_bytes: int, colocated_index_bytes: int | None = None
) -> MemoryPlan:
    """The plan of a stage config: shapes from `model.architecture` or the model folder's
    config.json, ZeRO settings from `trainer.deepspeed_config`. An in-process retriever keeps
    its index on the GPUs when it is built (`retriever.index_dir`); a service on the same GPUs
    is told by `colocated_index_bytes`."""
    arch = resolve_architecture(cfg.model.path, cfg.model.architecture)
    if colocated_index_bytes is None:
        # In process, every rank holds its own index, spread over the GPUs it sees.
        colocated_index_bytes = 0 if cfg.retriever.url else index_bytes(cfg) * gpus
    hw = Hardware(gpus, gpu_bytes, colocated_index_bytes)
    return build_plan(cfg, arch, hw, read_json(cfg.trainer.deepspeed_config))


def build_plan(cfg: RunConfig, arch: Architecture, hw: Hardware, deepspeed: dict) -> MemoryPlan:
    """The plan of `cfg` on `hw`; `deepspeed` is the trainer's DeepSpeed JSON."""
    tc, ro = cfg.trainer, cfg.rollout
    params = arch.parameters()
    bf16 = deepspeed.get("bf16", {}).get("enabled") or deepspeed.get("fp16", {}).get("enabled")
    e = 2 if bf16 else 4
    zero = deepspeed.get("zero_optimization", {})
    stage = int(zero.get("stage", 0))
    states = model_state_rows(params, e, stage, hw.gpus)
    module, optimizer, gradients = states
    buckets = []
    if stage >= 1:
        size = int(float(zero.get("reduce_bucket_size", 5e8)))
        n = 2 if zero.get("overlap_comm", False) else 1
        buckets = [Row("reduce buckets", size * e * n, f"{n} x {size:.0e} x {e} B")]
    context = [Row("CUDA context (allowance)", CUDA_CONTEXT_BYTES, "")]
    index = index_row(hw, cfg)
    # A row wider than the budget gets a pass of its own. Targets: at worst every token of a
    # pass within the budget, or every sampled token of a lone wider row.
    tokens = max(tc.micro_batch_tokens, ro.vllm_max_model_len or 0)
    sampled = min(ro.max_response_tokens, (ro.max_retrievals + 1) * ro.max_segment_tokens)
    targets = min(tokens, max(tc.micro_batch_tokens, sampled))
    acts = activation_rows(arch, e, tokens, targets, tc.gradient_checkpointing)
    copies = policy_copy_rows(cfg, params)
    update = Phase(
        "update", [module, optimizer, gradients, *buckets, *copies, *acts, *context, *index]
    )
    phases, warnings = [], []
    knobs = ["trainer.micro_batch_tokens"]
    if not tc.gradient_checkpointing:
        knobs.insert(0, "trainer.gradient_checkpointing=true")
    if ro.backend == "vllm":
        engine = vllm_rows(cfg, arch, hw, params)
        warnings = kv_warnings(cfg, arch, engine[1].bytes)
        resident = [module, optimizer, *buckets, *copies]
        rollout = Phase("rollout", [*resident, *engine, *context, *index])
        phases.append(rollout)
        if ro.vllm_sleep:
            update.rows.append(engine[2])
        else:
            update.rows.extend(engine)
        rollout_knobs = ["rollout.vllm_kv_cache_gb or rollout.gpu_memory_utilization"]
        if not ro.vllm_sleep:
            rollout_knobs.append("rollout.vllm_sleep=true")
        if rollout.total() >= update.total():
            knobs = rollout_knobs + knobs
        else:
            knobs = knobs + rollout_knobs
    else:
        resident = [module, optimizer, *buckets, *copies]
        phases.append(Phase("rollout", [*resident, hf_cache_row(cfg, arch), *context, *index]))
        knobs.append("rollout.batch_size")
    phases.append(update)
    if stage < 2:
        knobs.append("deepspeed zero_optimization.stage 2")
    knobs.append("more GPUs (ZeRO shards the optimizer state)")
    return MemoryPlan(phases, hw, knobs, warnings)
