"""Adaptive batches: fit a surrogate to what is known, pick the next batch by an acquisition function.

Until `n_init` runs are observed the batch comes from a space-filling design (Sobol or RegMix's
Dirichlet). Then every `suggest`:

1. fits the surrogate (any registry name; its `std` is the uncertainty: a GP's posterior, or an
   ensemble's spread) to the observed runs;
2. scores a pool of feasible candidates: uniform over the space, Dirichlet draws around the prior,
   and perturbations of the best runs at several step sizes; then perturbs the pool's most promising
   points once more and scores those too;
3. picks the batch greedily by expected improvement (`ei`, over the best *predicted* value among the
   runs, not the best noisy measurement, which noise biases), uncertainty (`uncertainty`) or lower
   confidence bound (`lcb`), multiplying every remaining candidate's acquisition by
   1 - exp(-(d / r)^2) after each pick (d: L1 distance to the pick), so a batch is never n copies of
   one point: r is `diversity` times the median distance from the pool to the nearest observed run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.registry import check_range
from mixture_search.samplers.base import SAMPLERS, BaseSampler, Sampler
from mixture_search.samplers.design import perturb
from mixture_search.surrogates import SURROGATES


@dataclass(frozen=True)
class AdaptiveOptions:
    surrogate: str = "gp"
    acquisition: Literal["ei", "uncertainty", "lcb"] = "ei"
    #: observed runs before the first model; None: max(6, domains + 2)
    n_init: int | None = None
    init: Literal["sobol", "dirichlet", "lhs"] = "sobol"
    pool: int = 4096
    diversity: float = 0.5
    #: EI margin, in units of the observed objective's std
    xi: float = 0.0
    #: LCB weight on the std
    kappa: float = 2.0

    def __post_init__(self) -> None:
        owner = "sampler adaptive"
        if self.surrogate not in SURROGATES:
            raise SearchError(
                f"option surrogate={self.surrogate!r} is not one of {', '.join(SURROGATES.names())}", where=owner
            )
        if self.n_init is not None:
            check_range(self.n_init, "n_init", owner, low=2)
        check_range(self.pool, "pool", owner, low=16, high=10_000_000)
        check_range(self.diversity, "diversity", owner, low=0.0, high=10.0)
        check_range(self.xi, "xi", owner, low=0.0)
        check_range(self.kappa, "kappa", owner, low=0.0)


def expected_improvement(mean: np.ndarray, std: np.ndarray, best: float, xi: float = 0.0) -> np.ndarray:
    """EI for minimisation: E[max(best - xi - f, 0)] under f ~ N(mean, std^2)."""
    # lazy: scipy.stats costs ~1 s to import and the CLI imports this module for every command
    from scipy.stats import norm

    gain = best - xi - mean
    safe = np.maximum(std, 1e-12)
    z = gain / safe
    ei = gain * norm.cdf(z) + safe * norm.pdf(z)
    return np.where(std > 1e-12, ei, np.maximum(gain, 0.0))


def pick_diverse(points: np.ndarray, score: np.ndarray, k: int, radius: float) -> list[int]:
    """Greedy batch: best score first, then each pick damps the score of its neighbours."""
    score = score - score.min() if score.min() < 0 else score.copy()
    taken = np.zeros(len(points), dtype=bool)
    chosen: list[int] = []
    for _ in range(min(k, len(points))):
        if chosen and not np.any(score[~taken] > 0):
            # everything left is damped to zero: take the point farthest from the batch instead
            far = np.min([np.abs(points - points[j]).sum(axis=1) for j in chosen], axis=0)
            i = int(np.argmax(np.where(taken, -np.inf, far)))
        else:
            i = int(np.argmax(np.where(taken, -np.inf, score)))
        chosen.append(i)
        taken[i] = True
        if radius > 0:
            d = np.abs(points - points[i]).sum(axis=1)
            score = score * (1.0 - np.exp(-((d / radius) ** 2)))
    return chosen


@SAMPLERS.register("adaptive", help="surrogate + expected improvement / uncertainty / LCB, diverse batches")
class AdaptiveSampler(BaseSampler):
    name = "adaptive"
    Options = AdaptiveOptions
    options: AdaptiveOptions

    def _setup(self) -> None:
        self.n_init = self.options.n_init or max(6, self.space.size + 2)
        self._init: Sampler = SAMPLERS.build(self.options.init, space=self.space, seed=self.seed)
        self.last_model: Any = None

    def _candidates(self, k: int) -> np.ndarray:
        X, y = self.observations
        if len(y) < self.n_init or np.ptp(y) == 0:
            mixtures = self._init.suggest(k)
            return self.space.to_array(mixtures) if mixtures else np.zeros((0, self.space.size))
        model = SURROGATES.build(self.options.surrogate, seed=self.seed).fit(X, y)
        self.last_model = model
        loss = self.loss(y)
        pool = self._pool(X, loss)
        pool = pool[[self.is_new(p) for p in pool]]
        if not len(pool):
            return pool
        incumbent = float(self.loss(model.predict(X)[0]).min())
        acq = self._acquire(model, pool, incumbent, y)
        # second look: perturb the most promising candidates and score those too
        top = pool[np.argsort(-acq)[:16]]
        extra = np.vstack([perturb(self.space, p, 0.1, self.rng, 32) for p in top])
        extra = extra[[self.is_new(p) for p in extra]]
        if len(extra):
            pool = np.vstack([pool, extra])
            acq = np.concatenate([acq, self._acquire(model, extra, incumbent, y)])
        nearest = np.array([np.abs(X - p).sum(axis=1).min() for p in pool])
        radius = self.options.diversity * float(np.median(nearest))
        return pool[pick_diverse(pool, acq, k, radius)]

    def _acquire(self, model: Any, pool: np.ndarray, incumbent: float, y: np.ndarray) -> np.ndarray:
        mean, std = model.predict(pool)
        mean = self.loss(mean)
        kind = self.options.acquisition
        if kind == "uncertainty":
            return std
        if kind == "lcb":
            return -(mean - self.options.kappa * std)
        return expected_improvement(mean, std, incumbent, self.options.xi * float(np.std(y)))

    def _pool(self, X: np.ndarray, loss: np.ndarray) -> np.ndarray:
        space, size = self.space, self.options.pool
        parts = [space.sample_uniform(self.rng, size // 4)]
        strengths = self.rng.choice(np.logspace(-1, np.log10(5), 15), size // 4)
        parts.append(space.project(space.dirichlet(self.rng, strengths, temperature=0.5)))
        best = X[np.argsort(loss)[:5]]
        per = max(1, (size - 2 * (size // 4)) // (3 * len(best)))
        for step in (0.05, 0.15, 0.4):
            parts += [perturb(space, b, step, self.rng, per) for b in best]
        return np.vstack(parts)

    def _extra_state(self) -> dict[str, Any]:
        return {"init": self._init.state()}

    def _restore_extra(self, extra: Mapping[str, Any]) -> None:
        self._init.restore(extra["init"])
