"""`TrainBudget`: how long and how a proxy trains (tokens or steps, batches, LR schedule, evals, seed).

The LR schedules are plain functions of the step so every backend (and a resumed run) computes the
same learning rate: `cosine` (warmup, cosine decay to `min_lr`), `wsd` (warmup-stable-decay: constant
after warmup, then a linear decay over the last `decay_fraction` of the steps, as in MiniCPM and
OpenSeek's later runs) and `constant` (after warmup).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mixture_search.keys import content_key
from mixture_search.units import parse_count
from trainers.errors import ConfigError

Schedule = Literal["cosine", "wsd", "constant"]
SCHEDULES: tuple[str, ...] = ("cosine", "wsd", "constant")


@dataclass(frozen=True)
class TrainBudget:
    """Exactly one of `tokens` and `steps` sets the length; `tokens` is rounded up to whole steps.

    `global_batch` sequences make one optimizer step; each data-parallel rank runs
    `global_batch / (micro_batch * dp)` micro-batches of `micro_batch` sequences and accumulates.
    `eval_interval` (steps) also sets the checkpoint cadence unless `save_interval` is given; 0 means
    only at the end.
    """

    tokens: int | None = None
    steps: int | None = None
    micro_batch: int = 8
    global_batch: int = 8
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 0
    schedule: Schedule = "cosine"
    decay_fraction: float = 0.2  # wsd only
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 0
    save_interval: int | None = None
    eval_windows_per_domain: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        where = "budget"
        if (self.tokens is None) == (self.steps is None):
            raise ConfigError("give exactly one of tokens and steps", where=f"{where}.steps")
        for name in ("tokens", "steps", "micro_batch", "global_batch", "eval_windows_per_domain"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ConfigError(f"must be a positive integer, got {value!r}", where=f"{where}.{name}")
        for name in ("warmup_steps", "eval_interval", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"must be an integer >= 0, got {value!r}", where=f"{where}.{name}")
        if self.save_interval is not None and (not isinstance(self.save_interval, int) or self.save_interval < 0):
            raise ConfigError(f"must be an integer >= 0, got {self.save_interval!r}", where=f"{where}.save_interval")
        if self.global_batch % self.micro_batch:
            raise ConfigError(
                f"global_batch {self.global_batch} is not a multiple of micro_batch {self.micro_batch}",
                where=f"{where}.global_batch",
            )
        for name in ("lr", "min_lr", "weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"must be a finite number >= 0, got {value!r}", where=f"{where}.{name}")
        if self.lr <= 0:
            raise ConfigError("must be positive", where=f"{where}.lr")
        if self.min_lr > self.lr:
            raise ConfigError(f"min_lr {self.min_lr} exceeds lr {self.lr}", where=f"{where}.min_lr")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"{self.schedule!r} is not one of {', '.join(SCHEDULES)}", where=f"{where}.schedule")
        if not 0 < self.decay_fraction <= 1:
            raise ConfigError("must be in (0, 1]", where=f"{where}.decay_fraction")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError("must be in [0, 1)", where=f"{where}.{name}")

    # -- derived ------------------------------------------------------------------------------------
    def total_steps(self, seq_len: int) -> int:
        if self.steps is not None:
            return self.steps
        assert self.tokens is not None
        return max(1, math.ceil(self.tokens / (self.global_batch * seq_len)))

    def micro_batches_per_rank(self, dp: int) -> int:
        """Gradient-accumulation steps of each data-parallel rank."""
        per_rank, rest = divmod(self.global_batch, self.micro_batch * dp)
        if rest or per_rank == 0:
            raise ConfigError(
                f"global_batch {self.global_batch} is not a multiple of micro_batch {self.micro_batch} x "
                f"data-parallel size {dp}",
                where="budget.global_batch",
            )
        return per_rank

    @property
    def checkpoint_interval(self) -> int:
        return self.eval_interval if self.save_interval is None else self.save_interval

    def lr_at(self, step: int, total_steps: int) -> float:
        """Learning rate of optimizer step `step` (0-based) in a run of `total_steps`."""
        if self.warmup_steps and step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "cosine":
            span = max(1, total_steps - self.warmup_steps)
            progress = min(1.0, (step - self.warmup_steps) / span)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        decay_steps = max(1, round(total_steps * self.decay_fraction))
        decay_start = total_steps - decay_steps
        if step < decay_start:
            return self.lr
        progress = min(1.0, (step - decay_start + 1) / decay_steps)
        return self.lr + (self.min_lr - self.lr) * progress

    # -- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "budget") -> TrainBudget:
        """Inverse of `to_dict`; also takes human token counts (`tokens: 20M`)."""
        if not isinstance(data, Mapping):
            raise ConfigError("must be a mapping of TrainBudget fields", where=where)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in names]
        if unknown:
            raise ConfigError(f"unknown field (known: {', '.join(sorted(names))})", where=f"{where}.{unknown[0]}")
        kwargs = dict(data)
        if isinstance(kwargs.get("tokens"), str):
            kwargs["tokens"] = parse_count(kwargs["tokens"], field=f"{where}.tokens")
        return cls(**kwargs)

    def replace(self, **changes: Any) -> TrainBudget:
        data = self.to_dict()
        if "tokens" in changes and changes["tokens"] is not None:
            data["steps"] = None
        if "steps" in changes and changes["steps"] is not None:
            data["tokens"] = None
        data.update(changes)
        return TrainBudget.from_dict(data)

    @property
    def key(self) -> str:
        return content_key(self.to_dict())
