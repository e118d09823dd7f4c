"""Optuna's TPE and GP samplers over the constrained simplex.

Sum-to-one is handled by the parametrisation, not by renormalising a box: Optuna searches the unit
cube of `SearchSpace.from_unit` (stick-breaking with conditional bounds), which maps every cube point
onto a feasible mixture and back (`to_unit`), so observations made by any sampler become Optuna
trials exactly.

Each `suggest` rebuilds an in-memory study from the observations (no Optuna state to save: the
sampler's seed for that call comes from our generator, so `state`/`restore` replay it exactly). A
batch is asked one point at a time with the constant-liar strategy: each asked point is told the best
value seen so far (or marked failed before there is one), and points suggested earlier but not yet
observed enter the study the same way, so a batch spreads out instead of repeating itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from mixture_search.registry import check_range
from mixture_search.samplers.base import SAMPLERS, BaseSampler


@contextmanager
def _quiet_optuna() -> Iterator[Any]:
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield optuna
    finally:
        optuna.logging.set_verbosity(previous)


class OptunaSampler(BaseSampler):
    def _make(self, optuna: Any, seed: int) -> Any:
        raise NotImplementedError

    def pending(self) -> np.ndarray:
        """Points suggested here that have not been observed yet."""
        if not self._obs_x:
            return self._seen
        observed = np.array(self._obs_x)
        far = [np.abs(observed - x).sum(axis=1).min() >= self.min_distance for x in self._seen]
        return self._seen[np.array(far, dtype=bool)] if len(far) else self._seen

    def _candidates(self, k: int) -> np.ndarray:
        space = self.space
        if not space.dim:
            return space.from_unit(np.zeros((1, 0)))
        seed = int(self.rng.integers(2**31 - 1))
        names = [f"u{i}" for i in range(space.dim)]
        with _quiet_optuna() as optuna:
            dist = {n: optuna.distributions.FloatDistribution(0.0, 1.0) for n in names}
            direction = "maximize" if self.maximize else "minimize"
            study = optuna.create_study(direction=direction, sampler=self._make(optuna, seed))
            best = self.best()
            liar = None if best is None else best[1]
            trials = []
            for x, y in zip(self._obs_x, self._obs_y):
                params = dict(zip(names, space.to_unit(x)[0].tolist()))
                state = optuna.trial.TrialState.COMPLETE if y is not None else optuna.trial.TrialState.FAIL
                trials.append(optuna.trial.create_trial(state=state, value=y, params=params, distributions=dist))
            for x in self.pending():
                params = dict(zip(names, space.to_unit(x)[0].tolist()))
                state = optuna.trial.TrialState.COMPLETE if liar is not None else optuna.trial.TrialState.FAIL
                trials.append(optuna.trial.create_trial(state=state, value=liar, params=params, distributions=dist))
            study.add_trials(trials)
            out = []
            for _ in range(k):
                trial = study.ask(dist)
                u = np.array([trial.params[n] for n in names])
                out.append(space.from_unit(u[None, :])[0])
                if liar is not None:
                    study.tell(trial, liar)
                else:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return np.array(out)


@dataclass(frozen=True)
class TPEOptions:
    #: random trials before TPE models the results (Optuna's default 10)
    n_startup_trials: int = 10
    multivariate: bool = True

    def __post_init__(self) -> None:
        check_range(self.n_startup_trials, "n_startup_trials", "sampler tpe", low=0)


@SAMPLERS.register("tpe", help="Optuna TPE in the simplex's stick-breaking cube; constant liar for batches")
class TPESampler(OptunaSampler):
    name = "tpe"
    Options = TPEOptions
    options: TPEOptions

    def _make(self, optuna: Any, seed: int) -> Any:
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=self.options.n_startup_trials, multivariate=self.options.multivariate
        )


@dataclass(frozen=True)
class OptunaGPOptions:
    n_startup_trials: int = 10

    def __post_init__(self) -> None:
        check_range(self.n_startup_trials, "n_startup_trials", "sampler optuna_gp", low=0)


@SAMPLERS.register("optuna_gp", help="Optuna GPSampler (needs torch) in the stick-breaking cube; constant liar")
class OptunaGPSampler(OptunaSampler):
    name = "optuna_gp"
    Options = OptunaGPOptions
    options: OptunaGPOptions

    def _make(self, optuna: Any, seed: int) -> Any:
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.options.n_startup_trials)
