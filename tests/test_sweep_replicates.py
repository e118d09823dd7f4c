"""Noise-aware ranking (`search.replicates`) without Prefect or Ray: the means per mixture and the pooled
seed standard deviation on known numbers, a mixture with one seed left as it is, the leaderboard's seed
columns, the proposal's run noise from the seeds, the spec's limit and key, and `mixsweep results`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.steps.replicates import pooled_std, seed_means
from flows.steps.report import leaderboard_rows, rank
from flows.steps.spec import SpecError, SweepSpec, load_spec
from flows.trials.result import Status, TrialResult
from mixture_search.mixture import Mixture
from mixture_search.recommend import recommend_mixture
from mixture_search.space import SearchSpace

A, B, C, D = (Mixture({"x": w, "y": 1 - w}) for w in (0.2, 0.4, 0.6, 0.8))


def _run(key: str, mixture: Mixture, objective: float | None, **metrics: float) -> TrialResult:
    status: Status = "finished" if objective is not None else "failed"
    return TrialResult(key, mixture, status, objective=objective, metrics=metrics, run_id=f"run-{key}")


def test_means_per_mixture_and_the_pooled_seed_std_on_known_numbers() -> None:
    trials = [
        _run("a", A, 2.0, **{"val.bpb.x": 1.0, "val.bpb.y": 3.0}),
        _run("b", B, 3.0, **{"val.bpb.x": 2.0, "val.bpb.y": 4.0}),
        _run("c", C, 4.0),
        _run("d", D, None),
    ]
    replicates = [
        _run("a1", A, 2.2, **{"val.bpb.x": 1.2, "val.bpb.y": 3.2}),
        _run("a2", A, 2.4, **{"val.bpb.x": 1.4, "val.bpb.y": 3.4}),
        _run("b1", B, 2.9, **{"val.bpb.x": 1.8, "val.bpb.y": 4.0}),
        _run("c1", C, None),  # a failed replicate: c keeps its one seed
    ]
    means = seed_means(trials, replicates)
    by = {r.trial_key: r for r in means.results}
    assert [r.trial_key for r in means.results] == ["a", "b", "c", "d"]  # one per trial, in order
    assert by["a"].objective == pytest.approx(2.2) and by["b"].objective == pytest.approx(2.95)
    assert by["a"].metrics == pytest.approx({"val.bpb.x": 1.2, "val.bpb.y": 3.2})
    assert by["b"].metrics == pytest.approx({"val.bpb.x": 1.9, "val.bpb.y": 4.0})
    assert by["a"].run_id == "run-a" and by["a"].mixture.key == A.key  # the trial's own run gets the rank
    assert by["c"] is trials[2] and by["d"] is trials[3]  # one seed, or failed: the trial as it was
    assert means.objectives == {"a": [2.0, 2.2, 2.4], "b": [3.0, 2.9], "c": [4.0]}
    # pooled: (0.04 + 0 + 0.04 around 2.2, 0.0025 * 2 around 2.95) / (2 + 1) degrees of freedom
    assert means.seed_std == pytest.approx(math.sqrt((0.08 + 0.005) / 3))
    assert means.replicated == ["a", "b", "c"] and list(means.failed) == ["c1"]
    summary = means.to_dict()
    assert summary["seeds_per_mixture"] == {"a": 3, "b": 2, "c": 1}
    assert summary["means"] == pytest.approx({"a": 2.2, "b": 2.95, "c": 4.0})
    json.dumps(summary)
    # ranked by the means (a failed trial last)
    assert [r.trial_key for r in rank(means.results)] == ["a", "b", "c", "d"]


def test_a_replicate_can_reorder_the_top() -> None:
    trials = [_run("lucky", A, 2.0), _run("steady", B, 2.1)]
    means = seed_means(trials, [_run("l1", A, 2.4), _run("s1", B, 2.1)])
    assert [r.trial_key for r in rank(means.results)] == ["steady", "lucky"]
    assert means.seed_std == pytest.approx(math.sqrt(0.08 / 2))  # (0.2^2 * 2 + 0) / 2


def test_without_replicates_nothing_changes() -> None:
    trials = [_run("a", A, 2.0), _run("b", B, None)]
    means = seed_means(trials, [])
    assert all(m is t for m, t in zip(means.results, trials))
    assert means.seed_std is None and means.replicated == [] and means.objectives == {"a": [2.0]}
    assert pooled_std([[1.0], [2.0]]) is None
    assert pooled_std([[1.0, 3.0]]) == pytest.approx(math.sqrt(2.0))
    # a replicate of a mixture no finished trial has is left out
    assert seed_means(trials, [_run("x", C, 1.0)]).objectives == {"a": [2.0]}


def test_the_leaderboard_shows_seeds_and_their_std() -> None:
    trials = [_run("a", A, 2.0), _run("b", B, 3.0), _run("d", D, None)]
    means = seed_means(trials, [_run("a1", A, 2.2)])
    rows = leaderboard_rows(means.results, ["x", "y"], seeds=means.objectives)
    assert [(r["trial"], r["objective"], r["seeds"], r["seed_std"]) for r in rows] == [
        ("a", 2.1, 2, round(math.sqrt(0.02), 5)),
        ("b", 3.0, 1, None),
        ("d", None, 0, None),
    ]
    assert "seeds" not in leaderboard_rows(trials, ["x", "y"])[0]  # without replicates: as before


def test_the_measured_seed_noise_is_the_proposals_run_noise() -> None:
    space = SearchSpace(domains=("x", "y", "z"), tokens=[1.0, 1.0, 1.0])
    rng = np.random.default_rng(0)
    X = rng.dirichlet(np.ones(3), size=10)
    y = 3.0 + X[:, 0] - X[:, 2]
    kwargs = {"surrogate": "linear", "n_samples": 1000, "seed": 0}
    cv = recommend_mixture(space, X, y, **kwargs)
    seeds = recommend_mixture(space, X, y, noise_std=0.05, **kwargs)
    assert seeds.proposal.noise_std == 0.05 and cv.proposal.noise_std != 0.05
    assert seeds.proposal.mixture.key == cv.proposal.mixture.key  # the noise only widens the interval
    lo, hi = seeds.proposal.interval
    std = seeds.proposal.std
    assert hi - lo == pytest.approx(2 * 1.959964 * math.sqrt(std**2 + 0.05**2), rel=1e-5)


def test_the_measured_seed_noise_is_the_scalar_gps_noise_floor() -> None:
    space = SearchSpace(domains=("x", "y", "z"), tokens=[1.0, 1.0, 1.0])
    X = np.random.default_rng(0).dirichlet(np.ones(3), size=10)
    y = 3.0 + X[:, 0] - X[:, 2]
    rec = recommend_mixture(space, X, y, surrogate="gp", n_samples=1000, noise_std=0.05)
    assert rec.model == "scalar:gp" and rec.fitted.options.noise_std == 0.05
    assert rec.fitted._noise >= (0.05 / np.std(y)) ** 2 - 1e-12


def test_replicates_beyond_the_trials_is_one_line_naming_the_field() -> None:
    spec = {"name": "s", "corpus": "/data/c", "search": {"rounds": 2, "per_round": 3, "replicates": 7}}
    with pytest.raises(SpecError) as info:
        load_spec(spec, where="spec.yaml")
    assert (
        str(info.value)
        == "spec.yaml: search.replicates: 7 is more than the sweep's 6 trials (search.rounds x search.per_round)"
    )
    spec["search"]["replicates"] = 6
    assert load_spec(spec).search.replicates == 6
    with pytest.raises(SpecError, match=r"search\.replicates: Input should be greater than or equal to 0"):
        load_spec({**spec, "search": {"replicates": -1}})


def test_replicates_keep_the_sweep_key() -> None:
    """Replicates train after the last round under keys of their own: raising them on a finished sweep
    reuses its MLflow runs and trains only the replicates (and the key of a sweep without them is
    what it was before the field existed)."""
    base = SweepSpec(name="s", corpus=Path("/data/c"))
    assert base.sweep_key("h") == SweepSpec(name="s", corpus=Path("/data/c"), search={"replicates": 3}).sweep_key("h")
    assert "replicates" not in json.dumps(base.model_dump(mode="json", exclude={"search": {"replicates"}}))


def test_results_ranks_by_the_means_and_shows_the_seeds(tmp_path: Path) -> None:
    trials = [_run("lucky-key", A, 2.0), _run("steady-key", B, 2.1)]
    means = seed_means(trials, [_run("l1", A, 2.4), _run("s1", B, 2.1)])
    summary = {
        "sweep": "s",
        "trials": 2,
        "finished": 2,
        "maximize": False,
        "best": {"trial": "steady-key", "objective": 2.1, "weights": {"x": 0.4, "y": 0.6}},
        "proposal": {"weights": {"x": 0.4, "y": 0.6}},
        "replicates": {"requested": 2, "seed": 1000, **means.to_dict()},
    }
    (tmp_path / "results.json").write_text(json.dumps([t.to_dict() for t in trials]))
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = CliRunner().invoke(app, ["results", str(tmp_path), "--top", "5"])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert text.index("steady-k") < text.index("lucky-ke")  # ranked by the mean, not the lucky first seed
    assert "2.2000" in text and "seeds" in text
    assert "the top 2 trained again with seed 1000; seed noise (pooled std) 0.2000" in text
