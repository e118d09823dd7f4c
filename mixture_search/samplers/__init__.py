"""Candidate samplers with one ask/tell protocol: `SAMPLERS.build(name, space=..., seed=..., **options)`.

`suggest(n)` -> new feasible mixtures; `observe([Observation, ...])`; `state()` (JSON) and
`restore(state)`. Model-free designs (grid, dirichlet, sobol, lhs, local), Optuna (tpe, optuna_gp)
and model-based batches (adaptive).
"""

from mixture_search.samplers import adaptive, design, optuna_sampler  # noqa: F401  (registers the entries)
from mixture_search.samplers.base import SAMPLERS, BaseSampler, Sampler

__all__ = ["SAMPLERS", "BaseSampler", "Sampler"]
