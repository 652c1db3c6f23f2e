"""`python -m demo.build --out runs/smoke/world`: the smoke setting's world on disk.

What `configs/smoke/` reads, made from a seed in seconds with no download: the tiny
Llama-shaped policy of `demo.world` (random weights, SmolLM2's tokenizer) saved as a Hugging
Face folder after a few supervised steps on the answer format (`demo.format_warmup`, so that
its samples differ in reward), the demo passages as a corpus with its BM25 index, and question
files in the HotpotQA layout (train, dev, test) over those passages. Every run of the real
pipeline (filter, both stages, the evaluation) then goes through the same entry points as the
embedded and paper settings, in minutes on a CPU. The policy never learns to search or to
answer right: the smoke checks that everything runs and writes what it should, not learning.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from demo.format_warmup import format_examples, warm_up_format
from demo.world import DEMO_PASSAGES, smollm2_tokenizer, tiny_policy
from recipe.retrieval.index import build_index
from recipe.schema import RetrieverConfig, TagsConfig

MODEL_DIR, CORPUS, INDEX_DIR = "model", "corpus.jsonl", "index"
FORMAT_STEPS = 60  # supervised steps on the answer format (demo.format_warmup)

# (split, id, question, answer, type): each answer is in the demo passages.
QUESTIONS = [
    ("train", "t0", "Who founded the river port of Velmora?", "Ansel Drake", "bridge"),
    ("train", "t1", "Where was the cartographer Ansel Drake born?", "Oskar", "bridge"),
    ("train", "t2", "Which ensemble does Ida Varga lead?", "Lumen Quartet", "bridge"),
    ("train", "t3", "What do the copper bells of Oskar do at dusk?", "ring", "bridge"),
    ("train", "t4", "Who is the mayor of Tallow?", "Pim Osei", "bridge"),
    ("train", "t5", "In which city is the Brisk Conservatory?", "Tallow", "bridge"),
    ("train", "t6", "What was Pim Osei before he became mayor?", "sailor", "bridge"),
    ("train", "t7", "Where did the violinist Ida Varga study?", "Brisk Conservatory", "bridge"),
    ("dev", "d0", "In which town was the founder of Velmora born?", "Oskar", "bridge"),
    ("dev", "d1", "Who leads the Lumen Quartet?", "Ida Varga", "bridge"),
    ("dev", "d2", "Is Tallow a coastal city or a hill town?", "coastal city", "comparison"),
    ("test", "s0", "Who is the mayor of the city of the Brisk Conservatory?", "Pim Osei", "bridge"),
    ("test", "s1", "What covers the roofs of the northern hill towns?", "Slate", "bridge"),
    ("test", "s2", "Which town is known for copper bells?", "Oskar", "bridge"),
]
SPLITS = ("train", "dev", "test")


def question_file(split: str) -> str:
    return f"{split}.json"


def write_questions(out: Path) -> dict[str, Path]:
    """One HotpotQA-layout JSON list per split."""
    paths = {}
    for split in SPLITS:
        rows = [
            {"_id": qid, "question": q, "answer": a, "type": kind}
            for s, qid, q, a, kind in QUESTIONS
            if s == split
        ]
        paths[split] = out / question_file(split)
        paths[split].write_text(json.dumps(rows, indent=1) + "\n")
    return paths


def write_corpus(out: Path) -> Path:
    corpus = out / CORPUS
    corpus.write_text(
        "".join(json.dumps({"id": p.id, "contents": p.contents}) + "\n" for p in DEMO_PASSAGES)
    )
    return corpus


def build(out: Path, seed: int = 0, tokenizer=None, format_steps: int = FORMAT_STEPS) -> None:
    """The world in `out`; `tokenizer` is SmolLM2's (read from its GGUF file when None)."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer if tokenizer is not None else smollm2_tokenizer()
    policy = tiny_policy(tokenizer, seed=seed)
    if format_steps:
        train = [(q, a) for split, _, q, a, _ in QUESTIONS if split == "train"]
        examples = format_examples(tokenizer, train, TagsConfig())
        warm_up_format(policy, examples, format_steps, seed=seed)
    policy.eval().save_pretrained(out / MODEL_DIR)
    tokenizer.save_pretrained(out / MODEL_DIR)
    corpus = write_corpus(out)
    retriever = RetrieverConfig(
        kind="bm25", corpus=str(corpus), corpus_format="flashrag", index_dir=str(out / INDEX_DIR)
    )
    build_index(retriever, progress=False, overwrite=True)
    write_questions(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/smoke/world"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the policy's weights")
    parser.add_argument(
        "--format-steps",
        type=int,
        default=FORMAT_STEPS,
        help="supervised steps on the answer format (0: the random policy as built)",
    )
    args = parser.parse_args(argv)
    build(args.out, args.seed, format_steps=args.format_steps)
    print(
        f"demo.build: tiny policy, {len(DEMO_PASSAGES)} passages (BM25), "
        f"{len(QUESTIONS)} questions in {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
