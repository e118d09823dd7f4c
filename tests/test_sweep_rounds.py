"""The sweep's round logic without Prefect or Ray: candidates of a round are planned once and replanned
identically after an interruption, the adaptive sampler is told every result once and knows the
objective's direction, the CV is cached by its inputs, `recommend` ranks and proposes, and the
confirmation trains the proposal and the best trial with new seeds and exports the better one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flows.steps.confirm import confirmation, plan_confirmation
from flows.steps.export import recommend
from flows.steps.prepare import Prepared, prepare
from flows.steps.search import SearchState, cross_validate_cached, sampler_for, suggest_candidates
from flows.steps.spec import load_spec
from flows.trials.result import TrialResult
from mixture_search.mixture import Mixture
from tests.sweep_helpers import smoke_spec


def _prepared(corpus: Path, out: Path, **changes: Any) -> Prepared:
    spec = smoke_spec(corpus, out, "rounds", rounds=3, per_round=4)
    spec["search"]["proposal_samples"] = 1000
    spec.update(changes)
    return prepare(load_spec(spec))


def _results(candidates: list[Mixture], score: Any) -> dict[str, TrialResult]:
    out = {}
    for i, m in enumerate(candidates):
        key = f"{m.key}-{i}"
        out[key] = TrialResult(key, m, "finished", objective=float(score(m)), round=0)
    return out


@pytest.fixture
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.mark.usefixtures("no_mlflow_env")
def test_a_round_is_planned_once_and_replanned_identically(sweep_corpus: Path, tmp_path: Path) -> None:
    prepared = _prepared(sweep_corpus, tmp_path / "out")
    state_file = tmp_path / "out" / "search_state.json"
    state = SearchState.load(state_file)
    name, first = suggest_candidates(prepared, state, 0, {})
    assert name == "dirichlet" and len(first) == 4
    saved = json.loads(state_file.read_text())
    assert [e["sampler"] for e in saved["rounds"]] == ["dirichlet"]
    # an interrupted sweep reads the state back: the same round gives the same candidates, no new draw
    again_name, again = suggest_candidates(prepared, SearchState.load(state_file), 0, {})
    assert (again_name, [m.key for m in again]) == (name, [m.key for m in first])
    assert json.loads(state_file.read_text()) == saved


@pytest.mark.usefixtures("no_mlflow_env")
@pytest.mark.parametrize("maximize", [False, True])
def test_the_adaptive_sampler_knows_the_direction_and_each_result_once(
    sweep_corpus: Path, tmp_path: Path, maximize: bool
) -> None:
    prepared = _prepared(sweep_corpus, tmp_path / "out", objective={"metric": "val.bpb.code", "maximize": maximize})
    state = SearchState.load(tmp_path / "out" / "search_state.json")
    _, first = suggest_candidates(prepared, state, 0, {})
    results = _results(first, lambda m: m.share("code"))
    name, sampler = sampler_for(prepared, state, 1, results)
    assert name == "adaptive" and sampler.maximize is maximize
    assert sorted(state.samplers["adaptive"]["observed"]) == sorted(results)
    # a rerun restores the sampler and tells it nothing twice
    _, restored = sampler_for(prepared, state, 1, results)
    assert restored.state()["observations"] == sampler.state()["observations"]


@pytest.mark.usefixtures("no_mlflow_env")
def test_the_cv_is_cached_by_its_inputs_and_recommend_ranks(sweep_corpus: Path, tmp_path: Path) -> None:
    prepared = _prepared(sweep_corpus, tmp_path / "out", search={"surrogate": "linear", "proposal_samples": 1000})
    state = SearchState.load(tmp_path / "out" / "search_state.json")
    _, candidates = suggest_candidates(prepared, state, 0, {})
    _, more = suggest_candidates(prepared, state, 1, {})
    results = list(_results([*candidates, *more], lambda m: 3.0 + m.share("code") - m.share("zh")).values())
    cv = cross_validate_cached(prepared, results)
    assert cv is not None and cv.table["surrogate"] == "linear" and len(cv.oof) == len(results)
    cached = list((tmp_path / "out" / "cv").glob("*.json"))
    assert len(cached) == 1
    again = cross_validate_cached(prepared, results)
    assert again is not None and again.table == cv.table and list(again.oof) == list(cv.oof)
    assert list((tmp_path / "out" / "cv").glob("*.json")) == cached
    assert cross_validate_cached(prepared, results[:3]) is None  # too few to cross-validate

    ranked, recommended, summary = recommend(prepared, results)
    assert [r.objective for r in ranked] == sorted(r.objective for r in results if r.objective is not None)
    assert summary["best"]["trial"] == ranked[0].trial_key
    assert summary["finished"] == len(results) and "predicted" in summary["proposal"]
    assert set(recommended.names) == set(prepared.domains)


@pytest.mark.usefixtures("no_mlflow_env")
@pytest.mark.parametrize("proposal_wins", [True, False])
def test_after_the_last_round_the_proposal_is_confirmed_against_the_best_trial(
    sweep_corpus: Path, tmp_path: Path, proposal_wins: bool
) -> None:
    prepared = _prepared(sweep_corpus, tmp_path / "out", search={"surrogate": "linear", "proposal_samples": 1000})
    state = SearchState.load(tmp_path / "out" / "search_state.json")
    _, candidates = suggest_candidates(prepared, state, 0, {})
    _, more = suggest_candidates(prepared, state, 1, {})
    trials = list(_results([*candidates, *more], lambda m: 3.0 + m.share("code") - m.share("zh")).values())
    ranked, proposal, _ = recommend(prepared, trials)
    plan = plan_confirmation(prepared, ranked, proposal)
    assert len(plan.runs) == 2 * prepared.spec.confirm.seeds and plan.best_trial == ranked[0].trial_key
    assert not {r.key for r in plan.runs} & {t.trial_key for t in trials}

    def trained(mixture: Mixture, seed: int) -> float:  # a stub training: the mixture's score plus seed noise
        bonus = -0.1 if (mixture.key == proposal.key) == proposal_wins else 0.0
        return 3.0 + bonus + 0.01 * seed

    results = {
        r.key: TrialResult(r.key, r.mixture, "finished", objective=trained(r.mixture, r.seed)) for r in plan.runs
    }
    c = confirmation(plan, results, maximize=False)
    assert c.pairs == prepared.spec.confirm.seeds and c.diff == pytest.approx(-0.1 if proposal_wins else 0.1)
    assert c.exported == ("proposal" if proposal_wins else "best_trial")
    assert c.outcome == c.exported  # the same difference with every seed: the interval excludes 0
