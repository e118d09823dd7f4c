"""The sweep's cross-validation in a child process: the same figures as in the sweep's own process,
computed elsewhere, and a failure told in one line."""

from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np
import pytest

from flows.steps.cv_process import cross_validate_in_process
from mixture_search import SURROGATES
from mixture_search.surrogates import cross_validate_predictions
from mixture_search.surrogates.base import BaseSurrogate


class PidSurrogate(BaseSurrogate):
    """Predicts the id of the process that fitted it (pickled by reference: the child imports this module)."""

    name = "pid"

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        self._pid = float(os.getpid())

    def _predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.full(len(X), self._pid), np.zeros(len(X))


class FailingSurrogate(BaseSurrogate):
    name = "failing"

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        raise ValueError("no fit\nfor these runs")


class CrashingSurrogate(BaseSurrogate):
    """Ends its process as a crash would: no exception, a last word on stderr."""

    name = "crashing"

    def _fit(self, X: np.ndarray, y: np.ndarray) -> None:
        sys.stderr.write("warming up\nout of memory here\n")
        sys.stderr.flush()
        os._exit(7)


def _runs(n: int = 12, m: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.dirichlet(np.ones(m), size=n)
    return X, 3.0 + X @ np.array([0.4, -0.2, 0.1, 0.0]) + rng.normal(0, 0.01, n)


@pytest.mark.parametrize("surrogate", ["linear", "lightgbm", "gp"])
def test_the_child_gives_what_the_same_call_gives_here(surrogate: str) -> None:
    X, y = _runs()
    here, oof_here = cross_validate_predictions(SURROGATES.build(surrogate, seed=5), X, y, folds=4, seed=5)
    there, oof_there = cross_validate_in_process(SURROGATES.build(surrogate, seed=5), X, y, folds=4, seed=5)
    assert np.array_equal(oof_there, oof_here)
    assert dataclasses.replace(there, seconds=0.0) == dataclasses.replace(here, seconds=0.0)


def test_the_cv_runs_in_another_process() -> None:
    X, y = _runs()
    _, oof = cross_validate_in_process(PidSurrogate(), X, y, folds=3, seed=0)
    assert len(set(oof)) == 1 and oof[0] != os.getpid()


def test_a_failing_child_is_one_line_naming_the_error() -> None:
    X, y = _runs()
    with pytest.raises(RuntimeError, match=r"cross-validation process failed \(exit 1\): .*ValueError: no fit") as err:
        cross_validate_in_process(FailingSurrogate(), X, y, folds=3, seed=0)
    assert "\n" not in str(err.value)


def test_a_crashed_child_is_one_line_with_its_last_word() -> None:
    X, y = _runs()
    with pytest.raises(RuntimeError, match=r"process failed \(exit 7\): out of memory here$"):
        cross_validate_in_process(CrashingSurrogate(), X, y, folds=3, seed=0)
