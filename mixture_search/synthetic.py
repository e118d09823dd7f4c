"""Synthetic ground truth for testing and benchmarking the search: the data mixing law with noise.

Each domain i has a validation loss L_i(r) = c_i + k_i * exp(sum_j t_ij r_j) (Ye et al., 2024),
with a strong benefit from its own data (t_ii < 0), mostly mild transfer from the others (t_ij
around -0.3, sometimes interference) and floors c_i that differ by domain. The objective is the mean
of the domain losses (or a weighted sum of them: `weights`), a sum of exponentials that no
single-exponential law fits exactly. A "run" adds noise as a proxy run does: a run-level term shared
by every domain (data order, init) and an independent term per domain (finite validation sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from mixture_search.space import SearchSpace


@dataclass(frozen=True)
class MixingLawProblem:
    c: np.ndarray  # (m,) loss floors
    k: np.ndarray  # (m,) scales
    t: np.ndarray  # (m, m) t[i, j]: effect of domain j's share on domain i's loss
    run_noise: float = 0.01
    domain_noise: float = 0.01

    @classmethod
    def random(cls, m: int, seed: int, *, run_noise: float = 0.01, domain_noise: float = 0.01) -> MixingLawProblem:
        rng = np.random.default_rng(seed)
        c = rng.uniform(1.5, 3.0, m)
        k = rng.uniform(0.4, 1.5, m)
        t = rng.normal(-0.3, 0.4, (m, m))
        t[np.diag_indices(m)] = -rng.uniform(1.5, 4.0, m)
        return cls(c=c, k=k, t=t, run_noise=run_noise, domain_noise=domain_noise)

    @property
    def m(self) -> int:
        return len(self.c)

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(f"d{i:02d}" for i in range(self.m))

    def space(self, **kwargs: object) -> SearchSpace:
        return SearchSpace(domains=self.domains, **kwargs)  # type: ignore[arg-type]

    def losses(self, X: np.ndarray) -> np.ndarray:
        """Noise-free per-domain losses, (n, m)."""
        X = np.atleast_2d(X)
        return self.c + self.k * np.exp(X @ self.t.T)

    def objective(self, X: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Noise-free objective, (n,): the mean domain loss, or `weights` (m,) @ the domain losses."""
        L = self.losses(X)
        return L.mean(axis=1) if weights is None else L @ np.asarray(weights, dtype=np.float64)

    def run(self, X: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """What proxy runs would report: (objective, per-domain losses) with noise."""
        L = self.losses(X)
        L = L + self.run_noise * rng.standard_normal((len(L), 1)) + self.domain_noise * rng.standard_normal(L.shape)
        return L.mean(axis=1), L

    def optimum(
        self, space: SearchSpace, *, weights: np.ndarray | None = None, starts: int = 8, seed: int = 0
    ) -> tuple[np.ndarray, float]:
        """The best feasible mixture for `objective(X, weights)`. Each loss is the exponential of a
        linear function, so any non-negative weighting is convex and SLSQP from a few starts finds it."""
        w = np.full(self.m, 1.0 / self.m) if weights is None else np.asarray(weights, dtype=np.float64)
        rng = np.random.default_rng(seed)
        lo, hi = space.lower, space.upper
        best_x, best_f = None, np.inf
        for x0 in space.sample_uniform(rng, starts):
            res = minimize(
                lambda x: float(self.objective(x, weights)[0]),
                x0,
                jac=lambda x: (w * self.k * np.exp(self.t @ x)) @ self.t,
                bounds=list(zip(lo, hi)),
                constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": lambda x: np.ones_like(x)}],
                method="SLSQP",
                options={"ftol": 1e-12, "maxiter": 500},
            )
            x = space.project(res.x)
            f = float(self.objective(x, weights)[0])
            if f < best_f:
                best_x, best_f = x, f
        assert best_x is not None
        return best_x, best_f
