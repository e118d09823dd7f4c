"""The real-sweep decision benchmark's summary (`benchmarks/decision_sweeps.summarize`): a goal counts
only wins beyond noise, the direction of a maximised objective is honoured, and a loss to the best trial
beyond noise fails the other goal. An export that is the best trial written to 6 decimals is judged as
the same mixture, not as a rival whose rounding moved the objective by 1e-5."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.decision_sweeps import _same_mixture, paired, summarize


def _vs(diff: float, verdict: str) -> dict[str, Any]:
    return {"diff": diff, "ci95": [diff - 0.1, diff + 0.1], "verdict": verdict}


def _case(natural: tuple[float, str], uniform: tuple[float, str], best: str = "within noise", maximize: bool = False):  # type: ignore[no-untyped-def]
    return {
        "objective": {"metric": "m", **({"maximize": True} if maximize else {})},
        "recommended_vs": {"best_trial": _vs(0.0, best), "natural": _vs(*natural), "uniform": _vs(*uniform)},
    }


def test_summary_counts_wins_beyond_noise_and_by_mean() -> None:
    cases = {
        "a": _case((-0.4, "better"), (-0.3, "better")),
        "b": _case((-0.02, "within noise"), (0.01, "within noise")),  # lower bpb wins: 1 of 2 by mean
        "c": _case((0.03, "better"), (-0.01, "within noise"), maximize=True),  # higher wins: 1 of 2 by mean
    }
    out = summarize(cases)
    assert out["goals"]["beats_natural_and_uniform_in_90pct"] == {"figure": 0.5, "met": False}
    assert out["comparisons_with_natural_and_uniform"] == {"n": 6, "better_beyond_noise": 3, "better_mean": 4}
    assert out["goals"]["never_worse_than_best_trial_beyond_noise"] == {"figure": 0, "met": True}


def test_a_loss_to_the_best_trial_beyond_noise_fails_that_goal() -> None:
    cases = {"a": _case((-0.4, "better"), (-0.3, "better"), best="worse")}
    out = summarize(cases)
    assert out["goals"]["never_worse_than_best_trial_beyond_noise"] == {"figure": 1, "met": False}
    assert out["goals"]["beats_natural_and_uniform_in_90pct"]["met"] is True


def test_an_export_of_the_best_trial_is_the_same_mixture_not_a_rival() -> None:
    best = {"a": 0.33987821821694963, "b": 0.23522301680413685, "c": 0.27093606391546277, "d": 0.15396270106345078}
    written = {"a": 0.339878, "b": 0.235223, "c": 0.270936, "d": 0.153963}  # the export's 6 decimals
    total = sum(written.values())
    assert _same_mixture({k: v / total for k, v in written.items()}, best)
    assert not _same_mixture({**written, "a": 0.3399, "d": 0.153941}, best)  # a real, if small, change
    assert not _same_mixture({"a": 0.5, "b": 0.5}, {"a": 0.5, "c": 0.5})
    scores = np.array([1.85, 1.84, 1.91])
    assert paired(scores, scores) == {"diff": 0.0, "ci95": [0.0, 0.0], "verdict": "same mixture"}
    # a consistent 5e-5 shift over seeds is beyond noise by the interval: why the same export is not trained twice
    assert paired(scores + np.array([4e-5, 5e-5, 6e-5]), scores)["verdict"] == "worse"
