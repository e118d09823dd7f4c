"""Regression surrogates on mixture shares: LightGBM (RegMix's settings), Bayesian linear, and a GP."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from mixture_search.registry import check_range
from mixture_search.surrogates.base import SURROGATES, BaseSurrogate, check_noise, standardise


@dataclass(frozen=True)
class LightGBMOptions:
    num_iterations: int = 1000
    learning_rate: float = 0.01
    num_leaves: int = 31
    #: None: LightGBM's (and RegMix's) 20, lowered to n // 10 (at least 2) for fewer than 200 runs
    min_data_in_leaf: int | None = None
    #: bagged boosters whose spread is the uncertainty (the mean is the unbagged RegMix booster)
    n_bags: int = 4
    bagging_fraction: float = 0.8

    def __post_init__(self) -> None:
        owner = "surrogate lightgbm"
        check_range(self.num_iterations, "num_iterations", owner, low=1)
        check_range(self.learning_rate, "learning_rate", owner, low=1e-6, high=1.0)
        check_range(self.num_leaves, "num_leaves", owner, low=2)
        check_range(self.n_bags, "n_bags", owner, low=0, high=64)
        check_range(self.bagging_fraction, "bagging_fraction", owner, low=0.1, high=1.0)
        if self.min_data_in_leaf is not None:
            check_range(self.min_data_in_leaf, "min_data_in_leaf", owner, low=1)


@SURROGATES.register("lightgbm", help="LightGBM with RegMix's settings (1000 rounds, lr 0.01); std from bagging")
class LightGBMSurrogate(BaseSurrogate):
    """RegMix's regressor: gbdt, L2 objective, 1000 iterations at learning rate 0.01.

    LightGBM's default `min_data_in_leaf=20` cannot split fewer than 40 runs, so every prediction is
    the mean below that: here the leaf size follows the data (n // 10, between 2 and 20), which is
    RegMix's setting from 200 runs up. The mean is one unbagged booster; `std` is the spread of
    `n_bags` boosters trained on 80% row subsamples with different seeds.
    """

    name = "lightgbm"
    Options = LightGBMOptions
    options: LightGBMOptions

    def _params(self, n: int) -> dict[str, Any]:
        o = self.options
        leaf = o.min_data_in_leaf if o.min_data_in_leaf is not None else int(np.clip(n // 10, 2, 20))
        return {
            "objective": "regression",
            "boosting_type": "gbdt",
            "learning_rate": o.learning_rate,
            "num_leaves": o.num_leaves,
            "min_data_in_leaf": leaf,
            "min_data_in_bin": 1,
            "min_sum_hessian_in_leaf": 0.0,
            "verbosity": -1,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": 1,
        }

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        self._constant: float | None = float(y[0]) if np.ptp(y) == 0 else None
        self._data = (X, y)
        self._bags: list[Any] | None = None
        if self._constant is None:
            self._main = self._train(self._params(len(y)))

    def _train(self, params: dict[str, Any]) -> Any:
        # lazy: LightGBM takes 1-2 s to import; the CLI imports the surrogate registry for every command
        import lightgbm as lgb

        X, y = self._data
        data = lgb.Dataset(X, y, params={"feature_pre_filter": False, "min_data_in_bin": 1, "verbosity": -1})
        return lgb.train(params, data, num_boost_round=self.options.num_iterations)

    def _bagged(self) -> list[Any]:
        """The bagged boosters, trained on first use (seeded, so the same whenever that is): CV and
        proposal scoring only need the mean and never pay for them."""
        if self._bags is None:
            params = self._params(len(self._data[1]))
            self._bags = [
                self._train(
                    {
                        **params,
                        "seed": self.seed + 1 + b,
                        "bagging_fraction": self.options.bagging_fraction,
                        "bagging_freq": 1,
                        "bagging_seed": self.seed + 101 + b,
                    }
                )
                for b in range(self.options.n_bags)
            ]
        return self._bags

    def _predict_mean(self, X: np.ndarray) -> np.ndarray:
        if self._constant is not None:
            return np.full(len(X), self._constant)
        return np.asarray(self._main.predict(X))

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = self._predict_mean(X)
        if self._constant is not None or self.options.n_bags < 2:
            return mean, np.zeros(len(X))
        bags = np.stack([b.predict(X) for b in self._bagged()])
        return mean, bags.std(axis=0, ddof=1)


@SURROGATES.register("linear", help="Bayesian ridge regression on the shares; std from the weight posterior")
class LinearSurrogate(BaseSurrogate):
    """Objective linear in the shares (RegMix's linear baseline), fitted as Bayesian ridge regression,
    which regularises itself and so works with fewer runs than domains."""

    name = "linear"

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        # lazy: scikit-learn takes 1-2 s to import; the CLI imports the surrogate registry for every command
        from sklearn.linear_model import BayesianRidge

        z, self._mean, self._scale = standardise(y)
        self._model = BayesianRidge(fit_intercept=True)
        self._model.fit(X, z)

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean = self._model.predict(X)
        var = np.einsum("ij,jk,ik->i", X, self._model.sigma_, X)
        return self._mean + self._scale * mean, self._scale * np.sqrt(np.maximum(var, 0.0))

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "coef": (self._scale * self._model.coef_).tolist(),
            "intercept": float(self._mean + self._scale * self._model.intercept_),
        }


@dataclass(frozen=True)
class GPOptions:
    #: one length scale per domain (needs many more runs than domains) instead of a shared one
    ard: bool = False
    restarts: int = 2
    #: inputs: the shares, or their square roots (Hellinger geometry: stretches the region near zero)
    features: Literal["shares", "sqrt"] = "shares"
    #: the run-to-run noise of one run in objective units (e.g. measured between seeds of one mixture):
    #: the fitted noise term cannot go below it, so differences within seed noise are not read as signal
    noise_std: float | None = None

    def __post_init__(self) -> None:
        check_range(self.restarts, "restarts", "surrogate gp", low=0, high=20)
        check_noise(self.noise_std, "surrogate gp")


@SURROGATES.register("gp", help="Gaussian process (Matern 5/2, fitted noise); exact posterior std")
class GPSurrogate(BaseSurrogate):
    """A Gaussian process on the shares: Matern 5/2 kernel with one length scale (bounded below at
    0.1 so that a few noisy runs cannot shrink it into a model that only interpolates noise) plus a
    fitted noise term. `std` excludes the fitted noise: it is uncertainty about the mean.
    `features="sqrt"` works on square-root shares instead (Hellinger distances). `noise_std`, a measured
    run noise, is the noise term's lower bound (as a variance of the standardised objective)."""

    name = "gp"
    Options = GPOptions
    options: GPOptions

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        # lazy: scikit-learn takes 1-2 s to import; the CLI imports the surrogate registry for every command
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        m = X.shape[1]
        scale = np.full(m, 0.5) if self.options.ard else 0.5
        z, self._mean, self._scale = standardise(y)
        floor = 1e-6
        if self.options.noise_std is not None:
            floor = max(floor, (self.options.noise_std / self._scale) ** 2)
        white = WhiteKernel(max(1e-2, floor), (floor, max(1.0, 2.0 * floor)))
        kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(scale, (0.1, 10.0), nu=2.5) + white
        self._gp = GaussianProcessRegressor(
            kernel=kernel, normalize_y=False, n_restarts_optimizer=self.options.restarts, random_state=self.seed
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self._gp.fit(self._features(X), z)
        self._noise = float(self._gp.kernel_.k2.noise_level)

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self._gp.predict(self._features(X), return_std=True)
        latent = np.sqrt(np.maximum(std**2 - self._noise, 0.0))
        return self._mean + self._scale * mean, self._scale * latent

    def _features(self, X: np.ndarray) -> np.ndarray:
        return np.sqrt(X) if self.options.features == "sqrt" else X

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "kernel": str(self._gp.kernel_)}
