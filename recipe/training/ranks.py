"""The data-parallel ranks of a run: which prompts each rolls out, and the few collectives the
trainer needs (gather the step's trajectories, sum gradients and statistics, agree on counts).

Every rank draws the same questions from the same seeded sampler; rank r rolls out the r-th
contiguous block of them, so each question's whole group of samples lives on one rank. The
step's trajectories are then gathered everywhere: every rank collates the same full batch and
computes the same advantages over it (group baselines and whitening see every sample of the
step, exactly as on one rank), and each trains on its own rows. With one rank every collective
is the identity, so the single-process path runs no communication at all.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def block(self, n: int) -> range:
        """This rank's contiguous share of `n` items; `n` must divide evenly."""
        return self.block_of(self.rank, n)

    def block_of(self, rank: int, n: int) -> range:
        """Rank `rank`'s contiguous share of `n` items."""
        if n % self.world:
            raise ValueError(f"{n} items do not split evenly over {self.world} ranks")
        size = n // self.world
        return range(rank * size, (rank + 1) * size)

    def owns(self, index: int) -> bool:
        """Whether the `index`-th unit of round-robin work (an engine call, a question) is this
        rank's: unit g goes to rank g mod world, so the shares differ by at most one."""
        return index % self.world == self.rank

    def share(self, items: Sequence) -> list:
        """This rank's items when item i is rank i mod world's."""
        return list(items[self.rank :: self.world])

    def gather_shares(self, mine: Sequence, n: int) -> list:
        """Every rank's `share` results put back in item order (n items in all), everywhere."""
        if self.world == 1:
            return list(mine)
        out: list = [None] * n
        for rank, part in enumerate(self.gather(list(mine))):
            out[rank :: self.world] = part
        return out

    def gather(self, obj) -> list:
        """`obj` from every rank, in rank order (pickled; trajectories are small)."""
        if self.world == 1:
            return [obj]
        out: list = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks."""
        if self.world > 1:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor

    def sum_floats(self, values: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return values
        keys = sorted(values)
        numbers = [values[k] for k in keys]
        summed = self.sum_(torch.tensor(numbers, dtype=torch.float64, device=_device()))
        return dict(zip(keys, summed.tolist(), strict=True))

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum each parameter's gradient over ranks, as one flat buffer (one collective)."""
        grads = [p.grad for p in params if p.grad is not None]
        if self.world == 1 or not grads:
            return
        flat = self.sum_(torch.cat([g.reshape(-1) for g in grads]))
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def max_int(self, value: int) -> int:
        """The largest `value` over ranks."""
        if self.world == 1:
            return value
        out = torch.tensor([value], dtype=torch.int64, device=_device())
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.MAX)
        return int(out.item())

    def any(self, flag: bool) -> bool:
        """Whether `flag` is set on some rank (every rank gets the same answer)."""
        if self.world == 1:
            return flag
        return bool(self.sum_(torch.tensor([float(flag)], device=_device())).item() > 0)

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()


def _device() -> torch.device:
    """Where a collective's scalars live: NCCL reduces CUDA tensors only, gloo CPU ones."""
    if torch.distributed.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


# Work sharded by items waits at a collective for the slowest rank: a round of filter rollouts
# or a model's evaluation can leave one rank minutes behind the others, past torch's default
# 30-minute collective timeout on long 7B runs, which would kill a healthy job.
SHARDED_WORK_TIMEOUT = timedelta(hours=6)


def local_rank() -> int:
    """This process's rank on its node (the launchers set LOCAL_RANK; 0 without one)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def rank_device() -> torch.device:
    """The device a rank's model lives on: its own GPU (cuda:LOCAL_RANK), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


_JOINED: list[bool] = []  # whether join_launched_ranks opened the process group


def join_launched_ranks() -> Ranks:
    """The ranks a launcher started (`deepspeed`, `torchrun`: WORLD_SIZE > 1 in the
    environment), joined into one process group with a long collective timeout; one rank when
    the process was started alone."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(rank_device())  # object collectives stage on this device
        torch.distributed.init_process_group(backend, timeout=SHARDED_WORK_TIMEOUT)
        _JOINED.append(True)
    return current_ranks()


def leave_ranks() -> None:
    """Close the process group `join_launched_ranks` opened (a group someone else opened, such
    as the trainer's, is theirs to close)."""
    if _JOINED and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _JOINED.clear()


@contextlib.contextmanager
def launched_ranks() -> Iterator[Ranks]:
    """The launched ranks (`join_launched_ranks`) for a `with` block, left again at its end."""
    ranks = join_launched_ranks()
    try:
        yield ranks
    finally:
        leave_ranks()


def current_ranks() -> Ranks:
    """The process group's ranks (one rank when none is initialised)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return Ranks(torch.distributed.get_rank(), torch.distributed.get_world_size())
    return Ranks()


def threads_per_rank() -> int:
    """CPU threads for this rank: the machine's cores shared by the ranks on this node
    (two ranks with two threads each on two cores spin against each other)."""
    local = os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("LOCAL_SIZE") or "1"
    return max(1, (os.cpu_count() or 1) // max(1, int(local)))
