"""The real-sweep decision benchmark's summary (`benchmarks/decision_sweeps.summarize`): a goal counts
only wins beyond noise, the direction of a maximised objective is honoured, and a loss to the best trial
beyond noise fails the other goal."""

from __future__ import annotations

from typing import Any

from benchmarks.decision_sweeps import summarize


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
