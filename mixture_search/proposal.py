"""The proposal: the mixture a fitted surrogate predicts to be best, inside the search space.

RegMix's recipe, then a local refinement:

1. score `n_samples` feasible mixtures (half Dirichlet draws around the prior on RegMix's strength
   ladder, half uniform over the space), in chunks so memory stays flat;
2. average the `top_k` best: an average of feasible points is feasible (the space is convex), and it
   smooths out a surrogate's noise instead of trusting its single best point;
3. refine from that average by local search on the surrogate (Gaussian steps on log shares, projected
   onto the space, the step halving when nothing improves), never more than `radius` (L1) from it,
   so the answer does not run off to where the surrogate has no data.

The interval is mean +- z * sqrt(std^2 + noise^2) at the chosen level, where noise is the cross-
validated RMSE when the model was chosen by CV (`auto`), or the `noise_std` given: an interval for
what a run at that mixture would measure, not only for the model's mean.
"""

from __future__ import annotations

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
        }


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
) -> Proposal:
    """The best mixture under a fitted surrogate (see the module docstring for how)."""
    # lazy: scipy.stats costs ~1 s to import and the CLI imports this module for every command
    from scipy.stats import norm

    if n_samples < 1 or not 1 <= top_k <= n_samples:
        raise SearchError(f"need 1 <= top_k ({top_k}) <= n_samples ({n_samples})")
    if not 0 < level < 1:
        raise SearchError(f"interval level {level} must be between 0 and 1")
    predict = scorer(model, space)
    score = mean_scorer(model, space)
    sign = -1.0 if maximize else 1.0
    rng = np.random.default_rng(seed)
    best_X = np.zeros((0, space.size))
    best_f = np.zeros(0)
    done = 0
    while done < n_samples:
        X = candidates(space, min(chunk, n_samples - done), rng)
        f = sign * score(X)
        best_X, best_f = np.vstack([best_X, X]), np.concatenate([best_f, f])
        keep = np.argsort(best_f, kind="stable")[:top_k]
        best_X, best_f = best_X[keep], best_f[keep]
        done += len(X)
    averaged = np.asarray(space.project(best_X.mean(axis=0)))
    x, fx = averaged, float(sign * score(averaged)[0])
    averaged_f = fx
    steps = 0
    if refine:
        step = 0.1
        for _ in range(60):
            cand = perturb(space, x, step, rng, 64)
            cand = cand[np.abs(cand - averaged).sum(axis=1) <= radius]
            f = sign * score(cand) if len(cand) else np.zeros(0)
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
    return Proposal(
        mixture=space.to_mixture(x),
        predicted=float(mean[0]),
        std=float(std[0]),
        interval=(float(mean[0]) - half, float(mean[0]) + half),
        level=level,
        averaged=space.to_mixture(averaged),
        averaged_predicted=sign * averaged_f,
        top_k=top_k,
        n_samples=n_samples,
        refine_steps=steps,
        noise_std=float(noise),
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
