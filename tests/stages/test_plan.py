"""`python -m stages.plan`: the paper config's table and verdict, the exit status, and the
start-up refusal the stage entry points print on GPUs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from recipe.config import load_config
from recipe.schema import RunConfig
from recipe.training.memory_plan import GB
from stages.plan import main, split_flags, startup_refusal

REPO = Path(__file__).resolve().parents[2]
STAGE2 = "configs/paper/stage2.yaml"


def test_the_paper_config_fits_eight_80_gb_gpus(capsys):
    assert main(["--config", STAGE2, "--gpus", "8", "--gpu-memory-gb", "80"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("rollout phase, per GPU:") and "update phase, per GPU:" in out
    for row in ("module", "fp32 master weights + Adam moments", "vLLM KV cache", "gradients"):
        assert f"  {row} " in out
    assert "activations (gradient checkpointing)" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("peak per GPU ") and last.endswith(" GB of 80.0 GB: fits")
    # With the paper's fp16 flat index served from the same GPUs (43 GB over 8) it still fits.
    assert main(["--config", STAGE2, "--colocated-index-gb=43"]) == 0
    assert "  retrieval index " in capsys.readouterr().out


@pytest.mark.parametrize("gpus,memory", [(8, 40), (1, 141)])
def test_the_7b_does_not_fit_40_gb_gpus_nor_one_h200(capsys, gpus, memory):
    assert main(["--config", STAGE2, f"--gpus={gpus}", f"--gpu-memory-gb={memory}"]) == 2
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"GB of {memory:.1f} GB: does not fit; lower " in last
    assert "trainer.micro_batch_tokens" in last


def test_overrides_reach_the_plan(capsys):
    argv = ["--config", STAGE2, "--gpu-memory-gb", "141", "--gpus", "1"]
    assert main([*argv, "model.architecture=qwen2.5-3b"]) == 0
    assert capsys.readouterr().out.strip().endswith("GB of 141.0 GB: fits")
    assert main([*argv, "model.architecture=qwen9"]) == 2
    err = capsys.readouterr().err
    assert "model.architecture 'qwen9' is not one of" in err


def test_shapes_come_from_a_local_config_json(tmp_path, capsys):
    config = {
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    argv = ["--config", STAGE2, f"model.path={tmp_path}", "model.architecture=null"]
    assert main(argv) == 0
    assert "1.54B x 2 B" in capsys.readouterr().out  # Qwen2.5-1.5B's 1,543,714,304
    missing = ["--config", STAGE2, f"model.path={tmp_path / 'none'}", "model.architecture=null"]
    assert main(missing) == 2
    assert "no readable config.json here; set model.architecture" in capsys.readouterr().err


def test_bad_flags_exit_2_with_the_usage(capsys):
    assert main(["--gpus", "zero"]) == 2
    assert "--gpus 'zero' is not a number" in capsys.readouterr().err
    assert main(["--gpus", "0"]) == 2
    with pytest.raises(ValueError, match="needs a value"):
        split_flags(["--gpu-memory-gb"])


def test_a_stage_refuses_a_config_that_cannot_fit_in_one_line(capsys):
    cfg = load_config(RunConfig, STAGE2)
    assert startup_refusal(cfg, gpus=8, gpu_bytes=int(80 * GB)) is None
    line = startup_refusal(cfg, gpus=8, gpu_bytes=int(40 * GB))
    assert line.startswith("memory plan: peak per GPU ") and "\n" not in line
    assert ": does not fit; lower " in line and line.endswith("(python -m stages.plan)")


def test_the_runbook_shows_the_plan_the_command_prints(capsys):
    assert main(["--config", STAGE2, "--gpus", "8", "--gpu-memory-gb", "80"]) == 0
    table = capsys.readouterr().out
    assert table in (REPO / "docs" / "paper.md").read_text()


def test_an_unknown_architecture_is_a_config_error_of_the_stage(capsys):
    from stages.run import main as stage_main

    with pytest.raises(SystemExit) as stop:
        stage_main("configs/embedded/stage1.yaml", ["model.architecture=qwen9"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "model.architecture" in err and "'qwen9' is not a known architecture" in err


def fits_table() -> list[tuple[list[str], str, str]]:
    """(plan arguments, peak, verdict) of each row of the runbook's 'what fits' table; a
    command starting with '...' extends the row above's."""
    rows, previous = [], []
    for line in (REPO / "docs" / "paper.md").read_text().splitlines():
        found = re.match(r"\| [^|]+ \| `([^`]+)` \| ([\d.]+) GB: (fits|does not fit)", line)
        if not found:
            continue
        command, peak, verdict = found.groups()
        args = command.split()
        if args[0] == "...":
            args = previous + args[1:]
        previous = args
        rows.append((args, peak, verdict))
    return rows


def test_the_runbooks_fits_table_is_what_the_plan_says(capsys):
    rows = fits_table()
    assert len(rows) == 7
    for args, peak, verdict in rows:
        status = main(["--config", STAGE2, *args])
        last = capsys.readouterr().out.strip().splitlines()[-1]
        assert last.startswith(f"peak per GPU {peak} GB of "), (args, last)
        assert (status == 0) == (verdict == "fits"), (args, last)
