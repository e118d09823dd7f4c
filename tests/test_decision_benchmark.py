"""The decision benchmark's quick path (`benchmarks/decision.py --quick`): its JSON, and regrets that
mean what they say (the true optimum's own mixture has regret 0, nothing beats the optimum, and a
peer's regret recomputed from the ground truth by hand matches the file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks import decision


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("decision") / "decision.json"
    decision.main(["--quick", "--out", str(out)])
    return json.loads(out.read_text()), out


def test_quick_run_writes_goals_summaries_and_a_plot(quick: tuple[dict[str, Any], Path]) -> None:
    result, out = quick
    grid = decision.QUICK
    assert set(result["goals"]) == {
        "regret_at_most_half_regmix",
        "regret_below_best_observed",
        "beats_natural_and_uniform_90pct",
    }
    for goal in result["goals"].values():
        assert isinstance(goal["met"], bool) and np.isfinite(goal["figure"])
    rows = result["raw"]
    assert len(rows) == len(grid.ms) * grid.seeds * len(grid.objectives) * len(grid.ns)
    assert len(result["cells"]) == len(grid.ms) * len(grid.objectives) * len(grid.ns)
    for summary in [result["overall"], *result["cells"].values()]:
        assert set(summary["regret"]) == set(decision.METHODS)
        for method in decision.METHODS:
            lo, hi = summary["regret"][method]["ci95"]
            assert lo <= summary["regret"][method]["mean"] <= hi
        assert set(summary["win_rate"]) == {f"vs_{k}" for k in decision.COMPARED}
        assert all(0.0 <= v <= 1.0 for v in summary["win_rate"].values())
    assert result["setup"]["n_samples"].startswith(str(grid.n_samples))
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_regrets_are_measured_from_the_true_optimum(quick: tuple[dict[str, Any], Path]) -> None:
    rows = quick[0]["raw"]
    for row in rows:
        assert abs(row["regret"]["optimum"]) <= 1e-12, row
        # the optimiser's optimum is the best: no method and no uniform draw does better
        assert min(row["regret"].values()) >= -1e-7, row
        assert row["reference_best_regret"] >= -1e-7, row
        assert all(row["feasible"].values()), row
    # one regret recomputed by hand from the ground truth: natural = the token shares
    row = rows[0]
    truth = decision.make_truth(row["m"], row["seed"], decision.QUICK)
    w = decision.objective_weights(row["m"], row["seed"])[row["objective"]]
    tokens = truth.space.token_counts
    assert tokens is not None
    _, best = truth.problem.optimum(truth.space, weights=w)
    natural = float(truth.problem.objective(tokens / tokens.sum(), w)[0]) - best
    assert row["regret"]["natural"] == pytest.approx(natural, abs=1e-9)


def test_summaries_recomputed_from_the_raw_rows_match(quick: tuple[dict[str, Any], Path], tmp_path: Path) -> None:
    result, out = quick
    again = decision.main(["--from", str(out), "--out", str(tmp_path / "again.json")])
    for key in ("goals", "overall", "cells", "worst_cells", "setup", "seconds", "code"):
        assert again[key] == json.loads(json.dumps(result[key])), key
    assert set(again["worst_cells"]) == {
        "ratio_to_regmix",
        "ratio_to_best_observed",
        "win_rate_vs_natural",
        "win_rate_vs_uniform",
    }


def test_the_runs_start_with_the_anchors_and_the_export_is_the_confirmations_choice(
    quick: tuple[dict[str, Any], Path],
) -> None:
    rows = quick[0]["raw"]
    truth = decision.make_truth(rows[0]["m"], rows[0]["seed"], decision.QUICK)
    anchors = np.array([truth.space.anchor(a) for a in ("natural", "uniform")])
    assert np.allclose(truth.X[:2], anchors)
    for row in rows:  # the exported mixture is the proposal or the best observed run, as the confirmation chose
        assert row["exported"] in ("proposal", "best_observed")
        assert row["regret"]["recommendation"] == row["regret"][row["exported"]]
    assert 0.0 <= quick[0]["overall"]["exported_best_observed"] <= 1.0
