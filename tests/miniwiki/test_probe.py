"""The forced-search probe steers only the first words of each response, then reports by kind."""

from __future__ import annotations

import json

import pytest

from demo.world import tiny_policy
from miniwiki.probe import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_rollout_starts_with_the_search_intro(small_built_dir, smollm2_tokenizer, tmp_path):
    model_dir = tmp_path / "model"
    tiny_policy(smollm2_tokenizer, seed=3).save_pretrained(model_dir)
    smollm2_tokenizer.save_pretrained(model_dir)
    out = tmp_path / "rollouts.jsonl"
    argv = ["--model", str(model_dir), "--task-dir", str(small_built_dir / "task")]
    report = main([*argv, "--questions", "2", "--samples", "2", "--out", str(out)])
    assert report["chain"]["rollouts"] == 4 and report["comparison"]["rollouts"] == 4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 8
    for row in rows:
        assert row["response"].startswith(" I need to search for")
    # The random model writes the rest itself: the responses do not all continue alike.
    assert len({row["response"] for row in rows}) > 1
