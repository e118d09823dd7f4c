"""Does a sweep's proxy separate its mixtures (`flows.steps.noise.separation`)? The trials' spread
against the seed noise of the mixtures trained again: the confirmation's new seeds (not the best
trial's own, winning run) and the replicates; each level of the verdict, the direction of a maximised
objective, and nothing said without noise."""

from __future__ import annotations

import math
import statistics

import pytest

from flows.steps.confirm import Confirmation
from flows.steps.noise import Z95, separation
from flows.steps.replicates import SeedMeans
from flows.trials.result import TrialResult
from mixture_search.mixture import Mixture

MIX = Mixture.from_dict({"a": 0.5, "b": 0.5})


def _trials(values: list[float | None]) -> list[TrialResult]:
    return [
        TrialResult(f"t{i}", MIX, "finished" if v is not None else "failed", objective=v) for i, v in enumerate(values)
    ]


def _confirmed(proposal: list[float | None], best: list[float | None]) -> Confirmation:
    seeds = list(range(1, len(proposal) + 1))
    return Confirmation(seeds=seeds, maximize=False, best_trial="t0", proposal=proposal, best=best)


def test_the_noise_comes_from_the_confirmation_seeds_and_the_mixtures_part_from_the_rest() -> None:
    trials = [3.0, 3.4, 2.6, 3.2, 2.8, None]  # a failed trial counts for nothing
    s = separation(_trials(trials), _confirmed([2.70, 2.72], [2.80, 2.84]))
    assert s is not None and s.trials == 5
    assert s.trial_std == pytest.approx(statistics.stdev([3.0, 3.4, 2.6, 3.2, 2.8]))
    # pooled over the two mixtures of the confirmation: (0.01^2*2 + 0.02^2*2) / 2 degrees of freedom
    assert s.seed_std == pytest.approx(math.sqrt((2 * 0.01**2 + 2 * 0.02**2) / 2))
    assert (s.seed_runs, s.seed_dof) == (4, 2)
    assert s.signal_std == pytest.approx(math.sqrt(s.trial_std**2 - s.seed_std**2))
    assert s.ratio == pytest.approx(s.signal_std / s.seed_std)
    assert s.band == pytest.approx(Z95 * math.sqrt(2) * s.seed_std)  # 0.062: 2.6 is 0.2 ahead of 2.8
    assert s.within_noise_of_best == 0 and s.level == "well"
    assert "4 runs, 2 degrees of freedom" in s.verdict and "a rough figure" in s.verdict
    many = _confirmed([2.70, 2.72, 2.71, 2.69], [2.80, 2.84, 2.82, 2.81])  # 6 degrees of freedom
    assert "rough" not in separation(_trials(trials), many).verdict  # type: ignore[union-attr]


def test_trials_that_differ_as_much_as_seeds_are_barely_separated() -> None:
    s = separation(_trials([3.00, 3.05, 2.95, 3.02]), _confirmed([3.0, 3.1], [2.9, 3.0]))
    assert s is not None and s.level == "barely" and s.ratio is not None and s.ratio < 1
    assert "budget.steps" in s.verdict and "confirm.seeds" in s.verdict


def test_a_trial_within_seed_noise_of_the_best_leaves_the_top_unresolved() -> None:
    # noise 0.0141 (pooled), band 0.039: 2.62 is within it of 2.60, 2.70 is not
    s = separation(_trials([2.60, 2.62, 2.70, 3.2, 3.5]), _confirmed([2.70, 2.72], [2.80, 2.78]))
    assert s is not None and (s.ratio or 0) >= 1
    assert s.within_noise_of_best == 1 and s.level == "top_within_noise"
    assert "1 other trial is within" in s.verdict


def test_a_maximised_objective_has_its_best_at_the_top() -> None:
    values = [0.30, 0.31, 0.20, 0.10]
    conf = _confirmed([0.29, 0.30], [0.30, 0.31])  # noise 0.0071, band 0.0196: 0.30 is within it of 0.31
    assert separation(_trials(values), conf, maximize=True).within_noise_of_best == 1  # type: ignore[union-attr]
    assert separation(_trials(values), conf, maximize=False).within_noise_of_best == 0  # type: ignore[union-attr]


def test_replicates_count_and_a_failed_confirmation_run_does_not() -> None:
    means = SeedMeans(results=[], objectives={"t0": [2.8, 2.9], "t1": [3.0]}, seed_std=None, replicated=["t0", "t1"])
    s = separation(_trials([2.8, 3.5, 4.2]), _confirmed([2.7, None], [2.9, 2.95]), means)
    assert s is not None
    # groups: proposal [2.7] (too few), best [2.9, 2.95], replicate t0 [2.8, 2.9], t1 [3.0] (too few)
    assert (s.seed_runs, s.seed_dof) == (4, 2)
    assert s.seed_std == pytest.approx(math.sqrt((2 * 0.025**2 + 2 * 0.05**2) / 2))


def test_without_repeated_runs_the_noise_is_unknown_and_with_one_trial_nothing_is_said() -> None:
    s = separation(_trials([3.0, 3.2]), None)
    assert s is not None and s.level == "unknown" and s.seed_std is None and s.ratio is None
    assert "search.replicates" in s.verdict
    skipped = _confirmed([], [])  # the proposal was the best trial's mixture: nothing trained again
    assert separation(_trials([3.0, 3.2]), skipped).level == "unknown"  # type: ignore[union-attr]
    assert separation(_trials([3.0, None]), _confirmed([2.7, 2.8], [2.9, 3.0])) is None
