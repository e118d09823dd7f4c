"""The proposal: the mixture a fitted surrogate predicts to be best, inside the search space.

RegMix's recipe, then a local refinement:

1. score `n_samples` feasible mixtures (half Dirichlet draws around the prior on RegMix's strength
   ladder, half uniform over the space), in chunks so memory stays flat;
2. average the `top_k` best: an average of feasible points is feasible (the space is convex), and it
   smooths out a surrogate's noise instead of trusting its single best point;
3. refine from that average by local search on the surrogate (Gaussian steps on log shares, projected
   onto the space, the step halving when nothing improves), never more than `radius` (L1) from it,
   so the answer does not run off to where the surrogate has no data.

Kept near the evidence (`TrustRegion`, given the observed runs): no share leaves the range the runs
covered by more than `extrapolate`, and the answer lies within `trust_region` (L1) of one of the best
observed runs. The score is pessimistic by `uncertainty` predicted standard deviations (a confidence
bound, not the mean), so a mixture the model knows little about has to be predicted much better to
win. The proposal records which constraint, if any, it ended on (`bound_by`).

The interval is mean +- z * sqrt(std^2 + noise^2) at the chosen level, where noise is the cross-
validated RMSE when the model was chosen by CV (`auto`), or the `noise_std` given: an interval for
what a run at that mixture would measure, not only for the model's mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.mixture import Mixture
from mixture_search.samplers.design import perturb
from mixture_search.space import SearchSpace
from mixture_search.surrogates.base import predict_mean
from mixture_search.surrogates.multi import MultiTarget, pareto_mask

LADDER = np.logspace(-1, np.log10(5.0), 15)  # RegMix's Dirichlet strengths

#: defaults of the sweep (`search.*`) and of `mixsweep propose`: the proposal stays within this L1 distance
#: of one of the best runs, no share leaves the runs' range by more than this, and the score is the mean
#: plus this many predicted standard deviations against the objective's direction
DEFAULT_TRUST_REGION = 1.0
DEFAULT_EXTRAPOLATE = 0.25
DEFAULT_UNCERTAINTY = 0.5


@dataclass(frozen=True)
class Proposal:
    mixture: Mixture
    predicted: float
    std: float
    interval: tuple[float, float]
    level: float
    averaged: Mixture  # the mean of the top-k, before refinement
    averaged_predicted: float
    top_k: int
    n_samples: int
    refine_steps: int
    noise_std: float
    uncertainty: float = 0.0  # predicted standard deviations added against the objective's direction
    region: dict[str, Any] | None = None  # the trust region's settings, None without observed runs
    bound_by: tuple[str, ...] = ()  # the constraints the answer ended on: "trust_region", "extrapolate"
    nearest_run_l1: float | None = None  # L1 distance to the nearest observed run

    def to_dict(self) -> dict[str, Any]:
        return {
            "weights": dict(zip(self.mixture.names, self.mixture.normalized)),
            "predicted": self.predicted,
            "std": self.std,
            "interval": list(self.interval),
            "level": self.level,
            "noise_std": self.noise_std,
            "averaged_weights": dict(zip(self.averaged.names, self.averaged.normalized)),
            "averaged_predicted": self.averaged_predicted,
            "top_k": self.top_k,
            "n_samples": self.n_samples,
            "refine_steps": self.refine_steps,
            "uncertainty": self.uncertainty,
            "trust_region": self.region,
            "bound_by": list(self.bound_by),
            "nearest_run_l1": self.nearest_run_l1,
        }


@dataclass(frozen=True)
class TrustRegion:
    """Where the proposal may go, given the observed runs: `inner` is the search space with every free
    share's range cut to the runs' range widened by `extrapolate`; `admits` keeps points within
    `radius` (L1) of one of the `anchors` (the best observed runs). A run outside the space (e.g. from
    before a cap was set) counts at its nearest feasible mixture."""

    inner: SearchSpace
    anchors: np.ndarray  # (k, m)
    radius: float | None
    extrapolate: float | None
    narrowed: np.ndarray  # (m, 2) bool: the lower/upper bound is tighter than the space's own

    @classmethod
    def around(
        cls,
        space: SearchSpace,
        X: np.ndarray,
        y: np.ndarray,
        *,
        maximize: bool = False,
        radius: float | None = 0.5,
        extrapolate: float | None = 0.1,
        anchors: int = 3,
    ) -> TrustRegion:
        X, y = np.atleast_2d(np.asarray(X, dtype=np.float64)), np.asarray(y, dtype=np.float64)
        ok = np.isfinite(y)
        if not ok.any():
            raise SearchError(
                f"none of the {len(y)} observed runs has an objective, so there is no region to propose in"
            )
        X, y = X[ok], y[ok]
        outside = ~np.asarray(space.contains(X), dtype=bool).reshape(-1)
        if outside.any():  # runs from before a bound or cap was set stand at their nearest feasible mixture
            X = X.copy()
            X[outside] = space.project(X[outside])
        lo, hi = space.lower, space.upper
        inner = space
        narrowed = np.zeros((space.size, 2), dtype=bool)
        if extrapolate is not None:
            new_lo = np.maximum(lo, X.min(axis=0) - extrapolate)
            new_hi = np.minimum(hi, X.max(axis=0) + extrapolate)
            pinned = set(space.pinned)
            bounds = {d: (float(new_lo[i]), float(new_hi[i])) for i, d in enumerate(space.domains) if d not in pinned}
            inner = dataclasses.replace(space, bounds=bounds)
            narrowed = np.column_stack([inner.lower > lo + 1e-9, inner.upper < hi - 1e-9])
        order = np.argsort(-y if maximize else y, kind="stable")
        return cls(inner, X[order[: max(1, anchors)]], radius, extrapolate, narrowed)

    def distance(self, X: np.ndarray) -> np.ndarray:
        """L1 distance of each row to its nearest anchor."""
        X = np.atleast_2d(X)
        return np.abs(X[:, None, :] - self.anchors[None, :, :]).sum(axis=2).min(axis=1)

    def admits(self, X: np.ndarray) -> np.ndarray:
        if self.radius is None:
            return np.ones(len(np.atleast_2d(X)), dtype=bool)
        return self.distance(X) <= self.radius + 1e-9

    def local(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n points around the anchors (within the inner space), at several step sizes."""
        per = -(-n // len(self.anchors))
        steps = np.array([0.05, 0.1, 0.2, 0.4, 0.8])
        out = [perturb(self.inner, a, float(s), rng, -(-per // len(steps))) for a in self.anchors for s in steps]
        return np.vstack(out)[:n]

    def bound_by(self, x: np.ndarray) -> tuple[str, ...]:
        bound: list[str] = []
        if self.radius is not None and self.distance(x)[0] >= self.radius - 1e-3:
            bound.append("trust_region")
        at_lo = (np.abs(x - self.inner.lower) <= 1e-4) & self.narrowed[:, 0]
        at_hi = (np.abs(x - self.inner.upper) <= 1e-4) & self.narrowed[:, 1]
        if (at_lo | at_hi).any():
            bound.append("extrapolate")
        return tuple(bound)

    def describe(self) -> dict[str, Any]:
        return {"radius": self.radius, "extrapolate": self.extrapolate, "anchors": len(self.anchors)}


def scorer(model: Any, space: SearchSpace) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """model.predict on points in the space's domain order, whatever order the model was fitted in."""
    cols = _columns(model, space)
    return lambda X: model.predict(np.atleast_2d(X)[:, cols])


def mean_scorer(model: Any, space: SearchSpace) -> Callable[[np.ndarray], np.ndarray]:
    """Like `scorer`, the mean only (the fast path used to score many candidates)."""
    cols = _columns(model, space)
    return lambda X: predict_mean(model, np.atleast_2d(X)[:, cols])


def _columns(model: Any, space: SearchSpace) -> list[int]:
    domains = getattr(model, "domains", None)
    if domains is None:
        return list(range(space.size))
    if set(domains) != set(space.domains):
        extra = [d for d in domains if d not in space.domains] or [d for d in space.domains if d not in domains]
        raise SearchError(
            "the model's domains differ from the search space's "
            f"({len(domains)} vs {len(space.domains)} domains; first difference)",
            where=extra[0],
        )
    return [space.domains.index(d) for d in domains]


def candidates(space: SearchSpace, n: int, rng: np.random.Generator, *, temperature: float = 0.5) -> np.ndarray:
    """n feasible mixtures: half Dirichlet around the prior on the strength ladder (projected into
    the space), half uniform over it."""
    half = n // 2
    raw = space.dirichlet(rng, rng.choice(LADDER, half), temperature=temperature)
    inside = np.asarray(space.contains(raw), dtype=bool)
    if not inside.all():
        raw[~inside] = space.project(raw[~inside])
    return np.vstack([raw, space.sample_uniform(rng, n - half)])


def propose(
    model: Any,
    space: SearchSpace,
    *,
    n_samples: int = 100_000,
    top_k: int = 100,
    seed: int = 0,
    maximize: bool = False,
    refine: bool = True,
    radius: float = 0.2,
    level: float = 0.95,
    noise_std: float | None = None,
    chunk: int = 20_000,
    region: TrustRegion | None = None,
    uncertainty: float = 0.0,
) -> Proposal:
    """The best mixture under a fitted surrogate (see the module docstring for how): inside `region`
    when given, scored by the mean plus `uncertainty` standard deviations against the direction."""
    # lazy: scipy.stats costs ~1 s to import and the CLI imports this module for every command
    from scipy.stats import norm

    if n_samples < 1 or not 1 <= top_k <= n_samples:
        raise SearchError(f"need 1 <= top_k ({top_k}) <= n_samples ({n_samples})")
    if not 0 < level < 1:
        raise SearchError(f"interval level {level} must be between 0 and 1")
    if uncertainty < 0 or not np.isfinite(uncertainty):
        raise SearchError(f"uncertainty {uncertainty} must be a number >= 0")
    predict = scorer(model, space)
    sign = -1.0 if maximize else 1.0
    fast = mean_scorer(model, space)

    def score(X: np.ndarray) -> np.ndarray:
        """What the proposal minimises: the mean, pessimistic by `uncertainty` std either way."""
        if uncertainty == 0:
            return sign * fast(X)
        mean, std = predict(X)
        return sign * mean + uncertainty * std

    inner = region.inner if region is not None else space
    admits = region.admits if region is not None else (lambda X: np.ones(len(X), dtype=bool))
    rng = np.random.default_rng(seed)
    # the many candidates are ranked by the mean (the fast path: no std); with a penalty, a pool of the
    # best by the mean is ranked again by the penalised score
    pool = top_k if uncertainty == 0 else max(top_k, 20 * top_k)
    best_X = np.zeros((0, space.size)) if region is None else region.anchors.copy()
    best_f = np.zeros(0) if region is None else sign * fast(best_X)
    done = 0
    while done < n_samples:
        size = min(chunk, n_samples - done)
        X = candidates(inner, size, rng)
        if region is not None:  # a third near the best runs, where the region has most of its volume
            X = np.vstack([X[: size - size // 3], region.local(rng, size // 3)])
        done += len(X)
        X = X[admits(X)]
        if not len(X):
            continue
        best_X, best_f = np.vstack([best_X, X]), np.concatenate([best_f, sign * fast(X)])
        keep = np.argsort(best_f, kind="stable")[:pool]
        best_X, best_f = best_X[keep], best_f[keep]
    if uncertainty > 0:
        best_f = score(best_X)
        keep = np.argsort(best_f, kind="stable")[:top_k]
        best_X, best_f = best_X[keep], best_f[keep]
    averaged = np.asarray(inner.project(best_X.mean(axis=0)))
    if not admits(averaged[None, :])[0]:  # the top-k straddle several anchors: start from the best one
        averaged = best_X[int(np.argmin(best_f))]
    x, fx = averaged, float(score(averaged[None, :])[0])
    steps = 0
    if refine:
        step = 0.1
        for _ in range(60):
            cand = perturb(inner, x, step, rng, 64)
            cand = cand[(np.abs(cand - averaged).sum(axis=1) <= radius) & admits(cand)]
            f = score(cand) if len(cand) else np.zeros(0)
            if len(f) and f.min() < fx - 1e-12 * max(1.0, abs(fx)):
                j = int(np.argmin(f))
                x, fx = cand[j], float(f[j])
                steps += 1
            else:
                step *= 0.5
                if step < 1e-3:
                    break
    mean, std = predict(x)
    noise = noise_std if noise_std is not None else _cv_rmse(model)
    z = float(norm.ppf(0.5 + level / 2))
    half = z * float(np.sqrt(std[0] ** 2 + noise**2))
    averaged_mean = float(predict(averaged[None, :])[0][0])
    return Proposal(
        mixture=space.to_mixture(x),
        predicted=float(mean[0]),
        std=float(std[0]),
        interval=(float(mean[0]) - half, float(mean[0]) + half),
        level=level,
        averaged=space.to_mixture(averaged),
        averaged_predicted=averaged_mean,
        top_k=top_k,
        n_samples=n_samples,
        refine_steps=steps,
        noise_std=float(noise),
        uncertainty=float(uncertainty),
        region=None if region is None else region.describe(),
        bound_by=() if region is None else region.bound_by(x),
        nearest_run_l1=None if region is None else round(float(region.distance(x)[0]), 6),
    )


def _cv_rmse(model: Any) -> float:
    best = getattr(model, "best_cv", None)
    return float(best.rmse) if best is not None and np.isfinite(best.rmse) else 0.0


@dataclass(frozen=True)
class ParetoPoint:
    mixture: Mixture
    predicted: dict[str, float]
    objective: float


def pareto_front(
    model: MultiTarget,
    space: SearchSpace,
    *,
    n_samples: int = 20_000,
    seed: int = 0,
    maximize: bool | Sequence[bool] = False,
    max_points: int = 50,
) -> list[ParetoPoint]:
    """Mixtures no other sampled mixture beats on every metric (per-metric direction in `maximize`),
    sorted by the combined objective and thinned evenly to `max_points`."""
    if not isinstance(model, MultiTarget):
        raise SearchError("a Pareto front needs a multi-target model (several --target metrics)")
    flags = [maximize] * len(model.targets) if isinstance(maximize, bool) else list(maximize)
    if len(flags) != len(model.targets):
        raise SearchError(f"{len(flags)} directions for {len(model.targets)} targets")
    domains = model.domains or space.domains
    cols = [space.domains.index(d) for d in domains]
    X = candidates(space, n_samples, np.random.default_rng(seed))
    means, _ = model.predict_all(X[:, cols])
    signs = np.array([-1.0 if f else 1.0 for f in flags])
    mask = pareto_mask(means * signs)
    front, preds = X[mask], means[mask]
    combined = preds @ model.weights
    order = np.argsort(combined if not all(flags) else -combined)
    if len(order) > max_points:
        order = order[np.unique(np.linspace(0, len(order) - 1, max_points).round().astype(int))]
    return [
        ParetoPoint(
            mixture=space.to_mixture(front[i]),
            predicted={t: float(preds[i, j]) for j, t in enumerate(model.targets)},
            objective=float(combined[i]),
        )
        for i in order
    ]
