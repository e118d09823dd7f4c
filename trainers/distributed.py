"""Process groups for training: one process, a torchrun/Ray Train worker, or local spawned workers.

`train()` runs the same code in every case. Inside a launcher (torchrun, Ray Train's TorchTrainer)
the environment names the rank and world (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) and
we join that group. Alone, we start a one-process group on a free local port (Megatron's parallel
state and DeepSpeed both need a process group even for one process) and tear it down afterwards, so
a Python process can train many proxies one after the other. `spawn()` starts N local workers for
CPU tests and small multi-process runs.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainers.errors import ConfigError


@dataclass(frozen=True)
class Parallelism:
    """Model-parallel layout; data parallelism takes the remaining ranks (world / tp)."""

    tp: int = 1  # tensor parallel (Megatron only)
    ep: int = 1  # expert parallel (Megatron only, MoE)

    def __post_init__(self) -> None:
        for name in ("tp", "ep"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"must be a positive integer, got {value!r}", where=f"parallel.{name}")

    def data_parallel(self, world_size: int) -> int:
        if world_size % self.tp:
            raise ConfigError(f"world size {world_size} is not a multiple of tp {self.tp}", where="parallel.tp")
        dp = world_size // self.tp
        if (dp * self.tp) % self.ep:  # Megatron folds EP into TP x DP ranks
            raise ConfigError(f"world size {world_size} is not a multiple of ep {self.ep}", where="parallel.ep")
        return dp


@dataclass(frozen=True)
class World:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str  # "gloo" on CPU, "nccl" on GPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def device_kind() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process_group() -> Iterator[World]:
    """Join the launcher's process group, or create (and afterwards destroy) a one-process one."""
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    created = False
    if not dist.is_initialized():
        rank = int(os.environ.get("RANK", "0"))
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        launched = world_size > 1 or "MASTER_ADDR" in os.environ
        init = "env://" if launched else f"tcp://127.0.0.1:{free_port()}"
        dist.init_process_group(
            backend, init_method=init, rank=rank, world_size=world_size, timeout=datetime.timedelta(minutes=30)
        )
        created = True
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    # DeepSpeed insists on a launcher's variables; a one-process group gets them for its lifetime.
    added = {k: v for k, v in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")) if k not in os.environ}
    if created:
        os.environ.update(added)
    try:
        yield World(dist.get_rank(), dist.get_world_size(), local_rank, device, backend)
    finally:
        if created:
            for key in added:
                os.environ.pop(key, None)
            _destroy_world()


def _destroy_world() -> None:
    """Destroy the default group. DeepSpeed caches group handles of its own; when it has been
    initialised in this process, its `destroy_process_group` drops those too, so a later run here
    does not reuse dead groups."""
    ds_comm = sys.modules.get("deepspeed.comm.comm")
    if ds_comm is not None and getattr(ds_comm, "cdb", None) is not None:
        ds_comm.destroy_process_group()
    else:
        dist.destroy_process_group()


def _spawned(local_rank: int, world_size: int, port: int, threads: int, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world_size),
        LOCAL_WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(threads)
    fn(*args)


def spawn(fn: Callable[..., Any], nprocs: int, *args: Any) -> None:
    """Run `fn(*args)` in `nprocs` fresh local processes joined in one group (torchrun's environment).

    Uses the spawn start method, so the caller's main module must be import-safe (the usual
    `if __name__ == "__main__":` guard); pytest and the `mixsweep` entry point are. CPU threads are
    split between the workers so they do not oversubscribe the cores.
    """
    threads = max(1, torch.get_num_threads() // nprocs)
    mp.start_processes(
        _spawned, args=(nprocs, free_port(), threads, fn, args), nprocs=nprocs, join=True, start_method="spawn"
    )
