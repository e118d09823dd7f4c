"""The proxy-budget study's arithmetic (`benchmarks/proxy_budget.py`): rank agreement with the target,
the spread of the mixtures against the pooled seed noise, and the mixtures within noise of the best."""

from __future__ import annotations

import math

import pytest

from benchmarks.proxy_budget import changed_budget, parse_budget, summarize
from trainers.budget import TrainBudget

TARGET = {"a": 3.0, "b": 3.1, "c": 3.2, "d": 3.4}


def test_a_proxy_that_ranks_as_the_target_scores_one_and_a_reversed_one_minus_one() -> None:
    same = {"a": [3.30, 3.32], "b": [3.40, 3.42], "c": [3.50, 3.52], "d": [3.70, 3.72]}
    assert summarize(same, TARGET)["spearman_vs_target"] == 1.0
    reversed_ = {"a": [3.70, 3.72], "b": [3.50, 3.52], "c": [3.40, 3.42], "d": [3.30, 3.32]}
    assert summarize(reversed_, TARGET)["spearman_vs_target"] == -1.0


def test_spread_noise_and_the_mixtures_within_noise_of_the_best() -> None:
    runs = {"a": [3.30, 3.32], "b": [3.31, 3.33], "c": [3.50, 3.52], "d": [3.70, 3.72]}
    row = summarize(runs, TARGET)
    # every mixture's two seeds differ by 0.02: the pooled standard deviation of one run is 0.02 / sqrt(2)
    noise = 0.02 / math.sqrt(2)
    assert row["seed_noise"] == pytest.approx(noise, abs=1e-4)
    means = [3.31, 3.32, 3.51, 3.71]
    spread = math.sqrt(sum((m - sum(means) / 4) ** 2 for m in means) / 3)
    assert row["spread"] == pytest.approx(spread, abs=1e-4)
    assert row["spread_over_noise"] == pytest.approx(spread / noise, abs=0.01)
    # band for means of 2 seeds: 1.96 x sqrt(2 / 2) x noise = 0.0277: b (0.01 behind) is within it, c is not
    assert row["within_noise_of_best"] == 1
    assert row["means"] == {"a": 3.31, "b": 3.32, "c": 3.51, "d": 3.71}


def test_one_seed_has_no_noise_estimate() -> None:
    row = summarize({n: [v] for n, v in TARGET.items()}, TARGET)
    assert row["seed_noise"] is None and row["spread_over_noise"] is None and row["within_noise_of_best"] is None


def test_budget_changes_parse_and_malformed_ones_exit() -> None:
    assert parse_budget("steps=120,eval_windows_per_domain=16") == {"steps": 120, "eval_windows_per_domain": 16}
    assert parse_budget("lr=1e-3") == {"lr": 0.001}
    with pytest.raises(SystemExit, match="steps"):
        parse_budget("steps")
    with pytest.raises(SystemExit, match="steps=many"):
        parse_budget("steps=many")


def test_budget_changes_apply_and_unknown_fields_or_refused_values_exit() -> None:
    base = TrainBudget(steps=40)
    change, budget = changed_budget(base, "steps=120")
    assert change == {"steps": 120} and budget.steps == 120 and budget.lr == base.lr
    with pytest.raises(SystemExit, match="stepz"):
        changed_budget(base, "stepz=120")
    with pytest.raises(SystemExit, match="steps"):
        changed_budget(base, "steps=0")
