"""Surrogates that see the scale of a run (model parameters N, training tokens D) beside its mixture.

A mixture is chosen for a model many times larger than its proxies, and the ranking of mixtures
moves with scale (a scarce domain that helps a small model is repeated, and helps less, in a large
one). These models take each run's scale as a separate typed argument, so the scale-free protocol
(`fit(X, y)`, `predict(X)`) stays as it is:

    model = SURROGATES.build("scale_law").fit(X, y, scales=S)      # S: (n, 2) params, tokens
    mean, std = model.predict(X_new, scales=S_new)
    model.at(Scale(1.4e9, 100e9)).predict(X_new)                   # a scale-free view at one scale

`scale_law` is a mixing law nested in a scaling law, plus a Gaussian-process residual:

    f(r, s) = c + exp(t0 . r + sum_a (t_a . r) x_a),   x_a = log(N / N_ref), log(D / D_ref)

Per mixture this is a power law in N and D, f = c + A(r) N^-alpha(r) ..., whose coefficient and
exponents are Ye et al.'s exp-linear mixing law in the shares; at any one scale it is that mixing
law. The ridge on the spread of t_a shrinks the mixture-dependent part of the exponents towards
zero (rankings that do not move with scale), so a few scales cannot make it extrapolate wildly. The
residual of the law is modelled by a GP on (shares, x) with one length scale per input: what the law
misses about one mixture at one scale carries to its neighbours in mixture and scale, so a mixture
trained at the smaller scales is predicted at the larger one from its own runs, not only from the
law (a smoothed version of the naive transfer when the law has nothing to add).

The x_a are the directions in (log N, log D) that the training runs span: with every run at the same
tokens, log N alone; with a ladder that grows both together (D = 20 N), one direction along it. The
model cannot learn a trend along a direction the runs do not vary in, and projects a target off
their span onto it (predicting as if, say, the target had the training runs' tokens).

`scale_law_repeat` is a scale law over repetition-discounted shares, by default with one power law per
domain in place of the exp-linear one (option `law`) and the decay fitted: given each domain's unique
tokens (option `domain_tokens`), a run of D tokens sees domain k's share r_k as worth
`effective_tokens(D r_k, U_k) / D`, each epoch past the first worth less (Muennighoff et al.'s decay),
so a target that repeats a scarce domain many times is predicted to gain less from it than its
proxies, which read it once. `auto` considers it when the tokens are known (`scale_candidates`).

`fidelity` is the transfer a sweep's ladder needs: many runs at the smallest scale, a few at the larger
ones. The scales are fidelities (Kennedy and O'Hagan's autoregressive co-kriging): the smallest scale's
runs give the shape of the mixture landscape, and each larger scale is an affine map of the one below
plus a GP of what its few runs show differs; it predicts the largest scale's ranking beyond it.
`largest_scale` is the naive transfer as a model: a scale-free surrogate fitted on the runs of the
largest scale only. `scale_lightgbm` is LightGBM on the shares plus log N and log D (the usual
regression baseline). `holdout_largest_scale` scores any of these, or a scale-free surrogate (used
naively), by fitting on the smaller scales and ranking the runs of the largest (a naive one fitted on
no more runs than it will be once chosen: `as_deployed`); `choose_by_largest_scale` picks among them
by that Spearman, keeping the best transfer (`fidelity` first, so it wins ties) unless a law beats it by
`AWARE_MARGIN`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.registry import check_range
from mixture_search.surrogates.base import (
    SURROGATES,
    BaseSurrogate,
    Features,
    Surrogate,
    as_matrix,
    as_target,
    build_surrogate,
    check_noise,
    predict_mean,
    standardise,
)
from mixture_search.surrogates.cv import CVResult, result
from mixture_search.surrogates.mixing_law import EXP_LIMIT
from mixture_search.surrogates.models import LightGBMSurrogate

AXES = ("params", "tokens")


@dataclass(frozen=True)
class Scale:
    """The size of one training run: model parameters and training tokens (both > 0)."""

    params: float
    tokens: float

    def __post_init__(self) -> None:
        for name in AXES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise SearchError(f"{value!r} is not a number", where=f"scale {name}")
            if not (np.isfinite(value) and value > 0):
                raise SearchError(f"{value!r} must be a positive number", where=f"scale {name}")
            object.__setattr__(self, name, float(value))

    @property
    def compute(self) -> float:
        """6 N D: the order used for 'largest'."""
        return 6.0 * self.params * self.tokens

    def row(self) -> np.ndarray:
        return np.array([self.params, self.tokens])


Scales = np.ndarray | Sequence[Scale]


def as_scales(scales: Scales, n: int) -> np.ndarray:
    """(n, 2) positive finite params and tokens; one-line errors name the row and the field."""
    if not isinstance(scales, np.ndarray) and len(scales) and isinstance(scales[0], Scale):
        arr = np.array([s.row() for s in scales])
    else:
        arr = np.asarray(scales, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise SearchError(f"scales must be an (n, 2) array of params, tokens; got shape {arr.shape}")
    if len(arr) != n:
        raise SearchError(f"{len(arr)} scales for {n} runs")
    bad = ~(np.isfinite(arr) & (arr > 0))
    for r, a in zip(*np.nonzero(bad)):
        raise SearchError(f"row {int(r)}: {float(arr[r, a])!r} must be a positive number", where=f"scale {AXES[a]}")
    return arr


def scale_keys(scales: np.ndarray) -> np.ndarray:
    """log(6 N D) per run, rounded so that equal scales compare equal."""
    return np.round(np.log(6.0 * scales[:, 0] * scales[:, 1]), 9)


@runtime_checkable
class ScaleSurrogate(Protocol):
    """A surrogate whose fit and predict take the runs' scales."""

    name: str
    domains: tuple[str, ...] | None
    scale_aware: bool

    def fit(self, X: Features, y: Sequence[float] | np.ndarray, *, scales: Scales | None = None) -> Any: ...

    def predict(self, X: Features, *, scales: Scales | None = None) -> tuple[np.ndarray, np.ndarray]: ...

    def clone(self) -> Any: ...


def is_scale_aware(model: Any) -> bool:
    return bool(getattr(model, "scale_aware", False))


class ScaleAwareBase(BaseSurrogate):
    """Shared plumbing: shares as in `BaseSurrogate`, plus an (n, 2) scales array. Without scales
    every run is taken to be at one scale (and predictions are at that scale)."""

    scale_aware: ClassVar[bool] = True
    #: whether it predicts a ranking that moves beyond the largest training scale (a law in scale) or
    #: transfers the largest scale's ranking (`choose_by_largest_scale` treats the two kinds apart)
    extrapolates: ClassVar[bool] = True

    def __init__(self, *, seed: int = 0, **options: Any) -> None:
        super().__init__(seed=seed, **options)
        self.scales: np.ndarray | None = None  # of the training runs

    def fit(self, X: Features, y: Sequence[float] | np.ndarray, *, scales: Scales | None = None) -> Self:
        matrix, domains = as_matrix(X, None)
        target = as_target(y, len(matrix))
        if len(matrix) < 2:
            raise SearchError(f"need at least 2 runs to fit a surrogate, got {len(matrix)}")
        S = np.ones((len(matrix), 2)) if scales is None else as_scales(scales, len(matrix))
        self.domains, self.n_train, self.scales = domains, len(matrix), S
        self._fit_scaled(matrix, target, S)
        self._fitted = True
        return self

    def predict(self, X: Features, *, scales: Scales | None = None) -> tuple[np.ndarray, np.ndarray]:
        matrix, S = self._inputs(X, scales)
        mean, std = self._predict_scaled(matrix, S)
        return np.asarray(mean, dtype=np.float64), np.maximum(np.asarray(std, dtype=np.float64), 0.0)

    def predict_mean(self, X: Features, *, scales: Scales | None = None) -> np.ndarray:
        matrix, S = self._inputs(X, scales)
        return np.asarray(self._predict_mean_scaled(matrix, S), dtype=np.float64)

    def at(self, scale: Scale) -> AtScale:
        """A scale-free view that predicts every mixture at `scale` (for the proposal)."""
        return AtScale(self, scale)

    @property
    def largest(self) -> Scale:
        """The largest training scale (by 6 N D)."""
        if self.scales is None:
            raise SearchError(f"surrogate {self.name} is not fitted yet")
        row = self.scales[int(np.argmax(scale_keys(self.scales)))]
        return Scale(float(row[0]), float(row[1]))

    def _inputs(self, X: Features, scales: Scales | None) -> tuple[np.ndarray, np.ndarray]:
        if not self._fitted or self.scales is None:
            raise SearchError(f"surrogate {self.name} is not fitted yet")
        matrix, _ = as_matrix(X, self.domains)
        S = np.tile(self.largest.row(), (len(matrix), 1)) if scales is None else as_scales(scales, len(matrix))
        return matrix, S

    # -- for subclasses ----------------------------------------------------------------------------
    def _fit_scaled(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_scaled(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _predict_mean_scaled(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        return self._predict_scaled(X, S)[0]

    # the scale-free hooks are never reached: fit and predict above replace the base's
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:  # pragma: no cover
        raise AssertionError("unreachable")

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise AssertionError("unreachable")


class AtScale:
    """A fitted scale-aware model seen as a scale-free surrogate at one scale (`predict(X)`)."""

    def __init__(self, model: ScaleAwareBase, scale: Scale) -> None:
        self.model, self.scale = model, scale
        self.name = f"{model.name}@{scale.params:.3g},{scale.tokens:.3g}"
        self.domains = model.domains

    def _tile(self, X: Features) -> np.ndarray:
        return np.tile(self.scale.row(), (len(X), 1))

    def fit(self, X: Features, y: Sequence[float] | np.ndarray) -> AtScale:
        raise SearchError("a model at a fixed scale is fitted through its scale-aware model", where=self.name)

    def predict(self, X: Features) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(X, scales=self._tile(X))

    def predict_mean(self, X: Features) -> np.ndarray:
        return self.model.predict_mean(X, scales=self._tile(X))

    def clone(self) -> AtScale:
        return AtScale(self.model, self.scale)


# -- the nested law ---------------------------------------------------------------------------------


def _exp(u: np.ndarray) -> np.ndarray:
    return np.exp(np.clip(u, -EXP_LIMIT, EXP_LIMIT))


#: the mixing laws a scale law nests (option `law`):
#: - exp_linear: f = c + exp(t0 . r + sum_a (t_a . r) x_a) (Ye et al.'s law, its exponents moving with scale)
#: - power: f = c + exp(u0 + u . x) + exp(v . x) sum_k exp(a_k) (r_k + exp(d_k))^-g: a scaling term common to
#:   every mixture plus one power law per domain in its own share (as in BiMix and in Chinchilla-style
#:   per-domain laws), the mixture's part shrinking with scale at its own rate; options ridge and
#:   scale_ridge hold the exp-linear law only
LAWS = ("exp_linear", "power")


@dataclass(frozen=True)
class ScaleLawOptions:
    #: weight of the penalty on the spread of t0 (the mixing law at the reference scale)
    ridge: float = 1e-2
    #: weight of the penalty on the spread of each t_a: how hard the ranking is held still across scale
    scale_ridge: float = 0.1
    #: starting floors/ceilings tried per sign, as multiples of the target's range beyond its extremes
    offsets: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)
    #: model the law's residual with a GP on (shares, log scale)
    residual: bool = True
    restarts: int = 1
    #: lower bound of the residual GP's length scale along log scale (natural-log units): what the law
    #: misses about a mixture is expected to persist over at least this span of scale
    scale_length: float = 1.0
    #: the run-to-run noise of one run (objective units): the residual GP's noise cannot go below it
    noise_std: float | None = None
    #: how the mixture enters: "exp_linear" (Ye et al.'s mixing law, c + exp(t . r) per scale) or "power"
    #: (a power law in each domain's share plus a term common to every mixture; see `LAWS`)
    law: str = "exp_linear"

    def __post_init__(self) -> None:
        owner = "surrogate scale_law"
        if self.law not in LAWS:
            raise SearchError(f"option law: {self.law!r} is not one of {', '.join(LAWS)}", where=owner)
        object.__setattr__(self, "offsets", tuple(self.offsets))
        check_range(self.ridge, "ridge", owner, low=0.0)
        check_range(self.scale_ridge, "scale_ridge", owner, low=0.0)
        check_range(self.restarts, "restarts", owner, low=0, high=20)
        check_range(self.scale_length, "scale_length", owner, low=0.01, high=50.0)
        if not self.offsets or any(
            isinstance(o, bool) or not isinstance(o, (int, float)) or o <= 0 for o in self.offsets
        ):
            raise SearchError("option offsets must be positive numbers", where=owner)
        check_noise(self.noise_std, owner)


@SURROGATES.register(
    "scale_law",
    help="mixing law nested in a scaling law, c + exp(t0.r + sum_a (t_a.r) log scale_a), plus a GP residual "
    "on (shares, log scale); fit(X, y, scales=...)",
)
class ScaleLawSurrogate(ScaleAwareBase):
    name = "scale_law"
    Options = ScaleLawOptions
    options: ScaleLawOptions

    def _axes(self, S: np.ndarray) -> np.ndarray:
        """log(scale / reference) along the directions the training runs vary in."""
        return (np.log(S) - self._ref) @ self._directions

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> None:
        # the directions in (log N, log D) that the training runs span: none for one scale, one for a
        # ladder that grows N and D together (tokens = 20 N, say: their separate effects cannot be
        # told apart, and a prediction off that line is projected onto it), two otherwise
        logS = np.log(S)
        self._ref = np.median(logS, axis=0)
        _, sv, vt = np.linalg.svd(logS - logS.mean(axis=0), full_matrices=False)
        keep = sv > 1e-6 * max(1.0, float(np.abs(logS).max()))
        signs = np.where(vt[keep].sum(axis=1) < 0, -1.0, 1.0)  # each direction points towards larger scales
        self._directions = (vt[keep] * signs[:, None]).T
        x = self._axes(S)
        shares = self._law_shares(X, S)
        self._law_fit(shares, y, x)
        if self.options.residual:
            self._gp_fit(X, x, y - self._law(shares, x))

    def _law_shares(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        """What the law sees of each run's mixture (the shares; a subclass may discount them). The
        residual always sees the shares themselves: what the law misses belongs to the mixture."""
        return X

    def _design(self, X: np.ndarray, x: np.ndarray) -> np.ndarray:
        """[r, r * x_1, r * x_2 ...]: the exponent is linear in these."""
        return np.hstack([X, *(X * x[:, [a]] for a in range(x.shape[1]))])

    def _law_fit(self, X: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        if self.options.law == "power":
            self._power_fit(X, y, x)
        else:
            self._exp_linear_fit(X, y, x)

    def _law(self, X: np.ndarray, x: np.ndarray) -> np.ndarray:
        if self.options.law == "power":
            return self._mean + self._scale * self._power(self._theta, self._sign, X, x)
        return self._mean + self._scale * (self._c + self._sign * _exp(self._design(X, x) @ self._t))

    def _exp_linear_fit(self, X: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        # lazy: scipy.optimize takes ~0.5 s to import; the CLI imports the surrogate registry for every command
        from scipy.optimize import least_squares

        z, self._mean, self._scale = standardise(y)
        n, m = X.shape
        F = self._design(X, x)
        k = F.shape[1]
        centre = np.eye(m) - 1.0 / m
        weights = [np.sqrt(self.options.ridge)] + [np.sqrt(self.options.scale_ridge)] * x.shape[1]
        penalty = np.zeros((k, k))
        for b, w in enumerate(weights):
            penalty[b * m : (b + 1) * m, b * m : (b + 1) * m] = w * centre
        span = max(float(np.ptp(z)), 1e-6)

        def residuals(theta: np.ndarray, sign: float) -> np.ndarray:
            return np.concatenate([theta[0] + sign * _exp(F @ theta[1:]) - z, penalty @ theta[1:]])

        def jacobian(theta: np.ndarray, sign: float) -> np.ndarray:
            e = sign * _exp(F @ theta[1:])
            top = np.hstack([np.ones((n, 1)), e[:, None] * F])
            return np.vstack([top, np.hstack([np.zeros((k, 1)), penalty])])

        best: tuple[float, float, np.ndarray] | None = None
        for sign in (1.0, -1.0):
            for offset in self.options.offsets:
                c0 = z.min() - offset * span if sign > 0 else z.max() + offset * span
                gap = np.log(sign * (z - c0))
                t0 = np.linalg.solve(F.T @ F + penalty.T @ penalty + 1e-8 * np.eye(k), F.T @ gap)
                # a short run per start; only the best start is run to convergence below
                fit = least_squares(
                    residuals, np.r_[c0, t0], jac=jacobian, args=(sign,), method="lm", max_nfev=20 * (k + 2)
                )
                if best is None or fit.cost < best[0] - 1e-12:
                    best = (float(fit.cost), sign, fit.x)
        assert best is not None
        _, self._sign, theta = best
        fit = least_squares(residuals, theta, jac=jacobian, args=(self._sign,), method="lm", max_nfev=200 * (k + 2))
        self._c, self._t = float(fit.x[0]), fit.x[1:].copy()

    # -- law "power" ------------------------------------------------------------------------------------
    # theta = [c, u0, u (axes), v (axes), a (m), d (m), log g]

    @staticmethod
    def _power_parts(theta: np.ndarray, X: np.ndarray, x: np.ndarray) -> dict[str, Any]:
        m, axes = X.shape[1], x.shape[1]
        u0, u, v = theta[1], theta[2 : 2 + axes], theta[2 + axes : 2 + 2 * axes]
        a, d, g = (
            theta[2 + 2 * axes : 2 + 2 * axes + m],
            theta[2 + 2 * axes + m : 2 + 2 * axes + 2 * m],
            np.exp(theta[-1]),
        )
        base = X + _exp(d)[None, :]
        terms = _exp(a)[None, :] * _exp(-g * np.log(base))  # exp(a_k) (r_k + exp(d_k))^-g
        return {"common": _exp(u0 + x @ u), "shrink": _exp(x @ v), "terms": terms, "base": base, "g": g, "d": d}

    def _power(self, theta: np.ndarray, sign: float, X: np.ndarray, x: np.ndarray) -> np.ndarray:
        p = self._power_parts(theta, X, x)
        return theta[0] + sign * (p["common"] + p["shrink"] * p["terms"].sum(axis=1))

    def _power_fit(self, X: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
        from scipy.optimize import least_squares  # lazy, as in _exp_linear_fit

        z, self._mean, self._scale = standardise(y)
        n, m = X.shape
        axes = x.shape[1]
        span = max(float(np.ptp(z)), 1e-6)

        def residuals(theta: np.ndarray, sign: float) -> np.ndarray:
            return self._power(theta, sign, X, x) - z

        def jacobian(theta: np.ndarray, sign: float) -> np.ndarray:
            p = self._power_parts(theta, X, x)
            mixed = p["shrink"][:, None] * p["terms"]  # each domain's term at each run
            return sign * np.hstack(
                [
                    np.full((n, 1), sign),  # c (the sign cancels)
                    p["common"][:, None],
                    p["common"][:, None] * x,
                    mixed.sum(axis=1)[:, None] * x,
                    mixed,
                    mixed * (-p["g"]) * _exp(p["d"])[None, :] / p["base"],
                    (mixed * -np.log(p["base"])).sum(axis=1)[:, None] * p["g"],
                ]
            )

        # loss falls with scale towards a floor: sign +1 and both scale exponents at most 0. Unbounded, two
        # scales let a rising common term cancel a falling floor (c far below every run): the fit is as
        # good at the runs and its prediction at a larger scale millions of times too large
        self._sign = sign = 1.0
        upper = np.r_[np.full(2, np.inf), np.zeros(2 * axes), np.full(2 * m + 1, np.inf)]
        bounds = (np.full(len(upper), -np.inf), upper)
        best: tuple[float, np.ndarray] | None = None
        for offset in self.options.offsets:
            c0 = z.min() - offset * span
            start = np.r_[
                c0,
                np.log(offset * span + span / 2),  # the common term carries most of the level
                np.full(axes, -0.3),
                np.full(axes, -0.3),
                np.full(m, np.log(span / m / 5)),
                np.full(m, np.log(0.05)),
                np.log(0.3),
            ]
            fit = least_squares(residuals, start, jac=jacobian, args=(sign,), bounds=bounds, method="trf", max_nfev=300)
            if best is None or fit.cost < best[0] - 1e-12:
                best = (float(fit.cost), fit.x)
        assert best is not None
        self._theta = least_squares(
            residuals, best[1], jac=jacobian, args=(sign,), bounds=bounds, method="trf", max_nfev=3000
        ).x

    def _gp_fit(self, X: np.ndarray, x: np.ndarray, resid: np.ndarray) -> None:
        # lazy: scikit-learn takes 1-2 s to import; the CLI imports the surrogate registry for every command
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        self._rscale = float(np.std(resid)) or 1.0
        floor = 1e-6
        if self.options.noise_std is not None:
            floor = max(floor, (self.options.noise_std / self._rscale) ** 2)
        lengths = np.r_[np.full(X.shape[1], 0.5), np.full(x.shape[1], max(3.0, self.options.scale_length))]
        lo = np.r_[np.full(X.shape[1], 0.05), np.full(x.shape[1], self.options.scale_length)]
        bounds = np.column_stack([lo, np.full(len(lo), max(100.0, 2 * self.options.scale_length))])
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(lengths, bounds, nu=2.5) + WhiteKernel(
            max(5e-2, floor), (floor, max(1.0, 2.0 * floor))
        )
        self._gp = GaussianProcessRegressor(
            kernel=kernel, n_restarts_optimizer=self.options.restarts, random_state=self.seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._gp.fit(np.hstack([X, x]), resid / self._rscale)
        self._noise = float(self._gp.kernel_.k2.noise_level)

    def _predict_scaled(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self._axes(S)
        law = self._law(self._law_shares(X, S), x)
        if not self.options.residual:
            return law, np.zeros(len(X))
        mean, std = self._gp.predict(np.hstack([X, x]), return_std=True)
        latent = np.sqrt(np.maximum(std**2 - self._noise, 0.0))
        return law + self._rscale * mean, self._rscale * latent

    def _predict_mean_scaled(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        x = self._axes(S)
        law = self._law(self._law_shares(X, S), x)
        return law + self._rscale * self._gp.predict(np.hstack([X, x])) if self.options.residual else law

    def describe(self) -> dict[str, Any]:
        """The law in the target's units: f = c + k exp(t0 . r + sum_a (t_a . r) x_a), or for law "power"
        its parameters as in `LAWS` (f = c + k (its bracket), the bracket in standardised units)."""
        return {
            **super().describe(),
            "k": self._scale * self._sign,
            "reference": dict(zip(AXES, np.exp(self._ref).tolist())),
            # x_a = (log params - log ref params, log tokens - log ref tokens) . direction_a
            "directions": [dict(zip(AXES, d.tolist())) for d in self._directions.T],
            **self._law_parameters(),
            "residual_kernel": str(self._gp.kernel_) if self.options.residual else None,
        }

    def _law_parameters(self) -> dict[str, Any]:
        """c and the fitted law's own parameters, per domain where they are."""
        axes = self._directions.shape[1]
        if self.options.law == "power":
            th = self._theta
            m = (len(th) - 2 - 2 * axes - 1) // 2
            labels = list(map(str, self.domains)) if self.domains else [str(i) for i in range(m)]
            return {
                "law": "power",
                "c": self._mean + self._scale * th[0],
                "u0": float(th[1]),
                "u": th[2 : 2 + axes].tolist(),
                "v": th[2 + axes : 2 + 2 * axes].tolist(),
                "a": dict(zip(labels, th[2 + 2 * axes : 2 + 2 * axes + m].tolist())),
                "d": dict(zip(labels, th[2 + 2 * axes + m : 2 + 2 * axes + 2 * m].tolist())),
                "g": float(np.exp(th[-1])),
            }
        m = len(self._t) // (1 + axes)
        names = list(map(str, self.domains)) if self.domains else [str(i) for i in range(m)]
        blocks = {"t0": self._t[:m]}
        for a in range(axes):
            blocks[f"t_{a + 1}"] = self._t[(a + 1) * m : (a + 2) * m]
        return {
            "c": self._mean + self._scale * self._c,
            **{key: dict(zip(names, v.tolist())) for key, v in blocks.items()},
        }


# -- the nested law over repetition-discounted shares ---------------------------------------------------

#: R*_D of Muennighoff et al. (2023), "Scaling Data-Constrained Language Models": the epochs over which
#: the worth of repeated tokens decays (fitted on their runs; data beyond ~4 epochs is worth markedly less)
REPEAT_DECAY = 15.4


def effective_tokens(seen: np.ndarray, unique: np.ndarray, decay: float = REPEAT_DECAY) -> np.ndarray:
    """What `seen` tokens of a domain of `unique` tokens are worth: the first epoch at face value, each
    later epoch less (Muennighoff et al.'s exponential decay, `decay` = R*): at most (1 + R*) x unique."""
    epochs = seen / unique
    repeated = np.maximum(epochs - 1.0, 0.0)
    return (np.minimum(epochs, 1.0) + decay * (1.0 - np.exp(-repeated / decay))) * unique


#: option repeat_decay's rules for a decay the runs decide (`ScaleLawRepeatSurrogate`)
DECAY_RULES = ("weigh", "fit")


@dataclass(frozen=True)
class ScaleLawRepeatOptions(ScaleLawOptions):
    #: the unique tokens of each domain, in the order of the shares (required)
    domain_tokens: tuple[float, ...] = ()
    #: R*: the epochs over which repeated tokens lose their worth; "weigh": every one of `repeat_decays`,
    #: each weighted by how well its law fits the runs (`weigh_decays`); or "fit": one of them, chosen by
    #: ranking the largest training scale from the smaller ones (`choose_decay`)
    repeat_decay: float | str = "weigh"
    #: the values "weigh" and "fit" try; "fit" keeps the published R* (15.4) unless another ranks better
    #: by `decay_margin`
    repeat_decays: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, REPEAT_DECAY, 50.0)
    #: for "fit": how much better (Spearman at the held-out scale) another R* must rank than the published one
    decay_margin: float = 0.01
    #: held harder than scale_law's: across scale the ranking moves through repetition, and mixture-
    #: specific trends of the exponent are only what repetition does not explain
    scale_ridge: float = 10.0
    #: per-domain power laws: a domain's repeated epochs lower its own term, which an exp-linear law in
    #: the shares cannot follow far
    law: str = "power"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = "surrogate scale_law_repeat"
        object.__setattr__(self, "domain_tokens", tuple(self.domain_tokens))
        if not self.domain_tokens:
            raise SearchError("option domain_tokens: give the unique tokens of every domain", where=owner)
        for i, v in enumerate(self.domain_tokens):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (np.isfinite(v) and v > 0):
                raise SearchError(f"option domain_tokens: entry {i} is {v!r}, not a positive number", where=owner)
        if self.repeat_decay not in DECAY_RULES:
            if isinstance(self.repeat_decay, str):
                raise SearchError(
                    f"option repeat_decay: {self.repeat_decay!r} is not a number, 'weigh' or 'fit'", where=owner
                )
            check_range(self.repeat_decay, "repeat_decay", owner, low=0.1, high=1000.0)
        object.__setattr__(self, "repeat_decays", tuple(self.repeat_decays))
        if not self.repeat_decays:
            raise SearchError("option repeat_decays: give at least one value", where=owner)
        for v in self.repeat_decays:
            check_range(v, "repeat_decays", owner, low=0.1, high=1000.0)
        check_range(self.decay_margin, "decay_margin", owner, low=0.0, high=2.0)


@SURROGATES.register(
    "scale_law_repeat",
    help="scale_law over each domain's repetition-discounted share (option domain_tokens: the unique "
    "tokens per domain; a run of D tokens sees domain k's share r_k as worth(D r_k)/D, repeated epochs "
    "decaying as in Muennighoff et al.; option repeat_decay: the decay in epochs, or fit (default) to choose it "
    "by ranking the largest scale from the smaller ones)",
)
class ScaleLawRepeatSurrogate(ScaleLawSurrogate):
    """The ranking of mixtures moves with scale mostly because a large run repeats the scarce domains
    that a small one reads once. Knowing each domain's unique tokens, this model gives the nested law
    the share each domain is *worth* in a run of D tokens, `effective_tokens(D r_k, U_k) / D`, instead
    of the share read: at a proxy's size the two agree, at the target's a domain read for many epochs
    counts for less. The residual (on the shares read) is scale_law's; the law is one power law per
    domain (option law "power"), whose own term loses what repetition takes. The decay R* comes from
    the runs: by default (option repeat_decay "weigh", `weigh_decays`) the model is the weighted mean
    of one such model per R*, each weighted by how well its law fits the runs."""

    name = "scale_law_repeat"
    Options = ScaleLawRepeatOptions
    options: ScaleLawRepeatOptions

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> None:
        self._check_domains(X)
        #: for "weigh": (R*, weight, the model with that R*), the weights summing to 1
        self.members: list[tuple[float, float, ScaleLawRepeatSurrogate]] = []
        self.decay_scores: dict[float, float] = {}  # "fit": each R*'s Spearman; "weigh": its law's RMSE
        if self.options.repeat_decay == "weigh":
            self.weigh_decays(X, y, S)
            return
        if self.options.repeat_decay == "fit":
            self.decay, self.decay_scores = self.choose_decay(X, y, S)
        else:
            self.decay = float(self.options.repeat_decay)
        super()._fit_scaled(X, y, S)

    def weigh_decays(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> None:
        """Option repeat_decay "weigh": fit one model per R* in `repeat_decays` and weigh each by the
        likelihood of its law on the runs (Gaussian errors, the variance that of the best-fitting law or
        `noise_std` squared if larger): w ~ exp(-n (MSE - min MSE) / (2 variance)). Runs at two small
        scales often cannot tell the decays apart; the models then share the prediction instead of one
        R* taking it on a small difference. `decay` is the weighted geometric mean of the R*s (for
        reports)."""
        fixed = dataclasses.asdict(self.options)
        fitted = []
        for decay in self.options.repeat_decays:
            member = type(self)(seed=self.seed, **{**fixed, "repeat_decay": float(decay)}).fit(X, y, scales=S)
            fitted.append((float(decay), member, member.law_mse(X, y, S)))
        mse = np.array([f[2] for f in fitted])
        variance = max(float(mse.min()), (self.options.noise_std or 0.0) ** 2, 1e-300)
        weights = np.exp(-len(y) * (mse - mse.min()) / (2.0 * variance))
        weights /= weights.sum()
        keep = weights >= 1e-4  # a member this light moves no prediction: it is not kept
        share = weights[keep].sum()
        self.members = [(d, float(w / share), m) for (d, m, _), w, k in zip(fitted, weights, keep) if k]
        self.decay_scores = {d: float(np.sqrt(e)) for d, _, e in fitted}
        self.decay = float(np.exp(sum(w * np.log(d) for d, w, _ in self.members)))

    def law_mse(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> float:
        """The mean squared error of the fitted law alone (no residual) on runs (X, y, S)."""
        return float(np.mean((y - self._law(self._law_shares(X, S), self._axes(S))) ** 2))

    def _predict_scaled(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.members:
            return super()._predict_scaled(X, S)
        w = np.array([weight for _, weight, _ in self.members])
        mu, sd = map(np.array, zip(*(m._predict_scaled(X, S) for _, _, m in self.members)))
        mean = w @ mu
        second = w @ (sd**2 + mu**2)  # the mixture's variance: the members' own plus their spread
        return mean, np.sqrt(np.maximum(second - mean**2, 0.0))

    def _predict_mean_scaled(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        if not self.members:
            return super()._predict_mean_scaled(X, S)
        w = np.array([weight for _, weight, _ in self.members])
        return np.asarray(w @ np.array([m._predict_mean_scaled(X, S) for _, _, m in self.members]))

    def choose_decay(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> tuple[float, dict[float, float]]:
        """R* for option repeat_decay "fit": each of `repeat_decays` is scored by fitting on the scales
        below the largest and ranking the largest (Spearman). The published R* is kept unless another
        ranks better by more than `decay_margin`; it is also what runs at one scale, or a largest scale
        of fewer than 3 runs, get (they say nothing about repetition). Returns (R*, the scores)."""
        try:
            split_largest(S)
        except SearchError:
            return REPEAT_DECAY, {}
        fixed = {**dataclasses.asdict(self.options), "restarts": 0}
        scored = {
            float(decay): holdout_largest_scale(
                type(self)(seed=self.seed, **{**fixed, "repeat_decay": decay}), X, y, S, seed=self.seed
            )[0].rank_score
            for decay in self.options.repeat_decays
        }
        best = max(scored.values())
        near = [d for d, v in scored.items() if v >= best - self.options.decay_margin]
        # among the near-best, the one closest to the published value (in log epochs)
        return min(near, key=lambda d: abs(np.log(d / REPEAT_DECAY))), scored

    def _check_domains(self, X: np.ndarray) -> None:
        if len(self.options.domain_tokens) != X.shape[1]:
            raise SearchError(
                f"option domain_tokens: {len(self.options.domain_tokens)} counts for {X.shape[1]} domains",
                where=f"surrogate {self.name}",
            )

    def _law_shares(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        self._check_domains(X)
        tokens = S[:, [1]]
        return effective_tokens(tokens * X, np.asarray(self.options.domain_tokens), self.decay) / tokens

    def describe(self) -> dict[str, Any]:
        if self.members:  # "weigh": the heaviest model's law, and every R*'s weight and law RMSE
            heaviest = max(self.members, key=lambda member: member[1])[2]
            return {
                **heaviest.describe(),
                "repeat_decay": "weigh",
                "repeat_decay_mean": self.decay,
                "repeat_decay_weights": {f"{d:g}": round(w, 4) for d, w, _ in self.members},
                "repeat_decay_law_rmse": {f"{d:g}": round(v, 6) for d, v in self.decay_scores.items()},
            }
        return {
            **super().describe(),
            "repeat_decay": self.decay,
            "repeat_decay_scores": {f"{d:g}": round(v, 4) for d, v in self.decay_scores.items()},
        }


# -- the anchors as models ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LargestScaleOptions:
    #: the scale-free surrogate fitted on the largest scale's runs
    surrogate: str = "gp"

    def __post_init__(self) -> None:
        if self.surrogate not in SURROGATES or is_scale_aware_name(self.surrogate):
            raise SearchError(
                f"option surrogate: {self.surrogate!r} is not a scale-free surrogate", where=OWNER_LARGEST
            )


OWNER_LARGEST = "surrogate largest_scale"


def is_scale_aware_name(name: str) -> bool:
    return bool(getattr(SURROGATES.factory(name), "scale_aware", False))


def _fit_one_scale(
    name: str, seed: int, X: np.ndarray, y: np.ndarray, rows: np.ndarray, which: str, owner: str
) -> Surrogate:
    """The scale-free surrogate `name` fitted on the runs `rows` of one scale (`which`: for the error, which
    needs at least 2 runs)."""
    if rows.sum() < 2:
        raise SearchError(
            f"the {which} scale has {int(rows.sum())} run; a scale-free model needs at least 2", where=owner
        )
    return build_surrogate(name, seed=seed).fit(X[rows], y[rows])


@SURROGATES.register(
    "largest_scale",
    help="the naive transfer: a scale-free surrogate (option surrogate, default gp) fitted on the largest "
    "scale's runs only; predicts the same at every scale",
)
class LargestScaleSurrogate(ScaleAwareBase):
    name = "largest_scale"
    Options = LargestScaleOptions
    options: LargestScaleOptions
    extrapolates: ClassVar[bool] = False

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> None:
        keys = scale_keys(S)
        self.model = _fit_one_scale(
            self.options.surrogate, self.seed, X, y, keys == keys.max(), "largest", OWNER_LARGEST
        )

    def _predict_scaled(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(X)

    def _predict_mean_scaled(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        return predict_mean(self.model, X)

    def describe(self) -> dict[str, Any]:
        inner: dict[str, Any] = getattr(self.model, "describe", dict)()
        return {**super().describe(), "model": inner}


@dataclass(frozen=True)
class FidelityOptions:
    #: the scale-free surrogate of the smallest scale, and of each larger scale's discrepancy
    surrogate: str = "gp"
    #: the discrepancy's model (a GP by default: it interpolates what the larger scale's runs add)
    discrepancy: str = "gp"

    def __post_init__(self) -> None:
        for field in ("surrogate", "discrepancy"):
            name = getattr(self, field)
            if name not in SURROGATES or is_scale_aware_name(name):
                raise SearchError(f"option {field}: {name!r} is not a scale-free surrogate", where=OWNER_FIDELITY)


OWNER_FIDELITY = "surrogate fidelity"


@SURROGATES.register(
    "fidelity",
    help="multi-fidelity transfer: each larger scale = a + b x the scale below + a GP on what differs "
    "(Kennedy-O'Hagan); predicts the largest scale's ranking from every scale's runs",
)
class FidelitySurrogate(ScaleAwareBase):
    """The ladder's scales as fidelities (Kennedy and O'Hagan's autoregressive co-kriging): the smallest
    scale is a scale-free surrogate of its runs, and each larger scale k+1 is

        f_{k+1}(r) = a_k + b_k f_k(r) + delta_k(r)

    with (a_k, b_k) fitted by least squares on scale k+1's runs and delta_k a scale-free surrogate (a GP)
    of what is left. The many cheap runs of the smallest scale give the shape of the mixture landscape,
    the few runs of a larger scale correct it where they were trained, and the correction carries to
    their neighbours. At or beyond the largest scale it predicts the largest scale's ranking (a naive
    transfer, from all runs rather than the largest scale's alone); below, the scale at or under it.

    Held out on a two-scale ladder (`holdout_largest_scale`), it is the smallest scale's model alone: once
    deployed it is that model plus the correction, so its held-out score is the conservative one."""

    name = "fidelity"
    Options = FidelityOptions
    options: FidelityOptions
    extrapolates: ClassVar[bool] = False

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> None:
        keys = scale_keys(S)
        self._levels = np.unique(keys)
        low = keys == self._levels[0]
        self._base = _fit_one_scale(self.options.surrogate, self.seed, X, y, low, "smallest", OWNER_FIDELITY)
        self._steps: list[tuple[float, float, Surrogate | None]] = []
        for level in self._levels[1:]:
            rows = keys == level
            below = self._walk(X[rows], np.full(int(rows.sum()), len(self._steps)), with_std=False)[0]
            a, b = _affine(below, y[rows])
            rest = y[rows] - (a + b * below)
            delta = None
            if rows.sum() >= 2 and np.ptp(rest) > 0:
                delta = build_surrogate(self.options.discrepancy, seed=self.seed).fit(X[rows], rest)
            self._steps.append((a, b, delta))

    def _depth(self, S: np.ndarray) -> np.ndarray:
        """Each row's level: the largest fitted scale at or below it (the smallest for anything below it)."""
        return np.maximum(np.searchsorted(self._levels, scale_keys(S) + 1e-9, side="right") - 1, 0)

    def _walk(self, X: np.ndarray, depth: np.ndarray, with_std: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean (and std) of each row at its level `depth` (0: the smallest scale), up the chain of steps.
        Std: the base's, carried through each step's slope, and each discrepancy's, in quadrature."""
        if with_std:
            mean, std = (np.asarray(v, dtype=np.float64) for v in self._base.predict(X))
        else:
            mean, std = np.asarray(predict_mean(self._base, X), dtype=np.float64), None
        for level, (a, b, delta) in enumerate(self._steps, start=1):
            up = depth >= level
            if not up.any():
                break
            if delta is None:
                d_mean, d_std = np.zeros(len(X)), np.zeros(len(X))
            elif with_std:
                d_mean, d_std = delta.predict(X)
            else:
                d_mean, d_std = predict_mean(delta, X), None
            mean = np.where(up, a + b * mean + d_mean, mean)
            if std is not None:
                std = np.where(up, np.sqrt((b * std) ** 2 + np.asarray(d_std) ** 2), std)
        return mean, std

    def _predict_mean_scaled(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        return self._walk(X, self._depth(S), with_std=False)[0]

    def _predict_scaled(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self._walk(X, self._depth(S), with_std=True)
        assert std is not None
        return mean, std

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "steps": [{"a": round(a, 6), "b": round(b, 6), "discrepancy": d is not None} for a, b, d in self._steps],
        }


def _affine(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of y = a + b x by least squares; b = 1 (a shift) when x does not vary or there are 2 runs
    or fewer, and b >= 0: a larger scale that reversed the smaller one's ranking wholesale is left to the
    discrepancy, not read off a handful of runs."""
    if len(x) <= 2 or np.ptp(x) <= 1e-12:
        return float(np.mean(y - x)), 1.0
    b = max(float(np.polyfit(x, y, 1)[0]), 0.0)
    return float(np.mean(y) - b * np.mean(x)), b


@SURROGATES.register("scale_lightgbm", help="LightGBM (RegMix's settings) on the shares plus log params and log tokens")
class ScaleLightGBMSurrogate(ScaleAwareBase):
    """The regression baseline: RegMix's LightGBM with the log scale as two more features. Trees
    cannot extrapolate, so beyond the largest training scale it predicts that scale's ranking."""

    name = "scale_lightgbm"
    Options = LightGBMSurrogate.Options

    def _features(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        return np.hstack([X, np.log(S)])

    def _fit_scaled(self, X: np.ndarray, y: np.ndarray, S: np.ndarray) -> None:
        self._inner = LightGBMSurrogate(seed=self.seed, **dataclasses.asdict(self.options))
        self._inner._fit(self._features(X, S), y)

    def _predict_scaled(self, X: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._inner._predict(self._features(X, S))

    def _predict_mean_scaled(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        return self._inner._predict_mean(self._features(X, S))


# -- cross-validation that holds out the largest scale ------------------------------------------------

#: `fidelity` first: of transfers that tie held out it uses the most runs (on the public 5Mix runs shaped as a
#: sweep's ladder it ranks the held-out size best: benchmarks/results/scale.json, `sweep_design`)
DEFAULT_SCALE_CANDIDATES = ("fidelity", "scale_law", "scale_lightgbm", "gp", "mixing_law", "lightgbm", "linear")


def scale_candidates(domain_tokens: Sequence[float] | None = None) -> tuple[str, ...]:
    """What `auto` chooses among: the defaults, and `scale_law_repeat` when the domains' unique tokens are known."""
    return DEFAULT_SCALE_CANDIDATES + (() if domain_tokens is None else ("scale_law_repeat",))


def split_largest(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masks (train, test): test is the largest scale by 6 N D, train every smaller one."""
    keys = scale_keys(scales)
    distinct = np.unique(keys)
    if len(distinct) < 2:
        raise SearchError("holding out the largest scale needs runs at 2 or more scales, got 1")
    test = keys == distinct[-1]
    if test.sum() < 3:
        raise SearchError(f"the largest scale has {int(test.sum())} runs; ranking them needs at least 3")
    return ~test, test


def holdout_predictions(model: Any, X: np.ndarray, y: np.ndarray, scales: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Mean predictions for the runs outside `train`, by a clone of `model` fitted on `train`. A
    scale-aware model gets the scales. A scale-free one (or `largest_scale`) is used naively: fitted on
    runs of the largest scale in `train` only, it predicts the same ranking at any scale; it is scored as
    it will be used (`as_deployed`): on as many runs as the held-out scale has."""
    fresh = model.clone()
    test = ~train
    if isinstance(fresh, LargestScaleSurrogate):  # its scale-free model, fitted as below
        fresh = build_surrogate(fresh.options.surrogate, seed=fresh.seed)
    elif is_scale_aware(fresh):
        fresh.fit(X[train], y[train], scales=scales[train])
        return np.asarray(fresh.predict_mean(X[test], scales=scales[test]), dtype=np.float64)
    keys = scale_keys(scales[train])
    rows = as_deployed(X, np.flatnonzero(train)[keys == keys.max()], np.flatnonzero(test))
    if len(rows) < 2:
        raise SearchError(f"the largest fitted scale has {len(rows)} run; a scale-free model needs at least 2")
    return predict_mean(fresh.fit(X[rows], y[rows]), X[test])


def as_deployed(X: np.ndarray, rows: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The runs among `rows` (of the largest fitted scale) that a scale-free model is scored with. Once
    chosen, it is fitted on the largest scale's runs alone (`LargestScaleSurrogate`), often only a few in
    a ladder, and ranks mixtures mostly never trained there. So it is scored the same way: on at most as
    many runs as the held-out scale (`test`) has, mixtures it does not hold first (in run order). Scored
    on more, a model that needs many runs (a linear fit of every domain's share) looks better held out
    than it is once fitted on the few."""
    held = {X[i].tobytes() for i in test}
    first = sorted(rows.tolist(), key=lambda i: X[i].tobytes() in held)  # stable: run order within each
    return np.asarray(sorted(first[: len(test)]), dtype=np.int64)


def holdout_largest_scale(
    model: Any, X: Features, y: Sequence[float] | np.ndarray, scales: Scales, *, seed: int = 0
) -> tuple[CVResult, np.ndarray]:
    """Fit on every scale below the largest and score the ranking of the largest scale's runs
    (Spearman, Pearson, MAE, RMSE, pairwise; `folds` is 1). Returns the scores and the predictions."""
    matrix, _ = as_matrix(X, None)
    target = as_target(y, len(matrix))
    S = as_scales(scales, len(matrix))
    train, test = split_largest(S)
    start = time.perf_counter()
    pred = holdout_predictions(model, matrix, target, S, train)
    return result(model.name, target[test], pred, 1, time.perf_counter() - start, seed), pred


#: how much better (held-out Spearman) a model of (mixture, scale) must rank the largest scale than the
#: best naive transfer (a scale-free candidate fitted on the largest scale) to replace it
AWARE_MARGIN = 0.01


def choose_by_largest_scale(
    X: Features,
    y: Sequence[float] | np.ndarray,
    scales: Scales,
    *,
    candidates: Sequence[str] | None = None,
    seed: int = 0,
    domain_tokens: Sequence[float] | None = None,
) -> tuple[ScaleAwareBase, list[CVResult], str]:
    """Score every candidate by `holdout_largest_scale`, refit the winner on all runs (a scale-free
    winner as `largest_scale`: fitted on the largest scale's runs), and return (model, every candidate's
    scores, the winner's name). The winner is the best transfer (`fidelity`, `largest_scale` or a
    scale-free candidate: the largest scale's ranking, predicted) unless a law (`extrapolates`) ranks the
    held-out scale better by more than `AWARE_MARGIN`: a law that extrapolates
    in scale replaces the ranking seen at the largest scale only on evidence. Ties go to the earlier
    candidate. `domain_tokens` (each domain's unique tokens) adds `scale_law_repeat` to the default
    candidates and is its option."""
    names = tuple(candidates) if candidates is not None else scale_candidates(domain_tokens)
    if not names:
        raise SearchError("no candidate surrogates to choose from")
    options = {} if domain_tokens is None else {"scale_law_repeat": {"domain_tokens": tuple(domain_tokens)}}

    def build(name: str) -> Any:
        return SURROGATES.build(name, seed=seed, **options.get(name, {}))

    rows = [holdout_largest_scale(build(name), X, y, scales, seed=seed)[0] for name in names]

    def extrapolates(name: str) -> bool:
        return bool(getattr(SURROGATES.factory(name), "extrapolates", False))

    winner = max((r for r in rows if extrapolates(r.surrogate)), key=lambda r: r.rank_score, default=None)
    naive = max((r for r in rows if not extrapolates(r.surrogate)), key=lambda r: r.rank_score, default=None)
    if winner is None or (naive is not None and winner.rank_score <= naive.rank_score + AWARE_MARGIN):
        winner = naive
    assert winner is not None  # names is not empty
    best = winner.surrogate
    chosen: ScaleAwareBase = (
        build(best) if is_scale_aware_name(best) else LargestScaleSurrogate(seed=seed, surrogate=best)
    )
    return chosen.fit(X, y, scales=scales), rows, best


__all__ = [
    "AWARE_MARGIN",
    "DEFAULT_SCALE_CANDIDATES",
    "AtScale",
    "LargestScaleSurrogate",
    "Scale",
    "ScaleAwareBase",
    "ScaleLawRepeatSurrogate",
    "ScaleLawSurrogate",
    "ScaleLightGBMSurrogate",
    "ScaleSurrogate",
    "as_deployed",
    "as_scales",
    "choose_by_largest_scale",
    "effective_tokens",
    "holdout_largest_scale",
    "is_scale_aware",
    "scale_candidates",
    "split_largest",
]
