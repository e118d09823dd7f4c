"""The sweep's cross-validation in a child process: the same figures as in the sweep's own process,
computed elsewhere, and a failure told in one line."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flows.steps.cv_process import cross_validate_in_process
from mixture_search import SURROGATES
from mixture_search.surrogates import cross_validate_predictions


def _runs(n: int = 12, m: int = 4) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    X = rng.dirichlet(np.ones(m), size=n)
    return X, 3.0 + X @ np.array([0.4, -0.2, 0.1, 0.0]) + rng.normal(0, 0.01, n)


def _same(surrogate: str) -> float:
    """Both ways, checked equal to the last bit but the time each took; the sweep's process's CPU seconds
    while the child computed, as a share of the child's own seconds."""
    X, y = _runs()
    here, oof_here = cross_validate_predictions(SURROGATES.build(surrogate, seed=5), X, y, folds=4, seed=5)
    cpu = time.process_time()
    there, oof_there = cross_validate_in_process(SURROGATES.build(surrogate, seed=5), X, y, folds=4, seed=5)
    share = (time.process_time() - cpu) / max(there.seconds, 1e-9)
    assert oof_there.tobytes() == oof_here.tobytes()
    assert {**there.row(), "seconds": 0} == {**here.row(), "seconds": 0}
    return share


@pytest.mark.parametrize("surrogate", ["linear", "lightgbm", "gp"])
def test_the_child_gives_what_the_same_call_gives_here(surrogate: str) -> None:
    _same(surrogate)


def test_the_sweeps_surrogate_is_cross_validated_in_the_child_not_here() -> None:
    # `auto` (what a sweep uses): a CV within each fold; the sweep's process only waits meanwhile
    assert _same("auto") < 0.2


def test_a_failing_child_is_one_line_naming_the_error() -> None:
    X, y = _runs()
    y[2] = np.nan
    with pytest.raises(RuntimeError, match=r"process failed \(exit 1\): SearchError: ") as err:
        cross_validate_in_process(SURROGATES.build("linear"), X, y, folds=3, seed=0)
    assert "\n" not in str(err.value)


def test_a_crashed_child_is_one_line_with_its_last_word(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = tmp_path / "python"  # an interpreter that dies as a crash would: no answer, a last word on stderr
    python.write_text("#!/bin/sh\necho 'warming up' >&2\necho 'out of memory here' >&2\nexit 7\n")
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    X, y = _runs()
    with pytest.raises(RuntimeError, match=r"process failed \(exit 7\): out of memory here$"):
        cross_validate_in_process(SURROGATES.build("linear"), X, y, folds=3, seed=0)
