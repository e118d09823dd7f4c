"""The data mixing law of Ye et al. (2024): loss_i(r) = c_i + k_i * exp(sum_j t_ij r_j).

For one target, f(r) = c + k * exp(t . r). Because the shares r add up to one, a common shift of t
is the same as a factor on k, so |k| is absorbed into t and only its sign is kept: f = c + s *
exp(t . r), s = +1 (a loss that falls towards a floor c) or s = -1 (a score that rises towards a
ceiling c). Both signs are fitted from several starts and the better fit kept. One law per metric
(the paper's per-domain losses) is `MultiTarget` over this surrogate.

The fit is nonlinear least squares with a small ridge on the spread of t, so it stays well-posed
with fewer runs than domains; `std` comes from the delta method (the parameter covariance of the
fit pushed through the gradient of f at each point).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.registry import check_range
from mixture_search.surrogates.base import SURROGATES, BaseSurrogate, standardise

EXP_LIMIT = 60.0  # exponents are clipped here so exp(t . r) stays finite in float64


def _exp(u: np.ndarray) -> np.ndarray:
    return np.exp(np.clip(u, -EXP_LIMIT, EXP_LIMIT))


@dataclass(frozen=True)
class MixingLawOptions:
    #: weight of the penalty on the spread of t (on unit-variance targets)
    ridge: float = 1e-3
    #: starting floors/ceilings tried per sign, as multiples of the target's range beyond its extremes
    offsets: tuple[float, ...] = (0.1, 1.0)
    #: function evaluations per parameter: of each start's short run, and of the best start's final run.
    #: Fewer runs than parameters leave the law unidentified (the fit drifts towards its linear limit and
    #: stops at the cap, with predictions that barely move after the first few hundred evaluations)
    start_evals: int = 6
    final_evals: int = 30

    def __post_init__(self) -> None:
        check_range(self.ridge, "ridge", "surrogate mixing_law", low=0.0)
        check_range(self.start_evals, "start_evals", "surrogate mixing_law", low=1)
        check_range(self.final_evals, "final_evals", "surrogate mixing_law", low=1)
        if not self.offsets or any(not isinstance(o, (int, float)) or o <= 0 for o in self.offsets):
            raise SearchError("option offsets must be positive numbers", where="surrogate mixing_law")


@SURROGATES.register("mixing_law", help="Ye et al.'s law c + k*exp(t.r), fitted by least squares; delta-method std")
class MixingLawSurrogate(BaseSurrogate):
    name = "mixing_law"
    Options = MixingLawOptions
    options: MixingLawOptions

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        # lazy: scipy.optimize takes ~0.5 s to import; the CLI imports the surrogate registry for every command
        from scipy.optimize import least_squares

        z, self._mean, self._scale = standardise(y)
        n, m = X.shape
        lam = np.sqrt(self.options.ridge)
        centre = np.eye(m) - 1.0 / m  # t - mean(t)
        span = max(float(np.ptp(z)), 1e-6)

        ridge_rows = lam * centre
        # the Jacobian's constant parts (d/dc of the data rows, the ridge rows), filled in once
        jac_template = np.zeros((n + m, m + 1))
        jac_template[:n, 0] = 1.0
        jac_template[n:, 1:] = ridge_rows

        def residuals(theta: np.ndarray, sign: float) -> np.ndarray:
            out = np.empty(n + m)
            out[:n] = theta[0] + sign * _exp(X @ theta[1:]) - z
            out[n:] = ridge_rows @ theta[1:]
            return out

        def jacobian(theta: np.ndarray, sign: float) -> np.ndarray:
            J = jac_template.copy()
            J[:n, 1:] = (sign * _exp(X @ theta[1:]))[:, None] * X
            return J

        best: tuple[float, float, np.ndarray] | None = None
        for sign in (1.0, -1.0):
            for offset in self.options.offsets:
                c0 = z.min() - offset * span if sign > 0 else z.max() + offset * span
                log_gap = np.log(sign * (z - c0))
                t0 = np.linalg.solve(X.T @ X + (lam**2 + 1e-8) * np.eye(m), X.T @ log_gap)
                # Levenberg-Marquardt: a start of the wrong sign never converges, so every start gets a
                # short run and only the best is run to convergence below
                fit = least_squares(
                    residuals,
                    np.r_[c0, t0],
                    jac=jacobian,
                    args=(sign,),
                    method="lm",
                    max_nfev=self.options.start_evals * (m + 2),
                )
                if best is None or fit.cost < best[0] - 1e-12:
                    best = (float(fit.cost), sign, fit.x)
        assert best is not None
        _, self._sign, theta = best
        theta = least_squares(
            residuals, theta, jac=jacobian, args=(self._sign,), method="lm", max_nfev=self.options.final_evals * (m + 2)
        ).x
        self._c, self._t = float(theta[0]), theta[1:].copy()
        J = jacobian(theta, self._sign)
        resid = residuals(theta, self._sign)[:n]
        dof = max(1, n - (m + 1))
        s2 = float(resid @ resid) / dof
        self._cov = s2 * np.linalg.pinv(J.T @ J)

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e = self._sign * _exp(X @ self._t)
        mean = self._c + e
        grad = np.hstack([np.ones((len(X), 1)), e[:, None] * X])
        var = np.einsum("ij,jk,ik->i", grad, self._cov, grad)
        return self._mean + self._scale * mean, self._scale * np.sqrt(np.maximum(var, 0.0))

    def describe(self) -> dict[str, Any]:
        """The law in the target's own units: f(r) = c + k * exp(t . r)."""
        return {
            **super().describe(),
            "c": self._mean + self._scale * self._c,
            "k": self._scale * self._sign,
            "t": dict(zip(self.domains, self._t.tolist())) if self.domains else self._t.tolist(),
        }
