"""The error a training run stops with (the stage entry points exit 1 on it, one line)."""

from recipe.exit_status import STOPPED


class TrainingError(RuntimeError):
    """The run cannot go on (non-finite updates in a row, a run folder in the way)."""

    exit_status = STOPPED
