"""A full disk named as such: one line saying where, instead of the writer's own error; any
other OS error of a write (a read-only or vanished file system, no permission) is named too.

Python's writes raise `OSError(ENOSPC)` and safetensors says "No space left on device", but
torch's zip writer (`torch.save`, so DeepSpeed's state and `trainer_state.pt`) reports only
"unexpected pos ..." with no errno. So a failed write also counts as a full disk when the file
system it wrote to has less than `NEARLY_FULL` left at the moment of the error: the check runs
inside the writer's `with` block, before the half-written files are removed and their space
comes back.
"""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from recipe.training.errors import TrainingError

NEARLY_FULL = 64 << 20
MARKERS = ("No space left on device", "StorageFull", "Disk quota exceeded")


class WriteFailed(TrainingError):
    """A write failed for an OS reason (the stages exit 1 on it; a rerun resumes)."""


class DiskFull(WriteFailed):
    """A write failed for want of space."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def is_disk_full(exc: BaseException, path: Path, by_free_space: bool) -> bool:
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if any(marker in str(e) for marker in MARKERS):
            return True
    if not by_free_space:
        return False
    free = free_bytes(path)
    return free is not None and free < NEARLY_FULL


def os_error(exc: BaseException) -> OSError | None:
    return next((e for e in _chain(exc) if isinstance(e, OSError) and e.errno), None)


@contextmanager
def naming_a_full_disk(path: str | Path, what: str, writes_only: bool = True) -> Iterator[None]:
    """Re-raises an error under it as `DiskFull` when the disk of `path` is full, and, where the
    block only writes, any other OS error as `WriteFailed`. Where it does more
    (`writes_only=False`), only an error that says the disk is full is renamed."""
    path = Path(path)
    try:
        yield
    except TrainingError:
        raise
    except Exception as e:
        if is_disk_full(e, path, by_free_space=writes_only):
            free = free_bytes(path)
            left = f", {free >> 10} KiB left" if free is not None else ""
            raise DiskFull(
                f"disk full: no space left on the device holding {path} while writing {what}{left}"
            ) from e
        cause = os_error(e) if writes_only else None
        if cause is None:
            raise
        where = f" ({cause.filename})" if cause.filename else ""
        raise WriteFailed(f"could not write {what}: {cause.strerror}{where}") from e
