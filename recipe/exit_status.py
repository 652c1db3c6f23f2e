"""How every entry point ends on an expected error: one line on stderr, no traceback, and an
exit status that tells the user what to do next.

- 2, a bad input: a config value, a missing or unreadable file, a model that does not load.
  Fix the input and run again.
- 1, the run stopped: training could not go on, an outside service kept failing, SIGTERM. The
  message says why; work already written is kept and a rerun resumes from it.

An error class states its status with an `exit_status` class attribute beside its definition,
so the library's errors need no entry point to know them, and may add an `exit_note` for the
user; a missing file (`FileNotFoundError`) and a config error are 2. Any other exception is a
bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from recipe.config import ConfigError, FieldError

BAD_INPUT = 2
STOPPED = 1


def exit_status(error: BaseException) -> int | None:
    """The status an entry point exits with on `error`; None when it is not an expected one."""
    declared = getattr(type(error), "exit_status", None)
    if declared is not None:
        return declared
    if isinstance(error, FileNotFoundError | ConfigError | FieldError):
        return BAD_INPUT
    return None


def error_line(program: str, error: BaseException) -> str:
    """`program: message` on one line, and the class's `exit_note` (what to do next) when it
    has one; a config error names its keys."""
    message = " ".join(line.strip() for line in str(error).splitlines()) or type(error).__name__
    if isinstance(error, FieldError):
        return f"config error: {', '.join(error.fields)}: {message}"
    if isinstance(error, ConfigError):
        return f"config error: {message}"
    note = getattr(type(error), "exit_note", None)
    return f"{program}: {message}; {note}" if note else f"{program}: {message}"


def run_reporting(program: str, body: Callable[[], int]) -> int:
    """`body()`'s status, or the status of the expected error it raised, reported in one line."""
    try:
        return body()
    except Exception as error:
        status = exit_status(error)
        if status is None:
            raise
        print(error_line(program, error), file=sys.stderr)
        return status
