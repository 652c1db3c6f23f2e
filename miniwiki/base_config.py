"""Settings of the embedded base model: its cold start and the gate it must pass before RL.

They are sections of `MiniwikiConfig` (`coldstart:` and `gate:` in
`configs/embedded/miniwiki.yaml`); they live here so the world settings stay in one file and
the base-model settings in another.
"""

from __future__ import annotations

from dataclasses import dataclass

from recipe.config import doc


@dataclass
class BehaviourMix:
    """Shares of the cold-start transcripts; normalised, so only the ratios matter.

    The share of searching transcripts is what sets the base model's search rate (measured:
    200 search-only transcripts made SmolLM2 search on every question).
    """

    direct: float = doc(
        0.8, "answer at once from 'memory': a think recalling the facts, then the answer"
    )
    search: float = doc(0.155, "search each hop with a good query, read, copy the answer")
    poor_query: float = doc(
        0.01, "first search with a poor query, find nothing, search again well, copy the answer"
    )
    read: float = doc(
        0.25,
        "as `search`, but the opening words that choose to search carry no loss: they teach "
        "querying and reading without raising the search rate",
    )


@dataclass
class TranscriptTemplates:
    """The assistant's own words. Fields: {subject}, {relation}, {value}, {sentence} (the
    corpus sentence stating the fact), {cue} (the words the articles put before the value,
    `miniwiki.articles.CUES`, else the relation's name), {statement} ("{cue} {value}", or
    "{relation}: {value}" for a relation without cue words) and {answer}."""

    direct_think: str = doc(
        " I remember this one: {facts}. ",
        "a direct think: {facts} are the question's facts 'from memory', each as `recalled`, "
        "so every transcript (not only the searching ones) maps a question to its relations' "
        "words; `conclude` follows",
    )
    recalled: str = doc("{subject} {statement}", "one fact of a direct think")
    search_intro: str = doc(" I need to search for {subject}. ", "before a chain's first query")
    compare_intro: str = doc(
        " I need to search for {first} and for {second}. ",
        "before a comparison's first query: the plan names both entities, so the second search "
        "is for the other entity of the question, not for the value just found (as in a chain)",
    )
    query: str = doc("{subject} {cue}", "a good query: one triple's keywords")
    poor_query: str = doc("{cue}", "a poor query: the relation without its entity")
    found: str = doc(
        "So {subject} {statement}. ",
        "after a hit: the fact in the documents' own words, value last (a copy of what "
        "follows the query's cue words in the documents)",
    )
    not_found: str = doc(
        "The documents do not mention {subject}. I need to search again. ", "after a miss"
    )
    next_search: str = doc("Next I need to search for {subject}. ", "before a later query")
    compare: str = doc(
        "Comparing {first}: {first_value} and {second}: {second_value}. ",
        "before the conclusion of a comparison: both found values side by side, so the answer "
        "is read from the two of them rather than recalled",
    )
    conclude: str = doc("So the answer is {answer}. ", "before the think-end tag")
    think_to_answer: str = doc("\n\n", "between the think-end tag and the answer-start tag")
    answer: str = doc(" {answer} ", "inside the answer tags")


@dataclass
class ColdStartConfig:
    run_config: str = doc(
        "configs/embedded/stage1.yaml",
        "Run config whose tags, prompt style, retriever top-k and document template the "
        "transcripts use, so they look exactly like the stage rollouts.",
    )
    source_dir: str = doc("runs/miniwiki/smollm2", "Plain HF folder converted from the GGUF.")
    out_dir: str = doc("runs/miniwiki/base", "The embedded base model (HF folder + gate.json).")
    transcripts: int = doc(345, "Transcripts written (train-split warm-up questions, sampled).")
    mix: BehaviourMix = doc(BehaviourMix(), "Behaviour mix of the transcripts.")
    templates: TranscriptTemplates = doc(TranscriptTemplates(), "The assistant's phrasing.")
    max_hops: int = doc(2, "Searching transcripts skip questions with more evidence triples.")
    dtype: str = doc(
        "float32", "Training and saved dtype (fp32 measured faster than bf16 on a 2-core CPU)."
    )
    lr: float = doc(2e-4, "AdamW learning rate (3e-5 left the model never searching).", gt=0)
    weight_decay: float = doc(0.0, "AdamW weight decay.", ge=0)
    warmup_steps: int = doc(5, "Linear learning-rate warm-up steps, then linear decay to 0.", ge=0)
    epochs: int = doc(1, "Passes over the transcripts.", ge=1)
    step_tokens: int = doc(
        2000,
        "Tokens (after the shared prompt prefix) per optimizer step; sets the step count.",
        ge=1,
    )
    micro_batch_tokens: int = doc(2048, "Padded tokens of one forward/backward pass.", ge=1)
    max_grad_norm: float = doc(1.0, "Gradient clipping.", gt=0)
    frozen_layers: int = doc(
        12,
        "Keep the token embeddings (tied to the output projection) and this many lowest decoder "
        "layers fixed; 0 trains everything. Backward then stops above them.",
        ge=0,
    )
    shared_prefix: bool = doc(
        True,
        "Run the prompt prefix every transcript shares (system prompt) once per step and "
        "broadcast its keys and values; exact, and it saves most of the prompt compute.",
    )
    seed: int = doc(0, "Seed of sampling, shuffling and initial state.")


@dataclass
class GateConfig:
    """Measured on task-world dev questions with the stage prompt, sampling at temperature 1."""

    questions: int = doc(128, "Task-world dev questions (a seeded sample of both data sets).", ge=1)
    samples_per_question: int = doc(2, "Rollouts per question.", ge=1)
    retriever: str = doc(
        "bm25", "bm25: BM25 over the task corpus; config: the run config's retriever (dense)."
    )
    min_search_rate: float = doc(0.10, "Lowest share of rollouts with a well-formed query.")
    max_search_rate: float = doc(0.30, "Highest share of rollouts with a well-formed query.")
    min_format_valid: float = doc(0.5, "Lowest share of well-formed responses.")
    min_searched_cover_em: float = doc(0.2, "Lowest cover-EM of the rollouts that searched.")
    min_cover_em_gap: float = doc(
        0.1, "Cover-EM of searching rollouts must exceed the non-searching ones' by this."
    )
    seed: int = doc(0, "Seed of the question sample and of the sampler.")
