"""The paper setting's index options: fp16 flat, SQ8, PQ and IVF built by the index builder,
their recall against exact search, and GPU placement (refused clearly without faiss-gpu)."""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np
import pytest

from benchmarks.index_options import bytes_per_vector, recall_at, scaled_nlist
from recipe.retrieval.base import RetrievalInputError
from recipe.retrieval.dense import NoGpuForIndex, num_gpus, set_search_parameters
from recipe.retrieval.index import build_faiss_index, build_index, open_index
from recipe.retrieval.server import main as server_main

DIM, COUNT, QUERIES, K = 64, 4000, 200, 10


@pytest.fixture(scope="module")
def clustered():
    """Unit vectors around 40 overlapping centres (real embeddings cluster too), and queries
    drawn the same way: a query's neighbours spread over a few IVF lists."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, DIM))

    def sample(n: int) -> np.ndarray:
        x = centres[rng.integers(0, len(centres), n)] + 2.0 * rng.normal(size=(n, DIM))
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    vectors, queries = sample(COUNT), sample(QUERIES)
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    return vectors, queries, exact.search(queries, K)[1]


def _recall(factory: str, clustered, nprobe: int = 1, train_size: int = 200_000) -> float:
    vectors, queries, exact = clustered
    index = build_faiss_index(vectors, factory, train_size)
    assert index.ntotal == COUNT
    cfg = replace(_cfg(), faiss_factory=factory, faiss_nprobe=nprobe)
    set_search_parameters(index, cfg)
    return recall_at(index.search(queries, K)[1], exact, K)


def _cfg():
    from recipe.schema import RetrieverConfig

    return RetrieverConfig()


def test_flat_is_exact_and_fp16_nearly_so(clustered):
    assert _recall("Flat", clustered) == 1.0
    assert _recall("SQfp16", clustered) >= 0.99


@pytest.mark.slow
def test_compressed_options_lose_recall_in_order(clustered):
    sq8, pq = _recall("SQ8", clustered), _recall("PQ8", clustered)
    assert 0.9 <= sq8 < 1.0
    assert pq < sq8  # 8 bytes a vector against 64
    assert pq > 0.1  # far above chance (10 of 4000)


def test_ivf_recall_grows_with_nprobe_and_is_exact_when_every_list_is_probed(clustered):
    one, four, every = (_recall("IVF32,Flat", clustered, n) for n in (1, 4, 32))
    assert one < four < every == 1.0


def test_ivf_trains_on_the_sample_size_it_is_given(clustered):
    # 32 lists trained on 64 vectors still build and search (faiss warns, the builder goes on).
    assert _recall("IVF32,Flat", clustered, nprobe=32, train_size=64) == 1.0


def test_bytes_per_vector_and_the_scaled_list_count():
    assert bytes_per_vector("Flat", 1024) == 4096
    assert bytes_per_vector("SQfp16", 1024) == 2048
    assert bytes_per_vector("SQ8", 1024) == 1024
    assert bytes_per_vector("PQ64", 1024) == 64
    assert bytes_per_vector("IVF65536,PQ64", 1024) == 64 + 8  # the code and its row id
    assert scaled_nlist(2375) == 32  # the KILT sample: 2375 / 39 = 60.9
    assert scaled_nlist(21_000_000) == 16384  # 4 sqrt(N) = 18330


def test_an_sqfp16_index_builds_and_finds_the_right_passages(dense_cfg, minilm_encoder, tmp_path):
    cfg = replace(dense_cfg, faiss_factory="SQfp16", index_dir=str(tmp_path / "fp16"))
    build_index(cfg, encoder=minilm_encoder, progress=False)
    retriever = open_index(cfg, encoder=minilm_encoder)
    hits = retriever.search(["capital of Japan", "who wrote Hamlet", "biggest planet"], 2)
    assert [h[0].passage.title for h in hits] == ["Tokyo", "Hamlet", "Jupiter"]
    assert isinstance(retriever.index, faiss.IndexScalarQuantizer)


@pytest.mark.skipif(num_gpus() > 0, reason="faiss sees a GPU here")
def test_requiring_a_gpu_without_faiss_gpu_fails_clearly(dense_cfg, dense_retriever):
    cfg = replace(dense_cfg, faiss_gpu=True, faiss_require_gpu=True)
    with pytest.raises(NoGpuForIndex, match="faiss_require_gpu: faiss sees no GPU"):
        open_index(cfg)
    assert issubclass(NoGpuForIndex, RetrievalInputError)  # the entry points exit 2 on it
    # Without the requirement the same index is searched on the CPU.
    cpu = open_index(replace(cfg, faiss_require_gpu=False), encoder=dense_retriever.encoder)
    assert cpu.search(["capital of Japan"], 1)[0][0].passage.title == "Tokyo"


@pytest.mark.skipif(num_gpus() > 0, reason="faiss sees a GPU here")
def test_the_server_exits_2_with_one_line_when_a_gpu_is_required(
    dense_cfg, dense_retriever, capsys
):
    status = server_main(
        [
            f"retriever.corpus={dense_cfg.corpus}",
            f"retriever.encoder={dense_cfg.encoder}",
            f"retriever.index_dir={dense_cfg.index_dir}",
            "retriever.faiss_require_gpu=true",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith("server: retriever.faiss_require_gpu: faiss sees no GPU")


@pytest.mark.gpu
@pytest.mark.parametrize("shard", [True, False])
def test_gpu_placement_matches_cpu_search(dense_cfg, dense_retriever, shard):
    """faiss-gpu: the flat index sharded (or replicated) over the GPUs in fp16 returns the
    CPU's top passages."""
    if num_gpus() == 0:
        pytest.fail("faiss sees no GPU: install faiss-gpu in place of faiss-cpu")
    cfg = replace(dense_cfg, faiss_gpu=True, faiss_gpu_shard=shard, faiss_require_gpu=True)
    gpu = open_index(cfg, encoder=dense_retriever.encoder)
    assert "Gpu" in type(gpu.index).__name__ or "Shards" in type(gpu.index).__name__
    queries = ["capital of Japan", "who wrote Hamlet", "biggest planet", "a river in Vienna"]
    want = [[h.passage.title for h in hs] for hs in dense_retriever.search(queries, 3)]
    assert [[h.passage.title for h in hs] for hs in gpu.search(queries, 3)] == want
