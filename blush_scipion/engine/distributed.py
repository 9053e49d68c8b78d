"""Several processes, one refinement: torch.distributed as RELION uses MPI.

Launched by torchrun (`torchrun --nproc-per-node N --no-python blush refine3d ...`) or by SLURM's
srun with MASTER_ADDR/MASTER_PORT set, every rank runs the same driver: each takes its share of
each half set's particles (and reads only those images), the M-step's sums are all-reduced, so
every rank holds the same references and state, and rank 0 alone writes files and logs. One
process without those variables is a world of one, and nothing changes. Each rank takes its own
GPU: `--device cuda` means cuda:LOCAL_RANK.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def leader(self) -> bool:
        """The rank that writes files and logs."""
        return self.rank == 0

    def share(self, rows: np.ndarray) -> np.ndarray:
        """This rank's rows of `rows` (every size-th, from its rank: balanced within each half set)."""
        return rows[self.rank :: self.size]

    def sum(self, *tensors: torch.Tensor) -> None:
        """All-reduce (sum) in place over the ranks."""
        if self.size > 1:
            for t in tensors:
                dist.all_reduce(t)

    def assemble(self, full: torch.Tensor, mine: torch.Tensor) -> torch.Tensor:
        """Per-particle values (N, ...) where this rank filled its rows (`mine`, (N,) bool): every
        row, as each rank computed it, on every rank."""
        if self.size == 1:
            return full
        shape = (-1,) + (1,) * (full.dim() - 1)
        out = torch.where(mine.reshape(shape), full, torch.zeros_like(full)).to(torch.float64)
        dist.all_reduce(out)
        return out.to(full.dtype)

    def gather(self, value):
        """Every rank's `value` (any picklable object), in rank order, on every rank."""
        if self.size == 1:
            return [value]
        values: list = [None] * self.size
        dist.all_gather_object(values, value)
        return values

    def agree(self, error: str | None) -> None:
        """Raise on every rank if any rank met `error` (a rank that raised alone would leave the
        others waiting in the next all-reduce)."""
        first = next((e for e in self.gather(error) if e), None)
        if first:
            raise ValueError(first)

    def voice(self, log, *, progress: bool):
        """(log, progress) for this rank: the leader's as given, the others' silent."""
        return (log, progress) if self.leader else ((lambda *args, **kwargs: None), False)


@contextmanager
def on_leader(world: World, context: AbstractContextManager) -> Iterator[None]:
    """Enter `context` (e.g. holding the run folder) on the leader only; a ValueError there is
    raised on every rank, so that none is left waiting."""
    with ExitStack() as stack:
        error = None
        if world.leader:
            try:
                stack.enter_context(context)
            except ValueError as e:
                error = str(e)
        world.agree(error)
        yield


def _from_slurm() -> None:
    """srun sets SLURM_PROCID/NTASKS/LOCALID; torch.distributed reads RANK/WORLD_SIZE/LOCAL_RANK."""
    if "RANK" not in os.environ and "SLURM_PROCID" in os.environ and "MASTER_ADDR" in os.environ:
        os.environ["RANK"] = os.environ["SLURM_PROCID"]
        os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
        os.environ["LOCAL_RANK"] = os.environ.get("SLURM_LOCALID", "0")
        os.environ.setdefault("MASTER_PORT", "29500")


def start(device: str) -> tuple[World, str]:
    """Join the process group the launcher set up (none: a world of one). Returns the world and
    this rank's device (cuda -> cuda:LOCAL_RANK; NCCL between GPUs, gloo on CPUs)."""
    _from_slurm()
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World(), device
    if device.startswith("cuda"):
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return World(dist.get_rank(), dist.get_world_size()), device


def stop() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
