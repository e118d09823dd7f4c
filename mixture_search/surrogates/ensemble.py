"""An ensemble of surrogates, and `auto`: the surrogate with the best cross-validated Spearman."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixture_search.errors import SearchError
from mixture_search.registry import check_range
from mixture_search.surrogates.base import (
    SURROGATES,
    BaseSurrogate,
    Surrogate,
    build_surrogate,
    check_noise,
    predict_mean,
)
from mixture_search.surrogates.cv import CVResult, fold_ids, out_of_fold, result

DEFAULT_MEMBERS = ("mixing_law", "gp", "lightgbm")
DEFAULT_CANDIDATES = ("lightgbm", "linear", "mixing_law", "gp", "ensemble")


def _check_names(names: tuple[str, ...], option: str, owner: str, *, allow: tuple[str, ...] = ()) -> None:
    if not names:
        raise SearchError(f"option {option} is empty", where=owner)
    banned = {"auto"} | ({"ensemble"} - set(allow))
    for name in names:
        if name not in SURROGATES or name in banned:
            raise SearchError(f"option {option}: {name!r} cannot be used here", where=owner)


@dataclass(frozen=True)
class EnsembleOptions:
    members: tuple[str, ...] = DEFAULT_MEMBERS
    #: a measured run noise, passed to the members that model it (see `build_surrogate`)
    noise_std: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        _check_names(self.members, "members", "surrogate ensemble")
        check_noise(self.noise_std, "surrogate ensemble")


def combine(means: np.ndarray, stds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equal-weight mixture of the members' predictive distributions: mean of means, and a variance
    that adds the members' own uncertainty to their disagreement."""
    mean = means.mean(axis=0)
    var = (stds**2).mean(axis=0) + means.var(axis=0)
    return mean, np.sqrt(var)


@SURROGATES.register(
    "ensemble", help="equal-weight ensemble (default mixing_law + gp + lightgbm); std adds disagreement"
)
class EnsembleSurrogate(BaseSurrogate):
    name = "ensemble"
    Options = EnsembleOptions
    options: EnsembleOptions

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        noise = self.options.noise_std
        self._members: list[Surrogate] = [
            build_surrogate(n, seed=self.seed, noise_std=noise).fit(X, y) for n in self.options.members
        ]

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        preds = [m.predict(X) for m in self._members]
        return combine(np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds]))

    def _predict_mean(self, X: np.ndarray) -> np.ndarray:
        return np.mean([predict_mean(m, X) for m in self._members], axis=0)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "members": [getattr(m, "describe", lambda: {})() for m in self._members]}


@dataclass(frozen=True)
class AutoOptions:
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    folds: int = 5
    #: a measured run noise, passed to the candidates that model it (see `build_surrogate`)
    noise_std: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "candidates", tuple(self.candidates))
        _check_names(self.candidates, "candidates", "surrogate auto", allow=("ensemble",))
        check_range(self.folds, "folds", "surrogate auto", low=2, high=100)
        check_noise(self.noise_std, "surrogate auto")


@SURROGATES.register("auto", help="picks the candidate with the best K-fold cross-validated Spearman, refits it")
class AutoSurrogate(BaseSurrogate):
    """Model choice by K-fold cross-validated Spearman (ties go to the earlier candidate).

    The ensemble's out-of-fold predictions are combined from its members' (the folds are the same),
    so it costs nothing extra when its members are candidates too. After fitting, `cv` holds every
    candidate's scores, `oof` their out-of-fold predictions, `chosen` the winner and `model` the
    winner refitted on all runs.
    """

    name = "auto"
    Options = AutoOptions
    options: AutoOptions

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        ids = fold_ids(X, self.options.folds, self.seed)
        folds = int(ids.max()) + 1
        noise = self.options.noise_std
        oof: dict[str, tuple[np.ndarray, float]] = {}

        def get(name: str) -> tuple[np.ndarray, float]:
            if name not in oof:
                if name == "ensemble":
                    members = [get(m) for m in EnsembleOptions().members]
                    start = time.perf_counter()
                    mean = np.mean([m[0] for m in members], axis=0)
                    oof[name] = (mean, sum(m[1] for m in members) + time.perf_counter() - start)
                else:
                    oof[name] = out_of_fold(build_surrogate(name, seed=self.seed, noise_std=noise), X, y, ids)
            return oof[name]

        self.cv: list[CVResult] = []
        for name in self.options.candidates:
            mean, seconds = get(name)
            self.cv.append(result(name, y, mean, folds, seconds, self.seed))
        self.oof = {name: oof[name][0] for name in self.options.candidates}
        best = max(self.cv, key=lambda r: r.rank_score)  # first of equals wins
        self.chosen = best.surrogate
        self.model: Surrogate = build_surrogate(self.chosen, seed=self.seed, noise_std=noise).fit(X, y)

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.model.predict(X)

    def _predict_mean(self, X: np.ndarray) -> np.ndarray:
        return predict_mean(self.model, X)

    @property
    def best_cv(self) -> CVResult:
        return next(r for r in self.cv if r.surrogate == self.chosen)

    def describe(self) -> dict[str, Any]:
        inner: dict[str, Any] = getattr(self.model, "describe", dict)()
        return {**super().describe(), "chosen": self.chosen, "cv": [r.row() for r in self.cv], "model": inner}
