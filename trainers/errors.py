"""Errors of the training layer, all `MixSweepError`s so the CLI prints one line and exits 2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mixture_search.errors import MixSweepError

if TYPE_CHECKING:
    from trainers.result import TrainResult


class ConfigError(MixSweepError):
    """A proxy model or budget that cannot be built: a bad field, inconsistent shapes, an unknown preset."""


class BackendUnavailable(MixSweepError):
    """The requested backend cannot run this config on this machine; the message says why."""


class CheckpointError(MixSweepError):
    """A checkpoint that is missing, unreadable, or written for a different run."""


class TrainingDiverged(MixSweepError):
    """The loss became NaN or infinite. `step` is where; `result` is everything computed until then
    (also written to the run folder), so nothing already measured is lost."""

    def __init__(self, message: str, *, step: int, result: TrainResult | None = None, where: Any = None) -> None:
        super().__init__(message, where=where)
        self.step = step
        self.result = result
