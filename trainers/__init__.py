"""Proxy-model training: configs and presets, backends (Megatron-Core, DeepSpeed), the loop, `train()`.

The entry point is `from trainers.train import train`. Names below are imported lazily so
`import trainers.data` (the data layer) does not pull in torch-heavy training modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ProxyConfig": "trainers.config",
    "MoEConfig": "trainers.config",
    "MLAConfig": "trainers.config",
    "TrainBudget": "trainers.budget",
    "TrainResult": "trainers.result",
    "EvalPoint": "trainers.result",
    "Parallelism": "trainers.distributed",
    "preset": "trainers.presets",
    "PRESETS": "trainers.presets",
    "tiny_cpu": "trainers.presets",
    "moe_cpu": "trainers.presets",
    "moe_60m": "trainers.presets",
    "openseek_small_proxy": "trainers.presets",
    "TrainingDiverged": "trainers.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trainers' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
