"""benchmarks/gpu_check.py in its tiny mode: real trainer steps on the CPU with gloo, with and
without gradient checkpointing, each printed beside the memory plan's numbers."""

from __future__ import annotations

import re

import pytest

from benchmarks.gpu_check import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow
def test_tiny_mode_runs_both_variants_and_prints_plan_and_phases(capsys, smollm2_tokenizer):
    argv = ["--tiny", "--steps", "1", "--prompts", "2", "--samples", "2", "--max-response", "32"]
    assert main([*argv, "--micro-batch-tokens", "256"], smollm2_tokenizer) == 0
    out = capsys.readouterr().out
    heads = re.findall(r"gradient checkpointing (on|off): plan update phase ([\d.]+) GB", out)
    assert [h[0] for h in heads] == ["off", "on"]
    assert all(float(h[1]) > 0 for h in heads)
    assert out.count("torch.cuda.max_memory_allocated n/a (CPU)") == 2
    steps = re.findall(r"  step 1: rollout [\d.]+ s, .*update [\d.]+ s, sync [\d.]+ s", out)
    assert len(steps) == 2
