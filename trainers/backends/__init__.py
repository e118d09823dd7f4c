"""Training backends behind one protocol (`base.Backend` / `base.Engine`), picked by name or `auto`.

Importing this package registers `megatron` then `deepspeed` (the order `auto` tries them in)
without importing megatron-core or DeepSpeed themselves: each backend imports its library when asked
whether it can run a config, so a missing or broken library only takes its own backend out.
"""

from trainers.backends import deepspeed as _deepspeed
from trainers.backends import megatron as _megatron
from trainers.backends.base import AUTO_ORDER, Backend, Engine, StepStats, choose, get, names, register

AUTO_ORDER[:] = [_megatron.BACKEND.name, _deepspeed.BACKEND.name]
DeepSpeedBackend = _deepspeed.DeepSpeedBackend
MegatronBackend = _megatron.MegatronBackend

__all__ = [
    "AUTO_ORDER",
    "Backend",
    "DeepSpeedBackend",
    "Engine",
    "MegatronBackend",
    "StepStats",
    "choose",
    "get",
    "names",
    "register",
]
