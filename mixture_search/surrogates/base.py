"""The surrogate protocol: `fit(X, y)` then `predict(X) -> (mean, std)`.

X is a list of `Mixture`s (columns follow the first mixture's domain order, and `predict` aligns
mixtures by name) or an (n, m) array of weights (each row is normalised to shares). `std` is the
model's own uncertainty about the *mean* objective at each point (not the run-to-run noise): it is
what expected improvement and uncertainty sampling need.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.mixture import Mixture
from mixture_search.registry import Registry, make_options

Features = Sequence[Mixture] | np.ndarray


@runtime_checkable
class Surrogate(Protocol):
    name: str
    domains: tuple[str, ...] | None

    def fit(self, X: Features, y: Sequence[float] | np.ndarray) -> Surrogate: ...

    def predict(self, X: Features) -> tuple[np.ndarray, np.ndarray]: ...

    def clone(self) -> Surrogate: ...

    def spec(self) -> dict[str, Any]: ...  # name, seed and options: what rebuilds it (`persist.build`)


def predict_mean(model: Any, X: Features) -> np.ndarray:
    """Only the mean: a fast path for models whose std is costly (LightGBM's bagged boosters)."""
    fast = getattr(model, "predict_mean", None)
    return np.asarray(fast(X) if fast is not None else model.predict(X)[0], dtype=np.float64)


SURROGATES: Registry[Surrogate] = Registry("surrogate")


def build_surrogate(name: str, *, seed: int = 0, noise_std: float | None = None) -> Surrogate:
    """`SURROGATES.build(name, seed=seed)`, and `noise_std` (the run-to-run noise of one run, e.g. the
    standard deviation between seeds of one mixture) for the surrogates that model run noise: those
    whose options have a `noise_std` field (gp; ensemble and auto pass it on to their members)."""
    if noise_std is None or not takes_noise(name):
        return SURROGATES.build(name, seed=seed)
    return SURROGATES.build(name, seed=seed, noise_std=float(noise_std))


def takes_noise(name: str) -> bool:
    options = getattr(SURROGATES.factory(name), "Options", None)
    return options is not None and any(f.name == "noise_std" for f in dataclasses.fields(options))


def check_noise(value: float | None, owner: str) -> None:
    """A measured run noise is a finite standard deviation >= 0 (None: not measured)."""
    if value is not None and not (np.isfinite(value) and value >= 0):
        raise SearchError(f"option noise_std={value!r} must be a finite standard deviation >= 0", where=owner)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    pass


class BaseSurrogate:
    """Shared plumbing: feature alignment, input checks, cloning and a JSON-able spec."""

    name: ClassVar[str] = ""
    Options: ClassVar[type] = NoOptions

    def __init__(self, *, seed: int = 0, **options: Any) -> None:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise SearchError(f"seed {seed!r} is not an integer", where=f"surrogate {self.name}")
        self.seed = int(seed)
        self.options: Any = make_options(self.Options, options, f"surrogate {self.name}")
        self.domains: tuple[str, ...] | None = None
        self.n_train = 0
        self._fitted = False

    # -- protocol ----------------------------------------------------------------------------------
    def fit(self, X: Features, y: Sequence[float] | np.ndarray) -> Self:
        matrix, domains = as_matrix(X, None)
        target = as_target(y, len(matrix))
        if len(matrix) < 2:
            raise SearchError(f"need at least 2 runs to fit a surrogate, got {len(matrix)}")
        self.domains = domains
        self.n_train = len(matrix)
        self._fit(matrix, target)
        self._fitted = True
        return self

    def predict(self, X: Features) -> tuple[np.ndarray, np.ndarray]:
        if not self._fitted:
            raise SearchError(f"surrogate {self.name} is not fitted yet")
        matrix, _ = as_matrix(X, self.domains)
        mean, std = self._predict(matrix)
        return np.asarray(mean, dtype=np.float64), np.maximum(np.asarray(std, dtype=np.float64), 0.0)

    def predict_mean(self, X: Features) -> np.ndarray:
        """The mean alone (`predict(X)[0]`), skipping the std where that costs extra."""
        if not self._fitted:
            raise SearchError(f"surrogate {self.name} is not fitted yet")
        matrix, _ = as_matrix(X, self.domains)
        return np.asarray(self._predict_mean(matrix), dtype=np.float64)

    def clone(self) -> BaseSurrogate:
        """A fresh, unfitted copy with the same seed and options."""
        return type(self)(seed=self.seed, **dataclasses.asdict(self.options))

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, "seed": self.seed, "options": dataclasses.asdict(self.options)}

    def describe(self) -> dict[str, Any]:
        """What was fitted, for reports (subclasses add their parameters)."""
        return {"name": self.name, "n_train": self.n_train}

    @property
    def fitted(self) -> bool:
        return self._fitted

    # -- for subclasses ----------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _predict_mean(self, X: np.ndarray) -> np.ndarray:
        return self._predict(X)[0]


def as_matrix(X: Features, domains: tuple[str, ...] | None) -> tuple[np.ndarray, tuple[str, ...] | None]:
    """(n, m) shares and the domain order. Mixtures are aligned to `domains` when given."""
    if isinstance(X, np.ndarray) or (len(X) and not isinstance(X[0], Mixture)):
        arr = np.asarray(X, dtype=np.float64)
        if arr.ndim != 2:
            raise SearchError(f"features must be a 2-d array (runs x domains), got shape {arr.shape}")
        if domains is not None and arr.shape[1] != len(domains):
            raise SearchError(f"features have {arr.shape[1]} columns, the model was fitted on {len(domains)} domains")
        if not np.all(np.isfinite(arr)) or (arr < 0).any():
            raise SearchError("weights must be finite and >= 0")
        sums = arr.sum(axis=1, keepdims=True)
        if (sums <= 0).any():
            raise SearchError(f"row {int(np.argmax(sums[:, 0] <= 0))}: all weights are zero")
        return arr / sums, domains
    mixtures: Sequence[Mixture] = X
    if not mixtures:
        return np.zeros((0, len(domains or ()))), domains
    names = domains if domains is not None else mixtures[0].names
    known = set(names)
    out = np.empty((len(mixtures), len(names)))
    for r, mix in enumerate(mixtures):
        strangers = [n for n in mix if n not in known]
        if strangers:
            raise SearchError(f"run {r}: domain not seen when the model was fitted", where=strangers[0])
        out[r] = mix.to_array(names)
    return out, tuple(names)


def as_target(y: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    target = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(target) != n:
        raise SearchError(f"{len(target)} target values for {n} runs")
    bad = np.flatnonzero(~np.isfinite(target))
    if len(bad):
        raise SearchError(f"target of run {int(bad[0])} is {target[bad[0]]} (drop failed runs before fitting)")
    return target


def standardise(y: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(z, mean, scale): models fit on unit-scale targets whatever the metric's units."""
    mean = float(np.mean(y))
    scale = float(np.std(y))
    if scale <= 1e-12 * max(1.0, abs(mean)):
        scale = 1.0
    return (y - mean) / scale, mean, scale
