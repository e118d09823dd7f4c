"""The one narrow protocol every training backend implements, and the registry that picks one.

A `Backend` answers two questions: can it run this proxy here (`unsupported` returns the reason it
cannot, or None), and build an `Engine` for it. The `Engine` is what the training loop drives: one
optimizer step over a list of micro-batches, per-token losses for evaluation, and save/load of its
own checkpoint format. Everything else (data order, LR schedule, evaluation, divergence checks,
the result) lives once in `trainers.loop` and is shared by all backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import torch

from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.distributed import Parallelism, World
from trainers.errors import BackendUnavailable, ConfigError


@dataclass(frozen=True)
class StepStats:
    loss: float  # LM loss averaged over the global batch (all data-parallel ranks)
    aux_loss: float  # MoE balancing loss, as added to the objective (0 for dense models)
    grad_norm: float  # before clipping


class Engine(Protocol):
    """A built model + optimizer on this rank."""

    dp_rank: int  # this rank's data-parallel index: which share of each global batch it reads
    dp_size: int
    dp_group: torch.distributed.ProcessGroup | None  # None: the whole world

    def train_step(self, micro_batches: Sequence[torch.Tensor], lr: float) -> StepStats:
        """Forward/backward over this rank's micro-batches ([b, seq + 1] token ids each), gradient
        sync, clipping, one optimizer step at `lr`."""
        ...

    def token_losses(self, tokens: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy in nats, [b, seq], for windows [b, seq + 1]; no gradients."""
        ...

    def save(self, path: Path) -> None:
        """Write model + optimizer state into the (new, empty) folder `path`. Collective."""
        ...

    def load(self, path: Path) -> None:
        """Restore what `save` wrote. Collective."""
        ...

    def close(self) -> None:
        """Release global state (parallel groups) so another engine can be built in this process."""
        ...


class Backend(Protocol):
    name: ClassVar[str]

    @property
    def options(self) -> dict[str, int | str]:
        """Settings that change what is trained (part of the run's key), e.g. the ZeRO stage."""
        ...

    def unsupported(self, proxy: ProxyConfig, parallel: Parallelism, device: str) -> str | None:
        """Why this backend cannot train `proxy` with `parallel` on `device` ("cpu"/"cuda"), or None."""
        ...

    def build(self, proxy: ProxyConfig, budget: TrainBudget, parallel: Parallelism, world: World) -> Engine: ...


_REGISTRY: dict[str, Backend] = {}
#: the order `auto` tries backends in
AUTO_ORDER: list[str] = []


def register(backend: Backend, *, auto: bool = True) -> Backend:
    _REGISTRY[backend.name] = backend
    if auto and backend.name not in AUTO_ORDER:
        AUTO_ORDER.append(backend.name)
    return backend


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Backend:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown backend (known: auto, {', '.join(_REGISTRY)})", where=name) from None


def choose(name: str, proxy: ProxyConfig, parallel: Parallelism, device: str) -> tuple[Backend, str]:
    """The backend to run and why. `auto` takes the first of `AUTO_ORDER` that supports the config."""
    if name != "auto":
        backend = get(name)
        reason = backend.unsupported(proxy, parallel, device)
        if reason:
            raise BackendUnavailable(reason, where=f"backend {name}")
        return backend, "requested"
    refusals: list[str] = []
    for candidate in AUTO_ORDER:
        backend = _REGISTRY[candidate]
        reason = backend.unsupported(proxy, parallel, device)
        if reason is None:
            why = f"auto: {candidate} supports {proxy.name} on {device}"
            if refusals:
                why += " (" + "; ".join(refusals) + ")"
            return backend, why
        refusals.append(f"{candidate}: {reason}")
    raise BackendUnavailable("no backend can run this config: " + "; ".join(refusals), where="backend auto")
