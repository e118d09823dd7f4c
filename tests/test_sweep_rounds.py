"""The sweep's round logic without Prefect or Ray: candidates of a round are planned once and replanned
identically after an interruption, the adaptive sampler is told every result once and knows the
objective's direction, the CV is cached by its inputs, `recommend` ranks and proposes, the top trials
are replicated with a new seed (keyed apart, trained once, ranked and proposed by their means), and the
confirmation trains the proposal and the best trial with new seeds and exports the better one."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest

from flows import sweep as sweep_module
from flows.steps.confirm import confirm_seeds, confirmation, plan_confirmation
from flows.steps.export import recommend
from flows.steps.prepare import Prepared, prepare
from flows.steps.replicates import REPLICATE_STAGE, plan_replicates, replicate_seed
from flows.steps.report import rank
from flows.steps.search import (
    SearchState,
    candidate_label,
    cross_validate_cached,
    sampler_for,
    suggest_candidates,
)
from flows.steps.spec import SpecError, load_spec
from flows.trials.result import TrialPlan, TrialResult
from mixture_search.mixture import Mixture
from tests.sweep_helpers import smoke_spec


def _spec(corpus: Path, out: Path, **changes: Any) -> dict[str, Any]:
    spec = smoke_spec(corpus, out, "rounds", rounds=3, per_round=4)
    spec["search"]["proposal_samples"] = 1000
    spec.update(changes)
    return spec


def _prepared(corpus: Path, out: Path, **changes: Any) -> Prepared:
    return prepare(load_spec(_spec(corpus, out, **changes)))


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
def test_the_first_round_starts_with_the_anchors(sweep_corpus: Path, tmp_path: Path) -> None:
    spec = _spec(sweep_corpus, tmp_path / "out")  # per_round 4: natural, uniform and 2 sampled, as asked
    spec["search"]["anchors"] = ["natural", "uniform"]
    prepared = prepare(load_spec(spec))
    space = prepared.space
    assert [name for name, _ in prepared.anchors] == ["natural", "uniform"]
    state = SearchState.load(tmp_path / "out" / "search_state.json")
    name, first = suggest_candidates(prepared, state, 0, {})
    assert len(first) == 4 and name == "dirichlet"
    assert [space.to_array(m).tolist() for m in first[:2]] == [
        pytest.approx(space.anchor("natural").tolist()),
        pytest.approx(space.anchor("uniform").tolist()),
    ]
    labels = [candidate_label(prepared, m, name) for m in first]
    assert labels == ["anchor:natural", "anchor:uniform", "dirichlet", "dirichlet"]
    _, second = suggest_candidates(prepared, state, 1, _results(first, lambda m: m.share("code")))
    assert len(second) == 4 and {candidate_label(prepared, m, "adaptive") for m in second} == {"adaptive"}
    # by default both when they take at most a quarter of the first round; none when asked for none
    for search, expected in (
        ({"per_round": 8}, ["natural", "uniform"]),
        ({"per_round": 7}, []),
        ({"per_round": 8, "anchors": []}, []),
        ({"per_round": 2, "anchors": ["uniform"]}, ["uniform"]),
    ):
        spec = _spec(sweep_corpus, tmp_path / "other")
        spec["search"].update(search)
        assert [name for name, _ in prepare(load_spec(spec)).anchors] == expected


def test_anchors_that_fill_the_first_round_are_one_line(tmp_path: Path) -> None:
    spec = smoke_spec(tmp_path / "no-corpus", tmp_path / "out", "anchors", per_round=2)
    spec["search"]["anchors"] = ["natural", "uniform"]
    with pytest.raises(
        SpecError, match=r"search\.anchors: 2 anchors leave no candidate of the sampler in a first round of 2"
    ):
        load_spec(spec)
    spec["search"].update(anchors=["natural", "natural"], per_round=4)
    with pytest.raises(SpecError, match=r"search\.anchors.*each anchor once"):
        load_spec(spec)


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


# -- replicates: the top trials again with a new seed, through the flow's own steps (training stubbed) ----


class _Tracker:
    """The MLflow books the flow's replicate step uses: runs final per stage, child runs started."""

    def __init__(self) -> None:
        self.final: dict[str, dict[str, TrialResult]] = {}
        self.started: list[tuple[str, str, int]] = []  # (key, stage, seed)

    def finished_trials(self, stage: str = "trial") -> dict[str, TrialResult]:
        return dict(self.final.get(stage, {}))

    def start_trial(
        self, key: str, mixture: Mixture, *, round_: int, sampler: str, params: Any, stage: str, weights: Any = None
    ) -> str:
        self.started.append((key, stage, params["seed"]))
        return f"run-{key}"


@pytest.mark.usefixtures("no_mlflow_env")
def test_the_top_trials_are_replicated_once_with_a_new_seed_and_ranked_by_their_means(
    sweep_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = _prepared(
        sweep_corpus,
        tmp_path / "out",
        search={"surrogate": "linear", "proposal_samples": 1000, "replicates": 2},
        confirm={"enabled": True, "seeds": 2},
    )
    state = SearchState.load(tmp_path / "out" / "search_state.json")
    _, candidates = suggest_candidates(prepared, state, 0, {})
    _, more = suggest_candidates(prepared, state, 1, {})

    def score(m: Mixture) -> float:
        return 3.0 + m.share("code") - m.share("zh")

    trials = [TrialResult(prepared.trial_key(m), m, "finished", objective=score(m)) for m in [*candidates, *more]]
    top = rank(trials)[:2]

    # the plan: the top 2 trials, one new seed (neither the trials' nor the confirmation's), keys of their own
    runs = plan_replicates(prepared, trials)
    seed = replicate_seed(prepared)
    assert [r.trial for r in runs] == [t.trial_key for t in top] and [r.role for r in runs] == ["top1", "top2"]
    assert {r.seed for r in runs} == {seed} and seed != prepared.budget.seed and seed not in confirm_seeds(prepared)
    keys = {r.key for r in runs}
    assert len(keys) == 2 and all(
        r.key == prepared.trial_key(r.mixture, seed=seed, stage=REPLICATE_STAGE) for r in runs
    )
    assert not keys & {t.trial_key for t in trials}
    assert not keys & {prepared.trial_key(r.mixture, seed=seed) for r in runs}  # the stage keeps them apart
    ranked0, proposal0, _ = recommend(prepared, trials)
    assert not keys & {r.key for r in plan_confirmation(prepared, ranked0, proposal0).runs}

    # the flow's step, with a stub training: the top trial's new seed scores so much worse that its mean
    # falls behind the second's, whose new seed scores 0.1 better
    gap = float(top[1].objective or 0) - float(top[0].objective or 0)
    delta = {"top1": 2 * gap + 0.3, "top2": -0.1}
    trained: list[tuple[str, list[TrialPlan]]] = []

    def run_trials(prepared: Prepared, plans: list[TrialPlan], round_: int, tracker: _Tracker, stage: str):
        assert round_ == prepared.spec.search.rounds
        trained.append((stage, plans))
        out = []
        for p in plans:
            value = score(p.mixture) + delta.get(p.sampler, 0.0)
            res = TrialResult(p.key, p.mixture, "finished", objective=value, run_id=p.run_id)
            tracker.final.setdefault(stage, {})[p.key] = res  # made final in MLflow as it ends
            out.append(res)
        return out

    monkeypatch.setattr(sweep_module, "run_trials", run_trials)
    monkeypatch.setattr(sweep_module, "get_run_logger", lambda: logging.getLogger("test"))
    tracker = _Tracker()
    means = sweep_module.replicate(prepared, tracker, trials)
    assert [(stage, [(p.key, p.seed) for p in plans]) for stage, plans in trained] == [
        ("replicate", [(r.key, seed) for r in runs])
    ]
    assert tracker.started == [(r.key, "replicate", seed) for r in runs]
    assert tracker.finished_trials() == {}  # never counted as trials
    assert means.replicated == [t.trial_key for t in top]
    first = float(top[0].objective or 0)
    assert means.objectives[top[0].trial_key] == pytest.approx([first, first + delta["top1"]])
    assert means.seed_std == pytest.approx(math.sqrt((delta["top1"] ** 2 / 2 + 0.1**2 / 2) / 2))

    # the ranking, the surrogate's observations and the proposal's noise follow the means
    ranked, proposal, summary = recommend(prepared, means.results, noise_std=means.seed_std)
    assert [r.objective for r in ranked] == sorted(r.objective for r in means.results if r.objective is not None)
    assert ranked[0].trial_key == top[1].trial_key  # the lucky first trial fell behind on its mean
    assert summary["best"]["objective"] == pytest.approx(top[1].objective - 0.05)
    assert summary["proposal"]["noise_std"] == pytest.approx(means.seed_std)

    # the confirmation goes the same way (stage confirm), against the best trial by its mean
    c = sweep_module.confirm(prepared, tracker, ranked, proposal)
    assert c.best_trial == top[1].trial_key and c.pairs == 2
    assert [stage for stage, _ in trained] == ["replicate", "confirm"] and len(tracker.started) == 6

    # a rerun finds both stages final in MLflow: nothing is trained or started again
    again = sweep_module.replicate(prepared, tracker, trials)
    assert sweep_module.confirm(prepared, tracker, ranked, proposal).diff == c.diff
    assert len(trained) == 2 and len(tracker.started) == 6
    assert again.objectives == means.objectives and again.seed_std == means.seed_std


# -- a sweep that ends early: MLflow says how it ended --------------------------------------------------------


class _Aborting:
    def __init__(self, broken: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.broken = broken

    def abort(self, status: str, reason: str) -> list[str]:
        if self.broken:
            raise ConnectionError("MLflow is down too")
        self.calls.append((status, reason))
        return ["child"]


def test_a_cancelled_sweep_is_killed_in_mlflow_and_a_failed_one_failed() -> None:
    import signal

    from prefect.exceptions import TerminationSignal

    logger = logging.getLogger("test")
    tracker = _Aborting()
    sweep_module.end_early(tracker, TerminationSignal(signal.SIGTERM), logger)  # type: ignore[arg-type]
    try:  # Ray Tune may wrap the signal in an error of its own: the chain still says what happened
        try:
            raise TerminationSignal(signal.SIGTERM)
        except TerminationSignal as inner:
            raise RuntimeError("Tune run failed") from inner
    except RuntimeError as wrapped:
        sweep_module.end_early(tracker, wrapped, logger)  # type: ignore[arg-type]
    sweep_module.end_early(tracker, ValueError("disk\nfull"), logger)  # type: ignore[arg-type]
    assert tracker.calls == [
        ("KILLED", "cancelled (TerminationSignal)"),
        ("KILLED", "cancelled (TerminationSignal)"),
        ("FAILED", "error: ValueError: disk full"),
    ]
    sweep_module.end_early(_Aborting(broken=True), KeyboardInterrupt(), logger)  # type: ignore[arg-type]  # never raises
