"""The confirmation stage's steps without Prefect or Ray: what is trained (the proposal and the best
trial with new seeds, keyed apart from every trial and stable across reruns, nothing when the proposal
is the best trial's mixture), the paired difference with its Student-t interval on known numbers, the
verdict and the mixture exported, and `mixsweep results` showing it with the separation verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.steps.confirm import (
    CONFIRM_STAGE,
    ConfirmPlan,
    ConfirmRun,
    confirm_seeds,
    confirmation,
    confirmation_markdown,
    plan_confirmation,
    t_interval,
)
from flows.steps.export import recommend
from flows.steps.noise import separation
from flows.steps.prepare import Prepared, prepare
from flows.steps.spec import load_spec
from flows.trials.result import Status, TrialResult, trial_key
from mixture_search.mixture import Mixture
from tests.sweep_helpers import smoke_spec

PROPOSAL = Mixture({"a": 0.6, "b": 0.4})
BEST = Mixture({"a": 0.2, "b": 0.8})
T_975_DF2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom (tables)


def _plan(seeds: tuple[int, ...]) -> ConfirmPlan:
    runs = tuple(
        ConfirmRun(role, s, f"{role}-{s}", PROPOSAL if role == "proposal" else BEST)
        for s in seeds
        for role in ("proposal", "best_trial")
    )
    return ConfirmPlan(PROPOSAL, "best-key", seeds, runs)


def _results(plan: ConfirmPlan, proposal: list[float | None], best: list[float | None]) -> dict[str, TrialResult]:
    """Finished runs with these objectives per seed (None: the run failed)."""
    values = {"proposal": proposal, "best_trial": best}
    out = {}
    for run in plan.runs:
        value = values[run.role][plan.seeds.index(run.seed)]
        status: Status = "finished" if value is not None else "failed"
        out[run.key] = TrialResult(run.key, run.mixture, status, objective=value, run_id=f"run-{run.key}")
    return out


def test_the_paired_difference_and_its_t_interval_on_known_numbers() -> None:
    plan = _plan((1, 2, 3))
    c = confirmation(plan, _results(plan, [3.0, 3.1, 3.2], [3.1, 3.25, 3.3]), maximize=False)
    assert c.diffs == pytest.approx([-0.1, -0.15, -0.1])
    assert c.pairs == 3 and c.diff == pytest.approx(-0.35 / 3)
    assert c.proposal_mean == pytest.approx(3.1) and c.best_mean == pytest.approx(9.65 / 3)
    sd = math.sqrt(((-0.1 + 0.35 / 3) ** 2 * 2 + (-0.15 + 0.35 / 3) ** 2) / 2)
    half = T_975_DF2 * sd / math.sqrt(3)
    assert (c.lo, c.hi) == pytest.approx((-0.35 / 3 - half, -0.35 / 3 + half))
    assert c.hi is not None and c.hi < 0  # lower is better and the interval excludes 0
    assert c.outcome == "proposal" and c.exported == "proposal"
    assert c.verdict.startswith("the proposal beats the best trial") and "lower is better" in c.verdict
    assert [r["run_id"] for r in c.to_dict()["runs"]] == [f"run-{r.key}" for r in plan.runs]
    json.dumps(c.to_dict())  # plain JSON for summary.json


def test_the_best_trial_wins_and_is_exported_and_the_direction_counts() -> None:
    plan = _plan((1, 2, 3))
    results = _results(plan, [3.0, 3.1, 3.2], [3.1, 3.25, 3.3])
    c = confirmation(plan, results, maximize=True)  # the same numbers, higher is better now
    assert c.outcome == "best_trial" and c.exported == "best_trial"
    assert c.verdict.startswith("the best trial beats the proposal: exporting the best trial")
    assert "higher is better" in c.verdict
    assert c.diff == pytest.approx(-0.35 / 3)  # proposal - best, whatever the direction


def test_within_noise_exports_the_better_mean() -> None:
    plan = _plan((1, 2))
    c = confirmation(plan, _results(plan, [3.0, 3.2], [3.1, 3.15]), maximize=False)
    assert c.diff == pytest.approx(-0.025) and c.lo is not None and c.hi is not None and c.lo < 0 < c.hi
    assert c.outcome == "noise" and c.exported == "proposal"
    assert c.verdict.startswith("within noise") and "exporting the proposal" in c.verdict
    worse = confirmation(plan, _results(plan, [3.2, 3.2], [3.1, 3.25]), maximize=False)
    assert worse.outcome == "noise" and worse.exported == "best_trial"
    assert "exporting the best trial" in worse.verdict


def test_one_seed_gives_no_interval_and_says_so() -> None:
    plan = _plan((5,))
    c = confirmation(plan, _results(plan, [2.0], [2.5]), maximize=False)
    assert c.pairs == 1 and c.lo is None and c.hi is None
    assert c.outcome == "proposal" and "no interval from one seed" in c.verdict
    assert t_interval([1.0]) == (None, None)
    assert "one seed" in confirmation_markdown(c, sweep="s", objective="val.bpb.mean")


def test_failed_runs_leave_their_seed_out_and_no_pair_keeps_the_proposal() -> None:
    plan = _plan((1, 2, 3))
    c = confirmation(plan, _results(plan, [3.0, None, 3.2], [3.1, 3.25, 3.3]), maximize=False)
    assert c.pairs == 2 and c.diffs[1] is None and c.diff == pytest.approx(-0.1)
    assert c.proposal_mean == pytest.approx(3.1) and c.best_mean == pytest.approx(3.2)  # the paired seeds only
    none = confirmation(plan, {}, maximize=False)
    assert none.outcome == "failed" and none.exported == "proposal" and none.pairs == 0
    assert {r["status"] for r in none.runs} == {"missing"}


# -- with a prepared sweep: seeds, keys, the skip case ------------------------------------------------


@pytest.fixture
def prepared(sweep_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Prepared:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = smoke_spec(sweep_corpus, tmp_path / "out", "confirm", confirm=True)
    spec["confirm"]["seeds"] = 3
    return prepare(load_spec(spec))


def _trials(prepared: Prepared, mixtures: list[Mixture], objectives: list[float]) -> list[TrialResult]:
    return [
        TrialResult(prepared.trial_key(m), m, "finished", objective=v, run_id=f"r{i}")
        for i, (m, v) in enumerate(zip(mixtures, objectives))
    ]


def test_confirmation_runs_are_keyed_apart_from_trials_and_stable(prepared: Prepared) -> None:
    spec = prepared.spec
    # the trials' key is what it always was (a rerun of an older sweep still finds its trials)
    assert prepared.trial_key(BEST) == trial_key(
        BEST,
        proxy=prepared.proxy,
        budget=prepared.budget,
        data_hash=prepared.data_hash,
        seed=spec.seed,
        extra={"backend": spec.backend, "eval": spec.eval.model_dump()},
    )
    seeds = confirm_seeds(prepared)
    assert len(seeds) == 3 and prepared.budget.seed not in seeds and len(set(seeds)) == 3
    ranked = _trials(prepared, [BEST, Mixture({"a": 0.5, "b": 0.5})], [2.0, 2.1])
    plan = plan_confirmation(prepared, ranked, PROPOSAL)
    assert plan.skip is None and plan.best_trial == ranked[0].trial_key and plan.seeds == seeds
    assert [(r.role, r.seed) for r in plan.runs] == [(role, s) for s in seeds for role in ("proposal", "best_trial")]
    keys = [r.key for r in plan.runs]
    assert len(set(keys)) == len(keys)
    trial_keys = {prepared.trial_key(m) for m in (PROPOSAL, BEST)}
    trial_keys |= {prepared.trial_key(m, seed=s) for m in (PROPOSAL, BEST) for s in seeds}  # no stage: not ours
    assert not trial_keys & set(keys)
    assert keys == [r.key for r in plan_confirmation(prepared, ranked, PROPOSAL).runs]  # a rerun: the same keys
    assert all(r.key == prepared.trial_key(r.mixture, seed=r.seed, stage=CONFIRM_STAGE) for r in plan.runs)


def test_nothing_to_confirm_when_the_proposal_is_the_best_trial(prepared: Prepared) -> None:
    # fewer than 4 finished trials: recommend returns the best trial's mixture, so confirmation skips
    mixtures = [BEST, Mixture({"a": 0.5, "b": 0.5}), Mixture({"a": 0.9, "b": 0.1})]
    ranked, recommended, _ = recommend(prepared, _trials(prepared, mixtures, [2.0, 2.1, 2.2]))
    assert recommended.key == BEST.key
    plan = plan_confirmation(prepared, ranked, recommended)
    assert plan.runs == () and plan.skip is not None
    c = confirmation(plan, {}, maximize=False)
    assert c.outcome == "skipped" and c.exported == "proposal" and c.verdict.startswith("confirmation skipped")


# -- mixsweep results ------------------------------------------------------------------------------------


def test_results_shows_the_confirmation_and_the_exported_mixture(tmp_path: Path) -> None:
    plan = _plan((1, 2))
    c = confirmation(plan, _results(plan, [3.2, 3.3], [3.0, 3.1]), maximize=False)
    assert c.exported == "best_trial"
    trials = [TrialResult("best-key", BEST, "finished", objective=3.0), TrialResult("t2", PROPOSAL, "finished", 3.1)]
    summary: dict[str, Any] = {
        "sweep": "s",
        "trials": 2,
        "finished": 2,
        "maximize": False,
        "best": {"trial": "best-key", "objective": 3.0, "weights": {"a": 0.2, "b": 0.8}},
        "proposal": {"weights": {"a": 0.6, "b": 0.4}},
        "confirm": c.to_dict(),
    }
    separated = separation(trials, c)  # two trials as far apart as two seeds of one mixture
    assert separated is not None and separated.level == "barely"
    summary["separation"] = separated.to_dict()
    (tmp_path / "results.json").write_text(json.dumps([t.to_dict() for t in trials]))
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = CliRunner().invoke(app, ["results", str(tmp_path)])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "recommended mixture (the best trial" in text and "0.8000" in text
    assert "confirmation: the best trial beats the proposal: exporting the best trial" in text
    assert "proposal 3.2500, best trial 3.0500" in text and "95% interval" in text
    assert "the proxies barely separate the mixtures" in text and "2 degrees of freedom" in text
