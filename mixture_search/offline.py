"""Search over a table of past runs, without a sweep: fit, predict, suggest the next runs, propose.

These are the library side of `mixsweep fit|predict|suggest|propose`; the CLI only parses options
and prints. One or several target metrics: with several, one model per metric and the objective is
their weighted sum (default: the mean).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.mixture import Mixture
from mixture_search.observation import Observation
from mixture_search.proposal import (
    DEFAULT_EXTRAPOLATE,
    DEFAULT_TRUST_REGION,
    DEFAULT_UNCERTAINTY,
    Proposal,
    TrustRegion,
    pareto_front,
    propose,
)
from mixture_search.runs import RunsTable, parse_number
from mixture_search.samplers import SAMPLERS
from mixture_search.samplers.adaptive import expected_improvement, pick_diverse
from mixture_search.space import SearchSpace
from mixture_search.surrogates import (
    SURROGATES,
    AutoSurrogate,
    CVResult,
    MultiTarget,
    cross_validate_predictions,
)
from mixture_search.surrogates.cv import result
from mixture_search.surrogates.scale import (
    AXES,
    LargestScaleSurrogate,
    Scale,
    ScaleLawRepeatSurrogate,
    choose_by_largest_scale,
    holdout_largest_scale,
    is_scale_aware_name,
    scale_keys,
)


@dataclass
class FittedRuns:
    runs: RunsTable
    targets: tuple[str, ...]
    weights: np.ndarray  # objective weights per target
    maximize: bool
    X: np.ndarray  # shares of the runs used
    Y: np.ndarray  # their metrics (NaN: missing)
    y: np.ndarray  # their objective (NaN where a metric is missing)
    model: Any
    dropped: int  # runs with no usable target
    cv: dict[str, list[CVResult]] = field(default_factory=dict)  # per target (and "objective")
    chosen: dict[str, str] = field(default_factory=dict)
    #: (n, 2) params and tokens of the runs used, when they span 2 or more scales (None: scale-free)
    scales: np.ndarray | None = None

    @property
    def largest_scale(self) -> Scale | None:
        if self.scales is None:
            return None
        row = self.scales[int(np.argmax(scale_keys(self.scales)))]
        return Scale(float(row[0]), float(row[1]))

    @property
    def domains(self) -> tuple[str, ...]:
        return self.runs.domains

    @property
    def objective_cv(self) -> CVResult | None:
        rows = self.cv.get("objective") or (self.cv.get(self.targets[0]) if len(self.targets) == 1 else None)
        if not rows:
            return None
        name = self.chosen.get("objective") or self.chosen.get(self.targets[0])
        return next((r for r in rows if r.surrogate == name), rows[0])

    def observations(self) -> list[Observation]:
        mixtures = [Mixture(zip(self.domains, row.tolist())) for row in self.X]
        return [
            Observation(m, float(v) if np.isfinite(v) else None, dict(zip(self.targets, map(float, row))))
            for m, v, row in zip(mixtures, self.y, self.Y)
        ]


def fit_runs(
    runs: RunsTable,
    targets: Sequence[str],
    *,
    surrogate: str = "auto",
    objective_weights: Sequence[float] | None = None,
    maximize: bool = False,
    folds: int = 5,
    seed: int = 0,
    scales: np.ndarray | None = None,
    domain_tokens: Mapping[str, float] | None = None,
) -> FittedRuns:
    """Fit the surrogate (one per target) and cross-validate it; `auto` picks by CV Spearman.

    `scales` ((n, 2) params and tokens per run, from `read_scales`): when the runs span 2 or more
    scales, one scale-aware model of the objective (see `fit_scaled`); with one scale, as without.
    `domain_tokens` (unique tokens per domain, every domain of the runs) lets that model discount
    repeated epochs (`scale_law_repeat`, a candidate of `auto`)."""
    targets = tuple(targets)
    if not targets:
        raise SearchError("give at least one --target column")
    if surrogate not in SURROGATES:
        raise SearchError(f"unknown surrogate {surrogate!r} (choose from {', '.join(SURROGATES.names())})")
    Y_all = runs.metrics(targets)
    usable = np.isfinite(Y_all).any(axis=1)
    if usable.sum() < 3:
        raise SearchError(
            f"only {int(usable.sum())} runs have a value for {', '.join(targets)}; need at least 3",
            where=str(runs.path),
        )
    X, Y = runs.weights[usable], Y_all[usable]
    w = np.full(len(targets), 1.0 / len(targets)) if objective_weights is None else np.asarray(objective_weights, float)
    if w.shape != (len(targets),):
        raise SearchError(f"{len(w)} objective weights for {len(targets)} targets")
    y = Y @ w  # NaN where a metric is missing
    if scales is not None and len(np.unique(scale_keys(scales[usable]))) > 1:
        tokens = None if domain_tokens is None else ordered_tokens(domain_tokens, runs.domains)
        return fit_scaled(
            runs, targets, w, maximize, X, Y, y, scales[usable], surrogate, seed, int((~usable).sum()), tokens
        )
    options = {"folds": folds} if surrogate == "auto" else {}
    fitted = FittedRuns(runs, targets, w, maximize, X, Y, y, None, int((~usable).sum()))
    if len(targets) == 1:
        ok = np.isfinite(y)
        if surrogate == "auto":
            auto = AutoSurrogate(seed=seed, **options).fit(X[ok], Y[ok, 0])
            fitted.model, fitted.cv[targets[0]], fitted.chosen[targets[0]] = auto, auto.cv, auto.chosen
        else:
            model = SURROGATES.build(surrogate, seed=seed)
            fitted.cv[targets[0]] = [cross_validate_predictions(model, X[ok], Y[ok, 0], folds=folds, seed=seed)[0]]
            fitted.model, fitted.chosen[targets[0]] = model.fit(X[ok], Y[ok, 0]), surrogate
        return fitted
    multi = MultiTarget(targets, surrogate=surrogate, weights=w, seed=seed, **options).fit(X, Y)
    fitted.model = multi
    oof = np.full(Y.shape, np.nan)
    for j, target in enumerate(targets):
        ok = np.isfinite(Y[:, j])
        model = multi.models[target]
        if isinstance(model, AutoSurrogate):
            fitted.cv[target], fitted.chosen[target] = model.cv, model.chosen
            oof[ok, j] = model.oof[model.chosen]
        else:
            cv, pred = cross_validate_predictions(
                SURROGATES.build(surrogate, seed=seed), X[ok], Y[ok, j], folds=folds, seed=seed
            )
            fitted.cv[target], fitted.chosen[target], oof[ok, j] = [cv], surrogate, pred
    both = np.isfinite(y)
    if both.sum() >= 3:
        name = "+".join(dict.fromkeys(fitted.chosen.values()))
        fitted.cv["objective"] = [result(name, y[both], oof[both] @ w, folds, 0.0, seed)]
        fitted.chosen["objective"] = name
    return fitted


def fit_scaled(
    runs: RunsTable,
    targets: tuple[str, ...],
    w: np.ndarray,
    maximize: bool,
    X: np.ndarray,
    Y: np.ndarray,
    y: np.ndarray,
    scales: np.ndarray,
    surrogate: str,
    seed: int,
    dropped: int,
    domain_tokens: tuple[float, ...] | None = None,
) -> FittedRuns:
    """One model of the objective over (mixture, scale), scored by holding out the largest scale.
    `auto` picks by that score among the scale-aware surrogates and the scale-free ones used naively
    (fitted on the largest scale only); a scale-free name is used naively; a scale-aware one as is.
    Runs missing any target are left out (the objective needs all of them)."""
    ok = np.isfinite(y)
    if ok.sum() < 3:
        raise SearchError(f"only {int(ok.sum())} runs have every target; need at least 3", where=str(runs.path))
    X, Y, y, S = X[ok], Y[ok], y[ok], scales[ok]
    key = targets[0] if len(targets) == 1 else "objective"
    fitted = FittedRuns(runs, targets, w, maximize, X, Y, y, None, dropped + int((~ok).sum()), scales=S)
    if surrogate == "auto":
        fitted.model, fitted.cv[key], fitted.chosen[key] = choose_by_largest_scale(
            X, y, S, seed=seed, domain_tokens=domain_tokens
        )
        return fitted
    if surrogate == "scale_law_repeat" and domain_tokens is None:
        raise SearchError("scale_law_repeat needs each domain's unique tokens (--domain-tokens)", where="--surrogate")
    options = {"domain_tokens": domain_tokens} if surrogate == "scale_law_repeat" else {}
    model: Any = SURROGATES.build(surrogate, seed=seed, **options)
    cv = holdout_largest_scale(model, X, y, S, seed=seed)[0]
    if not is_scale_aware_name(surrogate):
        model = LargestScaleSurrogate(seed=seed, surrogate=surrogate)
    fitted.model, fitted.cv[key], fitted.chosen[key] = model.fit(X, y, scales=S), [cv], surrogate
    return fitted


def repeat_decay_weights(fitted: FittedRuns) -> dict[str, float] | None:
    """Each repetition decay R* (epochs) and its weight, where the model fitted is scale_law_repeat
    weighing its decays (option repeat_decay "weigh"): how firmly the runs tell how fast repeated text
    loses its worth. None for any other model."""
    model = fitted.model
    if not isinstance(model, ScaleLawRepeatSurrogate) or not model.members:
        return None
    return {f"{decay:g}": weight for decay, weight, _ in model.members}


def ordered_tokens(domain_tokens: Mapping[str, float], domains: Sequence[str]) -> tuple[float, ...]:
    """Each domain's unique tokens in the order of `domains`; one-line errors name the domain."""
    missing = [d for d in domains if d not in domain_tokens]
    if missing:
        raise SearchError(f"no token count for domain {missing[0]!r} (give every domain)", where="--domain-tokens")
    unknown = [d for d in domain_tokens if d not in domains]
    if unknown:
        raise SearchError(f"{unknown[0]!r} is not a domain of the runs", where="--domain-tokens")
    out = []
    for d in domains:
        v = domain_tokens[d]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (np.isfinite(v) and v > 0):
            raise SearchError(f"{v!r} is not a positive number of tokens", where=f"--domain-tokens {d}")
        out.append(float(v))
    return tuple(out)


def read_scales(runs: RunsTable, columns: Sequence[str], *, option: str = "--scale") -> np.ndarray:
    """(n, 2) params and tokens from the named columns: positive numbers, every row."""
    if len(columns) != 2:
        raise SearchError(f"name two columns, {','.join(AXES)} (got {len(columns)}: {','.join(columns)})", where=option)
    table = runs.table
    for column in columns:
        if column not in table.header:
            raise SearchError(
                f"{option} column {column!r} is not in the header ({', '.join(table.header)})", where=str(runs.path)
            )
        if column in runs.weight_columns:
            raise SearchError(f"{option} column {column!r} is also a weight column", where=str(runs.path))
    out = np.empty((runs.n, 2))
    for a, column in enumerate(columns):
        j = table.index(column)
        for r, row in enumerate(table.rows):
            where = f"{runs.path}:{table.lines[r]} {column}"
            value = parse_number(row[j], where, allow_missing=False)
            if value <= 0:
                raise SearchError(f"{row[j]!r} is not a positive number of {AXES[a]}", where=where)
            out[r, a] = value
    return out


def check_target_scale(fitted: FittedRuns, at: Scale, names: Sequence[str] = AXES) -> None:
    """A target is at least as large as the largest run on both axes (one-line error naming the field)."""
    if fitted.scales is None:
        return
    for a, name in enumerate(names):
        top = float(fitted.scales[:, a].max())
        if at.row()[a] < top:
            raise SearchError(f"{name}={at.row()[a]:g} is smaller than the largest run's {top:g}", where="--at")


def build_space(
    domains: Sequence[str],
    *,
    tokens: Mapping[str, float] | None = None,
    target_tokens: str | float | None = None,
    max_epochs: float | None = None,
    minimum: Mapping[str, float] | None = None,
    maximum: Mapping[str, float] | None = None,
    pinned: Mapping[str, float] | None = None,
) -> SearchSpace:
    minimum, maximum = dict(minimum or {}), dict(maximum or {})
    bounds = {d: (minimum.get(d, 0.0), maximum.get(d, 1.0)) for d in {**minimum, **maximum}}
    return SearchSpace(
        domains=tuple(domains),
        tokens=dict(tokens) if tokens else None,
        target_tokens=target_tokens,
        max_epochs=max_epochs,
        bounds=bounds,
        pinned=dict(pinned or {}),
    )


def predict_rows(fitted: FittedRuns, candidates: RunsTable, scales: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Columns to add to the candidates: predicted, predicted_std (and per target with several).
    A scale-aware model predicts each candidate at its row of `scales`."""
    if fitted.scales is not None:
        if scales is None:
            raise SearchError("the model was fitted across scales: the candidates need their scales")
        mean, std = fitted.model.predict(candidates.weights, scales=scales)
        return {"predicted": mean, "predicted_std": std}
    mean, std = fitted.model.predict(candidates.weights)
    out = {"predicted": mean, "predicted_std": std}
    if isinstance(fitted.model, MultiTarget):
        means, stds = fitted.model.predict_all(candidates.weights)
        for j, t in enumerate(fitted.targets):
            out[f"predicted.{t}"], out[f"predicted_std.{t}"] = means[:, j], stds[:, j]
    return out


@dataclass(frozen=True)
class Suggestion:
    weights: np.ndarray  # (k, m) shares
    predicted: np.ndarray
    predicted_std: np.ndarray
    acquisition: np.ndarray | None  # EI for pool picks
    pool_rows: list[int] | None  # row numbers in the pool table


def suggest_runs(
    fitted: FittedRuns,
    space: SearchSpace,
    k: int,
    *,
    sampler: str = "adaptive",
    pool: RunsTable | None = None,
    seed: int = 0,
    diversity: float = 0.5,
    sampler_options: Mapping[str, Any] | None = None,
) -> Suggestion:
    """The next k runs: generated by a sampler that has observed the runs, or the k best pool rows by
    expected improvement (with the same diversity rule as the adaptive sampler)."""
    if k < 1:
        raise SearchError(f"--n must be at least 1, got {k}")
    model = fitted.model
    if pool is not None:
        mean, std = model.predict(pool.weights)
        known = fitted.X
        fresh = np.array([np.abs(known - p).sum(axis=1).min() >= 1e-6 for p in pool.weights])
        if not fresh.any():
            raise SearchError("every pool row is a mixture that has already been run", where=str(pool.path))
        sign = -1.0 if fitted.maximize else 1.0
        best = float(np.nanmin(sign * fitted.y))
        ei = np.where(fresh, expected_improvement(sign * mean, std, best), -np.inf)
        idx = np.flatnonzero(fresh)
        nearest = np.array([np.abs(known - p).sum(axis=1).min() for p in pool.weights[idx]])
        picks = [
            int(idx[i]) for i in pick_diverse(pool.weights[idx], ei[idx], k, diversity * float(np.median(nearest)))
        ]
        return Suggestion(pool.weights[picks], mean[picks], std[picks], ei[picks], picks)
    options = dict(sampler_options or {})
    searcher = SAMPLERS.build(sampler, space=space, seed=seed, maximize=fitted.maximize, **options)
    observed = [o for o in fitted.observations() if o.objective is not None]
    inside = space.contains(space.to_array([o.mixture for o in observed])) if observed else np.zeros(0, bool)
    # runs outside the space (e.g. before a cap was set) still teach the model, but a sampler only
    # sees what it could itself have proposed
    searcher.observe([o for o, ok in zip(observed, np.atleast_1d(inside)) if ok])
    mixtures = searcher.suggest(k)
    if not mixtures:
        raise SearchError(f"sampler {sampler} has no new mixture left to suggest")
    W = space.to_array(mixtures)
    mean, std = model.predict(W)
    return Suggestion(W, mean, std, None, None)


def propose_runs(
    fitted: FittedRuns,
    space: SearchSpace,
    *,
    n_samples: int = 100_000,
    top_k: int = 100,
    seed: int = 0,
    trust_region: float | None = DEFAULT_TRUST_REGION,
    extrapolate: float | None = DEFAULT_EXTRAPOLATE,
    uncertainty: float = DEFAULT_UNCERTAINTY,
    at: Scale | None = None,
) -> Proposal:
    """The proposal, kept near the runs that have an objective (see `mixture_search.proposal`).
    A model fitted across scales proposes for `at` (default: the largest scale of the runs), and
    the trust region is drawn around the runs of the largest scale (objectives at different scales
    do not compare)."""
    cv = fitted.objective_cv
    noise = cv.rmse if cv is not None and np.isfinite(cv.rmse) else None
    model, X, y = fitted.model, fitted.X, fitted.y
    if fitted.scales is not None:
        largest = fitted.largest_scale
        assert largest is not None
        target = at or largest
        check_target_scale(fitted, target)
        model = fitted.model.at(target)
        keys = scale_keys(fitted.scales)
        top = keys == keys.max()
        X, y = X[top], y[top]
    region = None
    if trust_region is not None or extrapolate is not None:
        cols = [list(fitted.domains).index(d) for d in space.domains]
        region = TrustRegion.around(
            space, X[:, cols], y, maximize=fitted.maximize, radius=trust_region, extrapolate=extrapolate
        )
    return propose(
        model,
        space,
        n_samples=n_samples,
        top_k=top_k,
        seed=seed,
        maximize=fitted.maximize,
        noise_std=noise,
        region=region,
        uncertainty=uncertainty,
    )


def pareto_runs(fitted: FittedRuns, space: SearchSpace, *, n_samples: int = 20_000, seed: int = 0) -> list[Any]:
    return pareto_front(fitted.model, space, n_samples=n_samples, seed=seed, maximize=fitted.maximize)


def best_run(fitted: FittedRuns) -> tuple[int, float] | None:
    """(row in the runs table, objective) of the best run."""
    ok = np.flatnonzero(np.isfinite(fitted.y))
    if not len(ok):
        return None
    sign = -1.0 if fitted.maximize else 1.0
    i = ok[int(np.argmin(sign * fitted.y[ok]))]
    rows = np.flatnonzero(np.isfinite(fitted.runs.metrics(fitted.targets)).any(axis=1))
    return int(rows[i]), float(fitted.y[i])


__all__ = [
    "FittedRuns",
    "Suggestion",
    "best_run",
    "build_space",
    "check_target_scale",
    "fit_runs",
    "fit_scaled",
    "ordered_tokens",
    "pareto_runs",
    "predict_rows",
    "propose_runs",
    "read_scales",
    "suggest_runs",
]
