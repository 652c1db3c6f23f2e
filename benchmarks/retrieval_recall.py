"""Recall@k of the source page on the KILT sample: dense (the configured encoder) vs BM25.

`python -m benchmarks.retrieval_recall [--config FILE] [retriever.key=value ...]`

For every page of the 100-page KILT sample (R1-Searcher's release), two queries: the page's
title, and the first sentence of its first text paragraph. A query is a hit at k when one of
its top-k passages comes from that page. Both retrievers search the same passages (the dense
one through the index `make index-kilt-sample` builds, built here if missing); search time
is the median of several repeats, quoted as a ratio.

When miniwiki exists (`make miniwiki`), the same comparison on its dev questions (HotpotQA and
2Wiki layouts) over its task corpus (the index `make index` builds): Recall@k of the
supporting pages, the share of a question's supporting titles among its top-k passages.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

from recipe.config import parse_cli
from recipe.retrieval.bm25 import BM25Retriever
from recipe.retrieval.docstore import DocStore
from recipe.retrieval.index import build_index, open_index
from recipe.schema import RetrieverConfig, RunConfig

KILT_SAMPLE = Path("../shared/data/R1-Searcher/corpus_samples/filtered_kilt_sample_100.jsonl")
DEFAULT_CONFIG = "configs/embedded/common.yaml"
KILT_INDEX_DIR = "runs/index/kilt_sample"
MINIWIKI_DEV = ("runs/miniwiki/task/hotpotqa_dev.json", "runs/miniwiki/task/2wiki_dev.json")
KS = (1, 3, 5)
REPEATS = 3
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
MARKERS = re.compile(r"^(BULLET::::-?|Section::::)\s*")


def page_queries(path: Path) -> list[tuple[str, str, str]]:
    """(query kind, query, page title) for each page: its title and its first sentence."""
    queries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        page = json.loads(line)
        title = page["wikipedia_title"]
        queries.append(("title", title, title))
        paragraphs = [MARKERS.sub("", p).strip() for p in page["text"][1:]]
        first = next((p for p in paragraphs if len(p.split()) > 3), None)
        if first is not None:
            queries.append(("first sentence", SENTENCE_END.split(first)[0], title))
    return queries


def recall(retriever, queries, k_max: int) -> tuple[dict[str, dict[int, float]], float]:
    """Recall@k per query kind, and the median seconds of one search over all queries."""
    texts = [q for _, q, _ in queries]
    seconds, hits = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        hits = retriever.search(texts, k_max)
        seconds.append(time.perf_counter() - start)
    table: dict[str, dict[int, float]] = {}
    for kind in dict.fromkeys(kind for kind, _, _ in queries):
        rows = [(h, page) for (kd, _, page), h in zip(queries, hits, strict=True) if kd == kind]
        table[kind] = {
            k: sum(any(x.passage.title == page for x in h[:k]) for h, page in rows) / len(rows)
            for k in KS
        }
    return table, statistics.median(seconds)


def kilt_config(argv: list[str]) -> RetrieverConfig:
    """The config's retriever pointed at the KILT sample; command-line overrides come last."""
    overrides = [
        f"retriever.corpus={KILT_SAMPLE}",
        "retriever.corpus_format=kilt",
        f"retriever.index_dir={KILT_INDEX_DIR}",
    ]
    return parse_cli(RunConfig, [*overrides, *argv], default=DEFAULT_CONFIG).retriever


def supporting_recall(retriever, records) -> tuple[dict[int, float], float]:
    """Mean share of each question's supporting titles in its top-k; median search seconds."""
    golds = [{title for title, _ in r.meta["supporting_facts"]} for r in records]
    seconds, hits = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        hits = retriever.search([r.question for r in records], max(KS))
        seconds.append(time.perf_counter() - start)
    table = {
        k: statistics.mean(
            len(gold & {x.passage.title for x in h[:k]}) / len(gold)
            for gold, h in zip(golds, hits, strict=True)
        )
        for k in KS
    }
    return table, statistics.median(seconds)


def print_table(results: dict) -> None:
    print(f"{'retriever':28} {'queries':15} " + " ".join(f"R@{k:<5}" for k in KS))
    for name, (table, _) in results.items():
        for kind, row in table.items():
            print(f"{name:28} {kind:15} " + " ".join(f"{row[k]:<7.3f}" for k in KS))
    dense_s, bm25_s = (seconds for _, seconds in results.values())
    print(f"search time for all queries, dense / bm25: {dense_s / bm25_s:.1f}x")


def miniwiki_section(argv: list[str]) -> None:
    from data_filtering.sources import load_questions

    cfg = parse_cli(RunConfig, argv, default=DEFAULT_CONFIG).retriever
    if not all(Path(p).is_file() for p in (cfg.corpus, *MINIWIKI_DEV)):
        print(f"\nminiwiki: {cfg.corpus} or its dev questions missing; run `make miniwiki`")
        return
    build_index(cfg)
    dense = open_index(cfg)
    bm25 = BM25Retriever(DocStore(cfg.index_dir), k1=cfg.bm25_k1, b=cfg.bm25_b)
    results: dict[str, tuple[dict, list]] = {}
    for name, retriever in ((f"dense ({Path(cfg.encoder).name})", dense), ("bm25", bm25)):
        tables, seconds = {}, []
        for path in MINIWIKI_DEV:
            tables[Path(path).stem], s = supporting_recall(retriever, load_questions(path))
            seconds.append(s)
        results[name] = (tables, sum(seconds))
    print(f"\nminiwiki dev: {len(dense)} passages, supporting-page recall, median of {REPEATS}")
    print_table(results)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = kilt_config(argv)
    build_index(cfg)
    dense = open_index(cfg)
    bm25_cfg = replace(cfg, kind="bm25")
    bm25 = BM25Retriever(DocStore(cfg.index_dir), k1=bm25_cfg.bm25_k1, b=bm25_cfg.bm25_b)
    queries = page_queries(KILT_SAMPLE)
    results = {
        f"dense ({Path(cfg.encoder).name})": recall(dense, queries, max(KS)),
        "bm25": recall(bm25, queries, max(KS)),
    }
    print(f"KILT sample: {len(dense)} passages, {len(queries)} queries, median of {REPEATS}")
    print_table(results)
    miniwiki_section(argv)


if __name__ == "__main__":
    main()
