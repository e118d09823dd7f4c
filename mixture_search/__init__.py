"""MixSweep's search library: the `Mixture` value, formats and catalog, and the mixture search
(search space, samplers, surrogates, proposal).

The search names are loaded on first use, so `import mixture_search.mixture` stays light (no
scikit-learn, LightGBM or Optuna import) for code that only reads and writes mixtures.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mixture_search.mixture import Mixture
    from mixture_search.observation import Observation
    from mixture_search.proposal import Proposal, pareto_front, propose
    from mixture_search.samplers import SAMPLERS, Sampler
    from mixture_search.space import SearchSpace
    from mixture_search.surrogates import SURROGATES, MultiTarget, Surrogate, cross_validate

_LAZY = {
    "Mixture": "mixture_search.mixture",
    "Observation": "mixture_search.observation",
    "SearchSpace": "mixture_search.space",
    "SAMPLERS": "mixture_search.samplers",
    "Sampler": "mixture_search.samplers",
    "SURROGATES": "mixture_search.surrogates",
    "Surrogate": "mixture_search.surrogates",
    "MultiTarget": "mixture_search.surrogates",
    "cross_validate": "mixture_search.surrogates",
    "propose": "mixture_search.proposal",
    "pareto_front": "mixture_search.proposal",
    "Proposal": "mixture_search.proposal",
}

__all__ = [
    "SAMPLERS",
    "SURROGATES",
    "Mixture",
    "MultiTarget",
    "Observation",
    "Proposal",
    "Sampler",
    "SearchSpace",
    "Surrogate",
    "cross_validate",
    "pareto_front",
    "propose",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mixture_search' has no attribute {name!r}")
