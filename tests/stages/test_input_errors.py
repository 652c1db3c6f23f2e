"""Bad settings and unreadable inputs end the entry points with exit 2 and one line naming the
key (and where its value came from) or the file, before any model loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data_filtering.__main__ import main as filter_main
from recipe.ports import free_port
from stages.evaluate import main as evaluate_main
from stages.run import main as stage_main

REPO = Path(__file__).resolve().parents[2]
STAGE1, STAGE2 = "configs/embedded/stage1.yaml", "configs/embedded/stage2.yaml"


def exit_code(run, *args) -> int:
    try:
        return run(*args)
    except SystemExit as e:  # config errors exit from parse_cli
        return e.code


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def offline_retriever() -> list[str]:
    """A service URL nothing answers, unchecked: nothing here may get as far as a search."""
    return [f"retriever.url=http://127.0.0.1:{free_port()}", "retriever.health_check=false"]


def not_utf8_question_file(folder: Path) -> Path:
    path = folder / "questions.json"
    rows = [
        {"_id": "a", "question": "Who wrote Hamlet?", "answer": "William Shakespeare"},
        {"_id": "b", "question": "Who painted Guernica?", "answer": "Pablo Picàsso"},
    ]
    path.write_bytes(
        ("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]").encode(
            "latin-1"
        )
    )
    return path


def good_question_file(folder: Path) -> Path:
    path = folder / "good.jsonl"
    path.write_text(json.dumps({"idx": 0, "question": "Who?", "answer": "Ada"}) + "\n")
    return path


def tiny_model_folder(folder: Path, layers: int = 2) -> Path:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.steps=0", "trainer.steps (from command line): must be >= 1, got 0"),
        ("trainer.ppo_epochs=0", "trainer.ppo_epochs (from command line): must be >= 1"),
        ("rollout.temperature=0", "rollout.temperature (from command line): must be > 0"),
        ("rollout.top_p=0", "rollout.top_p (from command line): must be > 0"),
        ("rollout.top_p=2", "rollout.top_p (from command line): must be <= 1"),
        ("algo.clip_eps=-1", "algo.clip_eps (from command line): must be > 0"),
        ("trainer.lr=inf", "trainer.lr (from command line): must be a finite number, got inf"),
        ("trainer.lr=nan", "trainer.lr (from command line): must be a finite number, got nan"),
        ("trainer.save_every=-1", "trainer.save_every (from command line): must be >= 0"),
        ("trainer.max_grad_norm=nan", "trainer.max_grad_norm (from command line): must be a"),
        ("trainer.prompts_per_step=0", "trainer.prompts_per_step (from command line): must be"),
        ("trainer.micro_batch_tokens=0", "trainer.micro_batch_tokens (from command line): must"),
        ("trainer.keep_checkpoints=0", "trainer.keep_checkpoints (from command line): must be"),
        ("data.eval_questions=-1", "data.eval_questions (from command line): must be >= 0"),
        ("eval.goals.rag=nan", "eval.goals.rag (from command line): must be a finite number"),
    ],
)
def test_a_stage_refuses_nonsense_settings_naming_the_command_line(capsys, override, message):
    assert exit_code(stage_main, STAGE1, [override]) == 2
    assert one_line(capsys).startswith(f"config error: {message}")


def test_a_value_from_a_file_is_blamed_on_that_file(tmp_path, capsys):
    config = tmp_path / "mine.yaml"
    config.write_text(f"extends: {REPO / STAGE1}\nrollout:\n  top_p: 0.0\n")
    assert exit_code(stage_main, str(config), []) == 2
    assert one_line(capsys) == f"config error: rollout.top_p (from {config}): must be > 0, got 0.0"


@pytest.mark.parametrize("value", ["nan", "2", "-1", "0"])
def test_the_filter_refuses_a_correct_at_outside_the_metric(capsys, value):
    assert exit_code(filter_main, [f"filter.correct_at={value}"]) == 2
    assert "filter.correct_at (from command line): must be" in one_line(capsys)


def test_prompts_that_do_not_split_over_the_ranks_are_refused_before_loading(capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert exit_code(stage_main, STAGE1, ["trainer.prompts_per_step=4"]) == 2
    err = one_line(capsys)
    assert err.startswith("config error: trainer.prompts_per_step (from command line): 4 ")
    assert "WORLD_SIZE=3" in err and "multiple of 3" in err


def test_frozen_layers_beyond_the_model_are_refused_before_loading(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"num_hidden_layers": 2}))  # no weights
    args = [f"model.path={tmp_path}", "trainer.frozen_layers=3"]
    assert exit_code(stage_main, STAGE1, args) == 2
    err = one_line(capsys)
    assert "trainer.frozen_layers (from command line)" in err
    assert f"frozen_layers 3 is more than the 2 decoder layers of {tmp_path}" in err


def test_config_errors_come_before_torch_is_imported():
    """The entry points import nothing heavy before the config is read and checked."""
    code = (
        "import sys\n"
        "import data_filtering.__main__, stages.evaluate, stages.run, stages.stage1\n"
        "print(sorted({'torch', 'transformers', 'deepspeed', 'vllm'} & set(sys.modules)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_a_question_file_that_is_not_utf8_is_one_line_everywhere(tmp_path, capsys):
    bad = not_utf8_question_file(tmp_path)
    where = f"{bad}:3: not UTF-8 text (byte 0xe0); save the file as UTF-8"
    stage = [f"data.train_files=[{bad}]", "data.eval_files=[]", f"trainer.runs_dir={tmp_path}"]
    assert stage_main(STAGE1, stage + offline_retriever()) == 2
    assert one_line(capsys) == f"stages (stage1): {where}"
    evaluation = [
        f"eval.datasets={{bad: [{bad}]}}",
        f"eval.out_dir={tmp_path / 'eval'}",
        "eval.training_runs=[]",
    ]
    assert evaluate_main(evaluation + offline_retriever()) == 2
    assert one_line(capsys) == f"evaluate: {where}"
    filtering = [
        f"filter.output_dir={tmp_path / 'filter'}",
        f"filter.sources={{bad: {{path: {bad}}}}}",
        "filter.quotas={}",
    ]
    assert filter_main(filtering) == 2
    assert one_line(capsys) == f"data_filtering: {where}"


def test_a_truncated_model_file_is_named(tmp_path, capsys):
    model = tiny_model_folder(tmp_path / "final")
    capsys.readouterr()  # the save's progress bar
    weights = model / "model.safetensors"
    with open(weights, "r+b") as f:
        f.truncate(weights.stat().st_size // 2)
    args = [
        f"model.path={model}",
        f"data.train_files=[{good_question_file(tmp_path)}]",
        "data.eval_files=[]",
        f"trainer.runs_dir={tmp_path}",
        "trainer.frozen_layers=0",
    ]
    assert stage_main(STAGE2, args + offline_retriever()) == 2
    err = one_line(capsys)
    assert f"{weights} is damaged (truncated: " in err
    assert "copy or export the model folder again" in err
