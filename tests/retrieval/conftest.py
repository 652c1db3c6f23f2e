"""Tiny real corpora and a MiniLM encoder (the loopback servers are in tests/loopback.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from recipe.retrieval.base import Passage
from recipe.schema import RetrieverConfig

FACTS = [
    ("Paris", "Paris is the capital and largest city of France, on the Seine."),
    ("Berlin", "Berlin is the capital of Germany and lies on the river Spree."),
    ("Rome", "Rome is the capital of Italy, founded on seven hills by the Tiber."),
    ("Madrid", "Madrid is the capital of Spain, in the centre of the Iberian peninsula."),
    ("Danube", "The Danube is a river that flows through Vienna, Budapest and Belgrade."),
    ("Mount Everest", "Mount Everest is the highest mountain on Earth, in the Himalayas."),
    ("Photosynthesis", "Photosynthesis lets plants turn sunlight, water and CO2 into sugar."),
    ("Jupiter", "Jupiter is the largest planet of the Solar System, a gas giant."),
    ("Hamlet", "Hamlet is a tragedy written by William Shakespeare around 1600."),
    ("Penicillin", "Penicillin, found by Alexander Fleming in 1928, is an antibiotic."),
    ("Piano", "The piano is a keyboard instrument whose hammers strike strings."),
    ("Tokyo", "Tokyo is the capital of Japan and its most populous city."),
    ("Amazon", "The Amazon rainforest covers much of the Amazon basin in South America."),
    ("Chess", "Chess is a board game for two players on a board of 64 squares."),
    ("Volcano", "A volcano is a rupture in the crust where lava and ash escape."),
    ("Honey bee", "The honey bee collects nectar and makes honey in a wax hive."),
]


def write_flashrag(path: Path, facts=FACTS) -> Path:
    with open(path, "w") as f:
        for i, (title, text) in enumerate(facts):
            f.write(json.dumps({"id": f"d{i}", "contents": f"{title}\n{text}"}) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    return write_flashrag(tmp_path_factory.mktemp("corpus") / "corpus.jsonl")


@pytest.fixture(scope="session")
def dense_cfg(tiny_corpus, tmp_path_factory, minilm_dir) -> RetrieverConfig:
    return RetrieverConfig(
        kind="dense",
        corpus=str(tiny_corpus),
        corpus_format="auto",
        encoder=str(minilm_dir),
        pooling="mean",
        batch_size=4,
        index_dir=str(tmp_path_factory.mktemp("index") / "dense"),
        faiss_gpu=False,
    )


@pytest.fixture(scope="session")
def minilm_encoder(dense_cfg):
    from recipe.retrieval.encoders import DenseEncoder

    return DenseEncoder(dense_cfg)


@pytest.fixture(scope="session")
def dense_retriever(dense_cfg, minilm_encoder):
    from recipe.retrieval.index import build_index, open_index

    build_index(dense_cfg, encoder=minilm_encoder, progress=False)
    return open_index(dense_cfg, encoder=minilm_encoder)


@pytest.fixture
def bm25_cfg(tiny_corpus, tmp_path) -> RetrieverConfig:
    return replace(
        RetrieverConfig(), kind="bm25", corpus=str(tiny_corpus), index_dir=str(tmp_path / "bm25")
    )


def passages_of(facts=FACTS) -> list[Passage]:
    return [Passage(f"d{i}", t, x) for i, (t, x) in enumerate(facts)]
