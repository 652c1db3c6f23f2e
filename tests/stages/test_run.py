"""The stage entry point: a retrieval service that is down ends the stage with one line."""

from __future__ import annotations

import json

from recipe.ports import free_port
from stages.run import main


def test_a_dead_retrieval_service_exits_1_with_one_line_before_loading_the_model(tmp_path, capsys):
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps({"idx": 0, "question": "Who?", "answer": "Ada"}) + "\n")
    url = f"http://127.0.0.1:{free_port()}"
    status = main(
        "configs/embedded/stage1.yaml",
        [
            f"data.train_files=[{questions}]",
            "data.eval_files=[]",
            f"retriever.url={url}",
            "retriever.max_retries=0",
            f"model.path={tmp_path / 'no-model-here'}",  # never reached: the service is checked first
            f"trainer.runs_dir={tmp_path}",
        ],
    )
    err = capsys.readouterr().err.strip()
    assert status == 1
    assert len(err.splitlines()) == 1, err
    assert f"retrieval service {url} failed 1 attempts" in err and "rerun to resume" in err
