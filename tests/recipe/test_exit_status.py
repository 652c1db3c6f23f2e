"""Every entry point ends the same way on an expected error: one line, status 2 for a bad
input, 1 for a run that stopped; anything else keeps its traceback."""

from __future__ import annotations

import pytest

from data_filtering.identity import ManifestError
from data_filtering.sources import SourceError
from recipe.config import ConfigError, FieldError
from recipe.evaluation.judge import JudgeError
from recipe.evaluation.runner import EvaluationError
from recipe.exit_status import BAD_INPUT, STOPPED, exit_status, run_reporting
from recipe.policy import PolicyLoadError
from recipe.retrieval.base import RetrievalInputError
from recipe.retrieval.client import RetrievalRequestError, RetrievalUnavailable
from recipe.retrieval.manifest import IndexMissing
from recipe.run_lock import FolderBusy
from recipe.training.disk_full import DiskFull
from recipe.training.errors import TrainingError
from recipe.training.run_settings import ResumeRefused


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (FileNotFoundError("questions.jsonl"), BAD_INPUT),
        (PolicyLoadError("model.path x: no config.json"), BAD_INPUT),
        (ConfigError("trainer.lr (from a.yaml): must be > 0"), BAD_INPUT),
        (SourceError("a.json: not a list"), BAD_INPUT),
        (RetrievalInputError("no corpus"), BAD_INPUT),
        (IndexMissing("no index at x"), BAD_INPUT),
        (EvaluationError("eval.methods: unknown method 'oracle'"), BAD_INPUT),
        (FolderBusy("runs/stage1 is held by another launch"), BAD_INPUT),
        (ResumeRefused("trainer.lr differs from the run's"), BAD_INPUT),
        (ManifestError("manifest.json is not a filter manifest"), BAD_INPUT),
        (DiskFull("no space left writing checkpoints"), STOPPED),
        (TrainingError("3 non-finite updates in a row"), STOPPED),
        (RetrievalUnavailable("retrieval service u failed 3 attempts"), STOPPED),
        (RetrievalRequestError("refused with HTTP 422", 422), STOPPED),
        (JudgeError("judge endpoint e failed 2 attempts"), STOPPED),
        (KeyError("a bug"), None),
    ],
)
def test_each_error_has_its_status(error, status):
    assert exit_status(error) == status


def _raising(error: BaseException):
    def body() -> int:
        raise error

    return body


def test_the_error_is_one_line_with_the_program_and_what_to_do(capsys):
    status = run_reporting("evaluate", _raising(RetrievalUnavailable("service u\n  is down")))
    (line,) = capsys.readouterr().err.splitlines()
    assert status == STOPPED
    assert line == (
        "evaluate: service u is down; the search failed; rerun to resume "
        "(what was written so far is kept)"
    )
    assert run_reporting("stages (stage1)", _raising(TrainingError("no more steps"))) == STOPPED
    assert capsys.readouterr().err == "stages (stage1): no more steps\n"


def test_a_config_error_names_its_keys(capsys):
    error = FieldError(("trainer.steps", "trainer.save_every"), "save_every is above steps")
    assert run_reporting("stages (stage1)", _raising(error)) == BAD_INPUT
    assert capsys.readouterr().err == (
        "config error: trainer.steps, trainer.save_every: save_every is above steps\n"
    )


def test_success_passes_through_and_a_bug_keeps_its_traceback():
    assert run_reporting("x", lambda: 0) == 0
    with pytest.raises(KeyError):
        run_reporting("x", _raising(KeyError("a bug")))
