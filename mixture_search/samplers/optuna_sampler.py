"""Optuna's TPE and GP samplers over the constrained simplex.

Sum-to-one is handled by the parametrisation, not by renormalising a box: Optuna searches the unit
cube of `SearchSpace.from_unit` (stick-breaking with conditional bounds), which maps every cube point
onto a feasible mixture and back (`to_unit`), so observations made by any sampler become Optuna
trials exactly.

Each `suggest` rebuilds an in-memory study from the observations (no Optuna state to save: the
sampler's seed for that call comes from our generator, so `state`/`restore` replay it exactly). A
batch is asked one point at a time and every asked point stays a running trial, as do points
suggested earlier but not observed yet: TPE treats running trials with its constant-liar rule and
Optuna's GPSampler with q-batch expected improvement, so a batch spreads out instead of repeating
itself.
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
    # lazy: the sampler registry is imported by the CLI, which need not pay for Optuna
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
    max_rounds = 5  # an Optuna batch is costly: give up on new points sooner than the cheap designs

    def _make(self, optuna: Any, seed: int) -> Any:
        raise NotImplementedError

    def suggest(self, n: int) -> list[Any]:
        self._asked: list[np.ndarray] = []  # asked in this call but not taken (duplicates): stay pending
        return super().suggest(n)

    def pending(self) -> np.ndarray:
        """Points suggested (or asked in this call) that have not been observed yet."""
        points = np.vstack([self._seen, *[a[None, :] for a in getattr(self, "_asked", [])]])
        if not self._obs_x or not len(points):
            return points
        observed = np.array(self._obs_x)
        far = np.array([np.abs(observed - x).sum(axis=1).min() >= self.min_distance for x in points])
        return points[far]

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
            states = optuna.trial.TrialState
            trials = []
            for x, y in zip(self._obs_x, self._obs_y):
                params = dict(zip(names, space.to_unit(x)[0].tolist()))
                state = states.COMPLETE if y is not None else states.FAIL
                trials.append(optuna.trial.create_trial(state=state, value=y, params=params, distributions=dist))
            for x in self.pending():
                params = dict(zip(names, space.to_unit(x)[0].tolist()))
                trials.append(optuna.trial.create_trial(state=states.RUNNING, params=params, distributions=dist))
            study.add_trials(trials)
            out: list[np.ndarray] = []
            for _ in range(k):
                trial = study.ask(dist)  # stays RUNNING: the next ask of the batch accounts for it
                u = np.array([trial.params[n] for n in names])
                x = space.from_unit(u[None, :])[0]
                if not self.is_new(x) or any(np.abs(x - o).sum() < self.min_distance for o in out):
                    # acquisition maxima often sit on a face of the cube, where a known mixture is:
                    # step off it a little rather than ask again
                    u = np.clip(u + 0.02 * self.rng.standard_normal(len(u)), 0.0, 1.0)
                    x = space.from_unit(u[None, :])[0]
                out.append(x)
        self._asked.extend(out)
        return np.array(out)


@dataclass(frozen=True)
class TPEOptions:
    #: random trials before TPE models the results (Optuna's default 10)
    n_startup_trials: int = 10
    multivariate: bool = True

    def __post_init__(self) -> None:
        check_range(self.n_startup_trials, "n_startup_trials", "sampler tpe", low=0)


@SAMPLERS.register("tpe", help="Optuna TPE (multivariate, constant liar) in the simplex's stick-breaking cube")
class TPESampler(OptunaSampler):
    name = "tpe"
    Options = TPEOptions
    options: TPEOptions

    def _make(self, optuna: Any, seed: int) -> Any:
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=self.options.n_startup_trials,
            multivariate=self.options.multivariate,
            constant_liar=True,
        )


@dataclass(frozen=True)
class OptunaGPOptions:
    n_startup_trials: int = 10

    def __post_init__(self) -> None:
        check_range(self.n_startup_trials, "n_startup_trials", "sampler optuna_gp", low=0)


@SAMPLERS.register("optuna_gp", help="Optuna GPSampler (needs torch; q-batch EI) in the stick-breaking cube")
class OptunaGPSampler(OptunaSampler):
    name = "optuna_gp"
    Options = OptunaGPOptions
    options: OptunaGPOptions

    def _make(self, optuna: Any, seed: int) -> Any:
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.options.n_startup_trials)
