"""Retrieval service vs in-process search: throughput, latency, and exactness.

`python -m benchmarks.retrieval_service [--config FILE] [retriever.key=value ...]`

One dense index (the KILT sample, `make index-kilt-sample`; built here if missing), one query
set (page titles and first sentences). Measured side by side in one run, interleaved, medians of REPEATS rounds:
- in process: `retriever.search` at batch 1 (one call per query) and batch 64;
- service (`python -m recipe.retrieval.server` in its own process on 127.0.0.1) through
  `HttpRetriever`: batch 1, batch 64, and batch 1 from CONCURRENT client threads (which the
  service's micro-batcher merges).
Every answer is checked against exact search: brute-force inner products over the stored
embeddings. The goal is a service keeping >= 80% of in-process throughput at batch 64.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np

from benchmarks.retrieval_recall import DEFAULT_CONFIG, KILT_SAMPLE, kilt_config, page_queries
from recipe.ports import free_port
from recipe.retrieval.client import HttpRetriever
from recipe.retrieval.index import EMBEDDINGS_FILE, build_index, open_index
from recipe.retrieval.manifest import read_manifest

REPEATS = 5
N_QUERIES = 128
BATCH = 64
CONCURRENT = 8
TOP_K = 5
SERVER_START_TIMEOUT_S = 300.0


def start_service(argv: list[str], port: int) -> tuple[subprocess.Popen, str]:
    kilt = [f"retriever.corpus={KILT_SAMPLE}", "retriever.corpus_format=kilt"]
    command = [sys.executable, "-m", "recipe.retrieval.server", "--config", DEFAULT_CONFIG]
    command += [*kilt, "retriever.index_dir=runs/index/kilt_sample", *argv]
    command += [f"retriever.port={port}", "retriever.host=127.0.0.1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited with {process.returncode}: {command}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the service did not come up")


def exact_top_k(cfg, encoder, queries: list[str], k: int) -> np.ndarray:
    """Brute force: every stored embedding against every query."""
    manifest = read_manifest(cfg.index_dir)
    shape = (manifest["count"], manifest["dim"])
    vectors = np.memmap(Path(cfg.index_dir) / EMBEDDINGS_FILE, np.float32, "r", shape=shape)
    scores = encoder.encode_queries(queries) @ np.asarray(vectors).T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def run_batches(search, queries: list[str], batch: int) -> list:
    hits = []
    for start in range(0, len(queries), batch):
        hits.extend(search(queries[start : start + batch], TOP_K))
    return hits


def run_concurrent(search, queries: list[str]) -> list:
    with ThreadPoolExecutor(CONCURRENT) as pool:
        return [h[0] for h in pool.map(lambda q: search([q], TOP_K), queries)]


def measure_interleaved(runs: dict) -> dict[str, tuple[float, list]]:
    """Median seconds per route over REPEATS rounds, each round running every route once.

    Interleaving puts every route under the same background load (this machine is shared);
    one warm-up round comes first. Returns {route: (median seconds, last result)}.
    """
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, list] = {name: fn() for name, fn in runs.items()}
    for _ in range(REPEATS):
        for name, fn in runs.items():
            start = time.perf_counter()
            results[name] = fn()
            seconds[name].append(time.perf_counter() - start)
    return {name: (statistics.median(seconds[name]), results[name]) for name in runs}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = replace(kilt_config(argv), kind="dense", faiss_factory="Flat")
    build_index(cfg)
    local = open_index(cfg)
    queries = [q for _, q, _ in page_queries(KILT_SAMPLE)][:N_QUERIES]
    process, url = start_service([a for a in argv if a.startswith("retriever.")], free_port())
    try:
        remote = HttpRetriever(
            url,
            timeout_s=cfg.timeout_s,
            max_retries=cfg.max_retries,
            backoff_s=cfg.retry_backoff_s,
            max_queries_per_request=cfg.max_queries_per_request,
        )
        runs = {
            "in-process batch 1": lambda: run_batches(local.search, queries, 1),
            "service batch 1": lambda: run_batches(remote.search, queries, 1),
            f"in-process batch {BATCH}": lambda: run_batches(local.search, queries, BATCH),
            f"service batch {BATCH}": lambda: run_batches(remote.search, queries, BATCH),
            f"service batch 1 x {CONCURRENT} clients": lambda: run_concurrent(
                remote.search, queries
            ),
        }
        timings = measure_interleaved(runs)
    finally:
        process.terminate()
        process.wait(timeout=30)

    exact = exact_top_k(cfg, local.encoder, queries, TOP_K)
    exact_ids = [[local.passages[int(r)].id for r in row] for row in exact]
    print(f"{len(queries)} queries, top-{TOP_K}, {len(local)} passages, median of {REPEATS}")
    print(f"{'route':34} {'QPS':>8} {'ms/request':>11}  identical to exact search")
    for name, (seconds, hits) in timings.items():
        batch = BATCH if f"batch {BATCH}" in name else 1
        same = [[h.passage.id for h in hs] for hs in hits] == exact_ids
        print(
            f"{name:34} {len(queries) / seconds:8.1f} "
            f"{1e3 * seconds / (len(queries) / batch):11.2f}  {same}"
        )
        assert same, f"{name}: results differ from exact search"
    for batch in (1, BATCH):
        ratio = timings[f"in-process batch {batch}"][0] / timings[f"service batch {batch}"][0]
        print(f"service / in-process throughput at batch {batch}: {ratio:.2f}")
    concurrent = timings[f"service batch 1 x {CONCURRENT} clients"][0]
    print(
        f"service with {CONCURRENT} concurrent batch-1 clients / in-process batch 1: "
        f"{timings['in-process batch 1'][0] / concurrent:.2f}"
    )


if __name__ == "__main__":
    main()
