"""The recommendation: which model to trust and where to look, from the runs a sweep made.

Two models of the objective compete by cross-validation on the same folds:

- **scalar**: one surrogate of the objective itself (`auto` picks among lightgbm, linear,
  mixing law, GP and their ensemble);
- **parts**: when the objective is a weighted sum of per-domain metrics (`val.bpb.mean`, or
  `objective.weights`), one model per metric, combined with the objective's weights. Per domain
  the default is Ye et al.'s mixing law, the literature's standard: it knows that starving a
  domain raises that domain's loss, which a scalar model fitted on a handful of runs does not.

The model with the better out-of-fold Spearman proposes (ties go to parts); its out-of-fold RMSE is
the run noise of the proposal's interval, unless a measured noise is given (`noise_std`: the spread
between seeds of the same mixture, when a sweep replicates its top trials), which also bounds the
scalar GP's noise term from below. The proposal is kept near the evidence (see
`mixture_search.proposal`): a trust region around the best runs, a cap on extrapolating any share,
and a pessimistic score.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.proposal import (
    DEFAULT_EXTRAPOLATE,
    DEFAULT_TRUST_REGION,
    DEFAULT_UNCERTAINTY,
    Proposal,
    TrustRegion,
    propose,
)
from mixture_search.space import SearchSpace
from mixture_search.surrogates.base import build_surrogate
from mixture_search.surrogates.cv import CVResult, cross_validate_predictions, fold_ids, result
from mixture_search.surrogates.ensemble import AutoSurrogate
from mixture_search.surrogates.multi import MultiTarget

#: the per-part model when the scalar surrogate is `auto`
PARTS_SURROGATE = "mixing_law"


@dataclass(frozen=True)
class Recommendation:
    proposal: Proposal
    model: str  # the model that proposed: "scalar:<surrogate>" or "parts:<surrogate>"
    cv: dict[str, CVResult]  # each competing model's cross-validation of the objective
    fitted: Any  # the fitted model that proposed

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.proposal.to_dict(),
            "model": self.model,
            "cv": {name: cv.row() for name, cv in self.cv.items()},
        }


def recommend_mixture(
    space: SearchSpace,
    X: np.ndarray,
    y: np.ndarray,
    *,
    parts: Mapping[str, np.ndarray] | None = None,
    part_weights: Mapping[str, float] | None = None,
    surrogate: str = "auto",
    maximize: bool = False,
    seed: int = 0,
    n_samples: int = 100_000,
    trust_region: float | None = DEFAULT_TRUST_REGION,
    extrapolate: float | None = DEFAULT_EXTRAPOLATE,
    uncertainty: float = DEFAULT_UNCERTAINTY,
    folds: int = 5,
    noise_std: float | None = None,
) -> Recommendation:
    """The proposal of the better-validated model (see the module docstring), from runs `X` (n, m) in the
    space's domain order with objectives `y`; `parts` are the metric columns the objective sums with
    `part_weights` (equal weights when not given). `noise_std`, when given (e.g. measured between seeds
    of the same mixture), is the run noise of the proposal's interval instead of the CV RMSE, and the
    lower bound of the scalar surrogate's noise term where it has one (gp, also inside ensemble and
    auto). The per-part models get no noise: seeds measure the objective's noise, not each part's."""
    X, y = np.atleast_2d(np.asarray(X, dtype=np.float64)), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(y)
    if ok.sum() < 3:
        raise SearchError(f"only {int(ok.sum())} runs have an objective; a surrogate needs at least 3")
    # the runs in a canonical order: the folds follow row order, so a sweep resumed from MLflow (which
    # lists runs in its own order) must recommend what the uninterrupted sweep did
    order = np.lexsort(np.column_stack([X[ok], y[ok]]).T[::-1])
    X, y = X[ok][order], y[ok][order]
    folds = min(folds, len(y))
    scalar = build_surrogate(surrogate, seed=seed, noise_std=noise_std)
    if isinstance(scalar, AutoSurrogate):
        scalar = AutoSurrogate(seed=seed, folds=folds, noise_std=noise_std).fit(X, y)
        scalar_cv = scalar.best_cv
    else:
        scalar_cv = cross_validate_predictions(scalar, X, y, folds=folds, seed=seed)[0]
        scalar.fit(X, y)
    models: dict[str, tuple[Any, CVResult]] = {f"scalar:{scalar_cv.surrogate}": (scalar, scalar_cv)}
    if parts:
        names = list(parts)
        weights = np.array([float((part_weights or {}).get(n, 1.0 / len(names))) for n in names])
        Y = np.column_stack([np.asarray(parts[n], dtype=np.float64)[ok][order] for n in names])
        kind = PARTS_SURROGATE if surrogate == "auto" else surrogate
        multi = MultiTarget(names, surrogate=kind, weights=weights, seed=seed)
        cv = _cross_validate_parts(multi, X, Y, y, folds=folds, seed=seed)
        models[f"parts:{kind}"] = (multi.fit(X, Y), cv)
    # parts first, so it wins ties (max keeps the first of equals)
    name = max(reversed(list(models)), key=lambda n: models[n][1].rank_score)
    model, cv = models[name]
    region = None
    if trust_region is not None or extrapolate is not None:
        region = TrustRegion.around(space, X, y, maximize=maximize, radius=trust_region, extrapolate=extrapolate)
    noise = noise_std if noise_std is not None else float(cv.rmse) if np.isfinite(cv.rmse) else None
    proposal = propose(
        model,
        space,
        n_samples=n_samples,
        seed=seed,
        maximize=maximize,
        noise_std=noise,
        region=region,
        uncertainty=uncertainty,
    )
    return Recommendation(proposal, name, {n: c for n, (_, c) in models.items()}, model)


def _cross_validate_parts(
    multi: MultiTarget, X: np.ndarray, Y: np.ndarray, y: np.ndarray, *, folds: int, seed: int
) -> CVResult:
    """Out-of-fold CV of the combined objective of a per-part model, on the folds `auto` uses."""
    ids = fold_ids(X, folds, seed)
    oof = np.full(len(y), np.nan)
    start = time.perf_counter()
    for k in range(int(ids.max()) + 1):
        test = ids == k
        try:
            oof[test] = multi.clone().fit(X[~test], Y[~test]).predict(X[test])[0]
        except SearchError:  # too few runs with a value in this fold's training part
            continue
    kept = np.isfinite(oof)
    return result(f"parts:{multi.surrogate}", y[kept], oof[kept], int(ids.max()) + 1, time.perf_counter() - start, seed)


__all__ = ["PARTS_SURROGATE", "Recommendation", "recommend_mixture"]
