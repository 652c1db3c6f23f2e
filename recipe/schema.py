"""The run configuration: one dataclass per YAML section, every field documented here once.

Load with `recipe.config.load_config(RunConfig, path, overrides)`; `python -m recipe.schema`
prints every field with its type, default and meaning. Components add fields to their own
section; nothing else declares a setting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from recipe.config import describe, doc

# Tag profiles: R1-Searcher (arXiv:2503.05592) and Search-R1 (arXiv:2503.09516).
TAG_PROFILES: dict[str, dict[str, str]] = {
    "r1searcher": {
        "think_start": "<think>",
        "think_end": "</think>",
        "begin_query": "<|begin_of_query|>",
        "end_query": "<|end_of_query|>",
        "begin_docs": "<|begin_of_documents|>",
        "end_docs": "<|end_of_documents|>",
        "answer_start": "<answer>",
        "answer_end": "</answer>",
    },
    "searchr1": {
        "think_start": "<think>",
        "think_end": "</think>",
        "begin_query": "<search>",
        "end_query": "</search>",
        "begin_docs": "<information>",
        "end_docs": "</information>",
        "answer_start": "<answer>",
        "answer_end": "</answer>",
    },
}


@dataclass
class TagsConfig:
    profile: Literal["r1searcher", "searchr1"] = doc(
        "r1searcher", "Tag set; any tag left null below takes this profile's string."
    )
    think_start: str | None = doc(None, "Opens the reasoning; the prompt ends with it.")
    think_end: str | None = doc(None, "Closes the reasoning; exactly one per response.")
    begin_query: str | None = doc(None, "Opens a search query written by the model.")
    end_query: str | None = doc(None, "Closes a query; generation stops on it.")
    begin_docs: str | None = doc(None, "Opens the passages the environment inserts.")
    end_docs: str | None = doc(None, "Closes the inserted passages.")
    answer_start: str | None = doc(None, "Opens the final answer.")
    answer_end: str | None = doc(None, "Closes the final answer.")

    def __post_init__(self) -> None:
        for name, tag in TAG_PROFILES[self.profile].items():
            if getattr(self, name) is None:
                setattr(self, name, tag)

    @classmethod
    def named(cls, profile: str) -> TagsConfig:
        return cls(profile=profile)  # type: ignore[arg-type]


@dataclass
class ModelConfig:
    path: str = doc("runs/miniwiki/base", "Hugging Face model folder (or hub id) of the policy.")
    gguf_file: str | None = doc(None, "GGUF file inside `path` to load (transformers + gguf).")
    dtype: Literal["float32", "bfloat16", "float16"] = doc("bfloat16", "Parameter dtype.")
    prompt_style: Literal["base", "instruct"] = doc(
        "instruct",
        "base: R1-Searcher's plain-text prompt ending in 'Assistant: <think>'; "
        "instruct: the tokenizer's chat template with the system prompt, then <think>.",
    )


@dataclass
class DataConfig:
    train_file: str = doc("runs/data/stage1.jsonl", "Training questions (jsonl records).")
    eval_files: list[str] = doc([], "Evaluation question files, reported separately.")
    source_format: Literal["auto", "r1searcher", "hotpotqa", "2wiki", "record"] = doc(
        "auto", "Record format of the files; auto detects it from the first record's keys."
    )
    max_questions: int | None = doc(None, "Use only the first N training questions.")


@dataclass
class RetrieverConfig:
    kind: Literal["dense", "bm25"] = doc("dense", "Dense (FlagEmbedding + faiss) or BM25.")
    corpus: str = doc("runs/miniwiki/task/corpus.jsonl", "Corpus file to index.")
    corpus_format: Literal["auto", "flashrag", "kilt", "kilt_tsv", "hotpot_abstracts_tsv"] = doc(
        "auto", "Corpus reader; auto picks by suffix and the first line."
    )
    encoder: str = doc("all-MiniLM-L6-v2", "Encoder model folder, or a known package name.")
    pooling: Literal["cls", "mean"] = doc("mean", "Pooling of token states (BGE: cls).")
    query_instruction: str = doc("", "Prefix prepended to queries (BGE's retrieval instruction).")
    normalize: bool = doc(True, "L2-normalise embeddings (inner product = cosine).")
    device: str = doc(
        "cpu",
        "Encoder device: cpu, cuda, cuda:0 ...; a comma-separated list (cuda:0,cuda:1) "
        "makes FlagEmbedding encode on all of them, one process each.",
    )
    fp16: bool = doc(False, "Encode in half precision (GPU only).")
    batch_size: int = doc(64, "Passages per encoder batch when indexing.")
    max_passage_tokens: int = doc(256, "Passage truncation for the encoder.")
    index_dir: str = doc("runs/index/miniwiki", "Folder of the index, doc store and manifest.")
    faiss_factory: str = doc("Flat", "faiss index_factory string: Flat, IVF4096,Flat, HNSW32, SQ8.")
    topk: int = doc(3, "Passages returned per query.")
    url: str | None = doc(None, "Retrieval service URL; null searches in process.")
    host: str = doc("127.0.0.1", "Address the retrieval service binds.")
    port: int = doc(8008, "Port the retrieval service binds.")
    timeout_s: float = doc(30.0, "Per-request timeout of the HTTP client.")
    max_retries: int = doc(3, "HTTP retries (exponential backoff) before failing.")
    cache_size: int = doc(100_000, "LRU cache entries keyed by (query, k); 0 disables.")
    max_queries_per_request: int = doc(512, "The service answers 413 above this.")
    max_query_chars: int = doc(2048, "The service answers 422 for longer queries.")
    passage_words: int = doc(100, "kilt reader: words per passage (R1-Searcher: 100).")
    max_query_tokens: int = doc(128, "Query truncation for the encoder.")
    faiss_train_size: int = doc(200_000, "Vectors sampled to train IVF / SQ / PQ indexes.")
    faiss_nprobe: int = doc(64, "IVF lists probed per query (IVF factories only).")
    hnsw_ef_search: int = doc(128, "HNSW search breadth (HNSW factories only).")
    faiss_gpu: bool = doc(True, "Shard the faiss index over all GPUs faiss-gpu sees (if any).")
    bm25_k1: float = doc(1.5, "BM25 term-frequency saturation.")
    bm25_b: float = doc(0.75, "BM25 length normalisation.")
    server_max_batch: int = doc(256, "Service: queries merged into one encode + search call.")
    server_batch_wait_ms: float = doc(
        0.0,
        "Service: extra wait for more requests to batch (0: batch only those that queued "
        "while the previous batch ran, adding no latency).",
    )
    max_topk: int = doc(100, "The service answers 422 for a larger topk / k.")
    retry_backoff_s: float = doc(0.5, "Client: first retry delay, doubled after each failure.")
    health_check: bool = doc(True, "Client: check GET /health at start-up, fail fast if down.")


@dataclass
class RolloutConfig:
    backend: Literal["hf", "vllm"] = doc("hf", "Generation backend.")
    samples_per_prompt: int = doc(8, "Rollouts per question (the group for the baseline).")
    temperature: float = doc(1.0, "Sampling temperature.")
    top_p: float = doc(1.0, "Nucleus sampling mass.")
    max_segment_tokens: int = doc(512, "Tokens the model may generate between two insertions.")
    max_response_tokens: int = doc(2048, "Cap on all response tokens, inserted ones included.")
    max_retrievals: int = doc(8, "Searches per trajectory before it is finished.")
    on_max_retrievals: Literal["keep", "force_answer"] = doc(
        "keep",
        "The documents of the last allowed search are inserted either way. keep: a further "
        "query ends the trajectory as it stands (unanswered, stop reason max_retrievals); "
        "force_answer: the segment after the last allowed search has no query stop, so the "
        "model writes on to its answer.",
    )
    stop_at_answer_end: bool = doc(
        True, "End the response at the answer end tag (R1-Searcher's generation stops on it)."
    )
    batch_size: int = doc(16, "Trajectories generated together.")
    seed: int = doc(0, "Sampling seed.")
    doc_template: str = doc("({rank}){text}", "One retrieved passage in the inserted block.")
    gpu_memory_utilization: float = doc(0.5, "vLLM: fraction of GPU memory for weights + cache.")


@dataclass
class RewardConfig:
    name: Literal["stage1", "stage2"] = doc("stage1", "Registered stage reward.")
    metric_profile: Literal["squad", "r1searcher"] = doc(
        "r1searcher", "Answer normalisation (rewards.metrics)."
    )
    max_answer_words: int = doc(20, "Longer answers break the format.")
    w_retrieval: float = doc(0.5, "stage1: weight of 'at least one well-formed query'.")
    w_format: float = doc(0.5, "stage1: weight of 'the whole response is well formed'.")
    w_answer: float = doc(0.0, "stage1: weight of answer cover-EM (R1-Searcher Llama: 1).")
    format_penalty: float = doc(-2.0, "stage2: added when the response is malformed.")
    no_search_penalty: float = doc(0.0, "stage2: added when the model never searched.")
    no_answer_penalty: float = doc(0.0, "stage2: added when there is no answer (Search-R1++).")


@dataclass
class AlgoConfig:
    advantage: Literal["reinforce_pp_baseline", "reinforce_pp", "grpo", "rloo"] = doc(
        "reinforce_pp_baseline", "Advantage estimator (recipe.algorithms registry)."
    )
    kl_estimator: Literal["k1", "k3"] = doc("k1", "KL(policy || reference) estimator.")
    kl_coef: float = doc(1e-3, "KL weight.")
    kl_in_reward: bool = doc(True, "Apply KL as a per-token reward penalty (else a loss term).")
    clip_eps: float = doc(0.2, "PPO clip epsilon.")
    gamma: float = doc(1.0, "Discount for returns.")
    whiten: bool = doc(True, "Whiten advantages over the batch (action tokens only).")
    whiten_eps: float = doc(1e-8, "Whitening: (x - mean) / sqrt(var + eps) over action tokens.")
    grpo_std_eps: float = doc(1e-6, "grpo: added to the group std: (r - mean) / (std + eps).")
    policy_loss: Literal["ppo_clip"] = doc("ppo_clip", "Policy loss (recipe.algorithms registry).")


@dataclass
class TrainerConfig:
    run_name: str = doc("stage1", "Writes into runs/<run_name>/.")
    runs_dir: str = doc("runs", "Parent folder of all runs.")
    lr: float = doc(2e-6, "Learning rate.")
    steps: int = doc(100, "Optimizer steps (rollout batches).")
    prompts_per_step: int = doc(8, "Questions per rollout batch.")
    micro_batch_size: int = doc(4, "Trajectories per forward/backward.")
    ppo_epochs: int = doc(1, "Passes over each rollout batch.")
    max_grad_norm: float = doc(1.0, "Gradient clipping.")
    deepspeed_config: str = doc("configs/deepspeed/zero2.json", "DeepSpeed JSON.")
    save_every: int = doc(50, "Checkpoint every N steps (0: only at the end).")
    seed: int = doc(0, "Global seed.")


@dataclass
class LoggingConfig:
    log_every: int = doc(1, "Log metrics every N steps.")
    tensorboard: bool = doc(True, "Write TensorBoard events.")
    save_trajectories: bool = doc(True, "Write sampled trajectories as jsonl.")


@dataclass
class RunConfig:
    model: ModelConfig = doc(ModelConfig(), "The policy model.")
    tags: TagsConfig = doc(TagsConfig(), "Tag strings of the search protocol.")
    data: DataConfig = doc(DataConfig(), "Question files.")
    retriever: RetrieverConfig = doc(RetrieverConfig(), "Corpus, encoder, index and service.")
    rollout: RolloutConfig = doc(RolloutConfig(), "Trajectory generation.")
    reward: RewardConfig = doc(RewardConfig(), "Stage reward and answer metric.")
    algo: AlgoConfig = doc(AlgoConfig(), "Advantage, KL and policy loss.")
    trainer: TrainerConfig = doc(TrainerConfig(), "Optimisation and checkpoints.")
    logging: LoggingConfig = doc(LoggingConfig(), "Metrics and trajectory logs.")


def section_names() -> list[str]:
    return [f.name for f in dataclasses.fields(RunConfig)]


if __name__ == "__main__":
    print("\n".join(describe(RunConfig)))
