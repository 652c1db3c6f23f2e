"""benchmarks.machine_limit: model FLOPs agree with torch's FLOP counter on a real tiny model,
and the quick measurement runs end to end."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import LlamaConfig, LlamaForCausalLM

from benchmarks.machine_limit import (
    Dims,
    forward_flops,
    generation_flops,
    main,
    share_line,
    update_flops,
)


@pytest.fixture(scope="module")
def tiny():
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=300,
        tie_word_embeddings=False,
        # eager: the FLOP counter sees its attention products (CPU SDPA hides them).
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), Dims.of(config)


def _counted(model, tokens: int, backward: bool = False) -> int:
    ids = torch.randint(0, model.config.vocab_size, (1, tokens))
    with FlopCounterMode(display=False) as counter:
        logits = model(ids).logits
        if backward:
            logits.float().square().mean().backward()
    return counter.get_total_flops()


def test_dims_from_a_hugging_face_config(tiny):
    _, dims = tiny
    assert dims == Dims(64, 160, 3, 4, 2, 16, 300)
    assert dims.shapes()[-1] == (64, 300)


def test_forward_flops_match_the_flop_counter(tiny):
    model, dims = tiny
    with torch.no_grad():
        counted = _counted(model, 24)
    ours = forward_flops(dims, [24], head_tokens=24, causal=False)
    assert ours["layer"] * dims.layers + ours["head"] == counted


def test_training_flops_are_three_forwards_when_everything_trains(tiny):
    model, dims = tiny
    f = forward_flops(dims, [24], head_tokens=24, causal=False)
    forward = f["layer"] * dims.layers + f["head"]
    full = update_flops(dims, [24], 24, frozen_layers=0, head_trainable=True)
    causal = forward_flops(dims, [24], head_tokens=24)
    assert full == 3 * (causal["layer"] * dims.layers + causal["head"])
    counted = _counted(model, 24, backward=True)
    assert counted == 3 * forward  # full-square attention, as the counter counts it


def test_frozen_layers_and_head_need_less_backward():
    dims = Dims(64, 160, 4, 4, 2, 16, 300)
    f = forward_flops(dims, [10, 6], head_tokens=5)
    forward = 4 * f["layer"] + f["head"]
    assert update_flops(dims, [10, 6], 5, frozen_layers=4) == forward + f["head"]
    assert update_flops(dims, [10, 6], 5, frozen_layers=1) == forward + 6 * f["layer"] + f["head"]
    assert generation_flops(dims, [10, 6], 5) == forward


def test_shared_prefix_runs_once_and_causal_attention_counts_half():
    dims = Dims(8, 16, 1, 2, 2, 4, 10)
    linear = 2 * sum(i * o for i, o in dims.layer_linears())
    attention = 2 * 2 * dims.heads * dims.head_dim
    f = forward_flops(dims, [5, 5, 5], head_tokens=0, shared_prefix=3)
    assert f["layer"] == linear * (15 - 6) + attention * 3 * 15
    assert f["head"] == 0


def test_share_line_reports_each_limit_and_the_faster_one():
    line = share_line("update", 0.5e12, {"bf16": 2e12, "fp32": 0.25e12})
    assert line == (
        "update: 0.500 model TFLOP/s (25.0% of bf16, 200.0% of fp32 matmul limit; "
        "25.0% of the machine's limit, bf16)"
    )
    # Without native bf16 the machine's limit is fp32 (0.098 vs 0.016 measured on AVX2).
    line = share_line("update", 0.049e12, {"bf16": 0.016e12, "fp32": 0.098e12})
    assert line.endswith("; 50.0% of the machine's limit, fp32)")


def test_a_config_whose_model_is_not_built_yet_says_what_to_do(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model:\n  path: {tmp_path / 'base'}\n")
    with pytest.raises(SystemExit, match=r"build it first \(`make base`"):
        main(["--config", str(config)])


def test_quick_measurement(capsys):
    limits = main(["--quick"])
    assert set(limits) == {"bf16", "fp32"} and all(v > 0 for v in limits.values())
    assert "matmul limit at the model's shapes, 64 rows" in capsys.readouterr().out
