"""A tiny filtering world: the tiny Llama of demo.world over SmolLM2's tokenizer, saved
as a Hugging Face folder; a BM25 index over the demo passages; question files in the HotpotQA
and 2Wiki layouts; and `AnswerRate`, a logits processor that makes each question's rollouts
correct at its own rate.

The model samples for real: after FREE_TOKENS freely sampled tokens, a rollout answers the gold
when its first sampled token id is divisible by the question's `every` (1: always; None: never),
else a wrong answer. So rollouts-to-first-correct depends on the weights and the seed, through
the real engine, backend, retriever and scoring.
"""

from __future__ import annotations

import json
from pathlib import Path

from data_filtering.config import BucketConfig, FilterConfig, FilterRunConfig, SourceConfig
from data_filtering.reference import ReferenceRounds
from demo.world import DEMO_PASSAGES, tiny_policy
from recipe.generation.hf import HFBackend
from recipe.prompts import question_prompt_ids
from recipe.retrieval.index import build_index
from recipe.schema import RetrieverConfig
from tests.recipe.tiny_world import FirstTokenSteering

WRONG_ANSWER = "Nobody Atall"

# (dataset, id, question, answer, every)
QUESTIONS = [
    ("hotpotqa", "h0", "Who founded the river port of Velmora?", "Ansel Drake", 1),
    ("hotpotqa", "h1", "Where was the cartographer Ansel Drake born?", "Oskar", 2),
    ("hotpotqa", "h2", "Which ensemble does Ida Varga lead?", "Lumen Quartet", 3),
    ("hotpotqa", "h3", "What do the roofs of Oskar carry?", "slate", None),
    ("2wiki", "w0", "Who is the mayor of Tallow?", "Pim Osei", 1),
    ("2wiki", "w1", "In which city is the Brisk Conservatory?", "Tallow", 2),
    ("2wiki", "w2", "What rings in Oskar every evening?", "copper bells", None),
]
EVERY = {question: every for _, _, question, _, every in QUESTIONS}


def save_tiny_model(folder: Path, tokenizer, seed: int = 0) -> Path:
    tiny_policy(tokenizer, seed=seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_demo_index(folder: Path) -> RetrieverConfig:
    corpus = folder / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"id": p.id, "contents": p.contents}) + "\n" for p in DEMO_PASSAGES)
    )
    cfg = RetrieverConfig(kind="bm25", corpus=str(corpus), index_dir=str(folder / "index"))
    build_index(cfg, progress=False)
    return cfg


def write_question_files(folder: Path, bad_rows: bool = True) -> dict[str, Path]:
    """One HotpotQA-layout and one 2Wiki-layout JSON list (with one unusable row each)."""
    paths = {}
    for dataset in ("hotpotqa", "2wiki"):
        rows = []
        for ds, qid, question, answer, _ in QUESTIONS:
            if ds == dataset:
                row = {"_id": qid, "question": question, "answer": answer, "type": "bridge"}
                if dataset == "2wiki":
                    row["evidences"] = []
                rows.append(row)
        if bad_rows:
            rows.append({"_id": f"{dataset}-bad", "question": "", "answer": "x"})
        paths[dataset] = folder / f"{dataset}_train.json"
        paths[dataset].write_text(json.dumps(rows))
    return paths


def filter_config(
    out: Path, model_dir: Path, retriever: RetrieverConfig, files: dict[str, Path], **settings
) -> FilterRunConfig:
    cfg = FilterRunConfig()
    cfg.model.path, cfg.model.dtype, cfg.model.prompt_style = str(model_dir), "float32", "instruct"
    cfg.retriever = RetrieverConfig(**{**vars(retriever), "topk": 2})
    cfg.rollout.max_segment_tokens = 24
    cfg.rollout.max_response_tokens = 200
    cfg.rollout.batch_size = 8  # 4 questions of 2 rollouts per engine call
    cfg.rollout.seed = 3
    fields = {
        "output_dir": str(out),
        "sources": {name: SourceConfig(path=str(path)) for name, path in files.items()},
        "rollouts_per_round": 2,
        "max_rollouts": 6,
        "buckets": BucketConfig(easy_below=3, difficult_above=4),
        "quotas": {
            "stage1": {"hotpotqa": {"medium": 1}, "2wiki": {"easy": 1}},
            "stage2": {"hotpotqa": {"difficult": 2}, "2wiki": {"medium": 1, "difficult": 1}},
        },
        "progress": False,
        **settings,
    }
    cfg.filter = FilterConfig(**fields)
    return cfg


class AnswerRate(FirstTokenSteering):
    """Logits processor: after FREE_TOKENS, force the gold answer when the first sampled token
    id is divisible by the question's `every`, else a wrong one."""

    def __init__(self, tokenizer, cfg: FilterRunConfig):
        self.tokenizer = tokenizer
        self.tags = cfg.tags
        self.prompts = [
            (question_prompt_ids(q, tokenizer, cfg.tags, cfg.model.prompt_style), q, a)
            for _, _, q, a, _ in QUESTIONS
        ]

    def _plan(self, context: list[int], first_sampled: int) -> list[int]:
        _, question, answer = next(p for p in self.prompts if context[: len(p[0])] == p[0])
        every = EVERY[question]
        text = answer if every is not None and first_sampled % every == 0 else WRONG_ANSWER
        tags = self.tags
        plan = f" {tags.think_end}\n\n{tags.answer_start} {text} {tags.answer_end}"
        return self.tokenizer(plan, add_special_tokens=False)["input_ids"]


def steered_rounds(cfg: FilterRunConfig, tokenizer) -> ReferenceRounds:
    """The reference policy's rollouts with AnswerRate steering its backend."""

    def backend(model, tok):
        return HFBackend(model, tok, [AnswerRate(tokenizer, cfg)])

    return ReferenceRounds(cfg, backend_factory=backend)


class CountingRunner:
    """Wraps a RoundRunner; records every call's (round, call index, record ids)."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[tuple[int, int, list[str]]] = []

    def __call__(self, records, round_index, call_index):
        self.calls.append((round_index, call_index, [r.id for r in records]))
        return self.inner(records, round_index, call_index)
