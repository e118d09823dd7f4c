"""Surrogates of the objective over mixtures: `SURROGATES.build(name, seed=..., **options)`.

Every surrogate has `fit(X, y)` and `predict(X) -> (mean, std)`; `cross_validate` scores one by
K-fold CV; `auto` picks the best by cross-validated Spearman.
"""

from mixture_search.surrogates import (  # noqa: F401  (registers the entries)
    ensemble,
    mixing_law,
    models,
    scale,
)
from mixture_search.surrogates.base import SURROGATES, BaseSurrogate, Surrogate
from mixture_search.surrogates.cv import (
    CVResult,
    cross_validate,
    cross_validate_predictions,
    pairwise_accuracy,
    scores,
)
from mixture_search.surrogates.ensemble import AutoSurrogate, EnsembleSurrogate
from mixture_search.surrogates.multi import MultiTarget, pareto_mask
from mixture_search.surrogates.persist import load_model, save_model

__all__ = [
    "SURROGATES",
    "AutoSurrogate",
    "BaseSurrogate",
    "CVResult",
    "EnsembleSurrogate",
    "MultiTarget",
    "Surrogate",
    "cross_validate",
    "cross_validate_predictions",
    "load_model",
    "pairwise_accuracy",
    "pareto_mask",
    "save_model",
    "scores",
]
