"""Proxy ladders and repetition-matched proxies in the sweep's round logic, without Prefect or Ray (training
stubbed by a ground truth whose best mixture moves with scale): the ladder is checked and sized before
anything trains, every candidate trains at the smallest scale, the design rule picks the best and a spread
for the larger scales (tagged why), the proposal optimises the target-scale prediction, the confirmation
trains at the largest proxy scale, a rerun trains nothing twice, and a sweep without `proxy.scales` keeps
today's keys."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from flows import sweep as sweep_module
from flows.steps.confirm import CONFIRM_STAGE, plan_confirmation
from flows.steps.export import recommend
from flows.steps.ladder import (
    MIN_PER_SCALE,
    SCALE_STAGE,
    Ladder,
    Rung,
    choose,
    describe,
    plan_counts,
    thin_largest_scale,
)
from flows.steps.prepare import Prepared, prepare
from flows.steps.search import SearchState, suggest_candidates
from flows.steps.spec import SpecError, load_spec
from flows.trials.result import TrialPlan, TrialResult, trial_key
from mixture_search.mixture import Mixture
from mixture_search.surrogates.scale import DEFAULT_SCALE_CANDIDATES, Scale
from tests.sweep_helpers import smoke_spec
from trainers.budget import TrainBudget
from trainers.presets import tiny_cpu

TARGET = {"params": "20M"}


def _spec(corpus: Path, out: Path, **changes: Any) -> dict[str, Any]:
    spec = smoke_spec(corpus, out, "ladder", rounds=3, per_round=4)
    spec["search"].update({"surrogate": "auto", "proposal_samples": 1000})
    spec["proxy"]["scales"] = [{}, {"overrides": {"hidden_size": 96}, "budget": {"steps": 8}}]
    spec["space"] = {"target_tokens": 100_000}  # the tiny corpus read about 1.5 times over
    spec["target"] = dict(TARGET)
    spec["confirm"] = {"enabled": True, "seeds": 2}
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


@pytest.fixture
def no_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def truth(m: Mixture, scale: int) -> float:
    """The stub's loss: lower at larger scales, and the best share of `code` moves from 0.6 to 0.3 as the
    proxy grows (a scarce domain's value changes with scale)."""
    best = 0.6 - 0.3 * scale
    return 3.0 - 0.2 * scale + 2.0 * (m.share("code") - best) ** 2 + 0.3 * m.share("zh")


class _Tracker:
    def __init__(self) -> None:
        self.final: dict[str, dict[str, TrialResult]] = {}
        self.started: list[tuple[str, str, dict[str, Any]]] = []
        self.tags: dict[str, dict[str, str]] = {}

    def finished_trials(self, stage: str = "trial") -> dict[str, TrialResult]:
        return dict(self.final.get(stage, {}))

    def start_trial(
        self, key: str, mixture: Mixture, *, round_: int, sampler: str, params: Any, stage: str, weights: Any = None
    ) -> str:
        self.started.append((key, stage, params))
        return f"run-{key}"

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self.tags.setdefault(run_id, {}).update(tags)


# -- the ladder's shape, before anything trains ------------------------------------------------------------


@pytest.mark.usefixtures("no_mlflow_env")
def test_the_ladder_is_checked_and_sized_before_training(sweep_corpus: Path, tmp_path: Path) -> None:
    prepared = prepare(load_spec(_spec(sweep_corpus, tmp_path / "out")))
    ladder = prepared.ladder
    assert ladder is not None and len(ladder.rungs) == 2
    small, large = ladder.rungs
    assert (small.proxy, small.budget) == (prepared.proxy, prepared.budget)  # the search trains at the smallest
    assert large.proxy.hidden_size == 96 and large.budget.steps == 8 and large.proxy.seq_len == 32
    assert large.params > small.params and large.tokens == 2 * small.tokens and large.flops > small.flops
    assert ladder.counts == (12, 6)  # every trial at the smallest, half of them at the next
    assert ladder.target.params == 20e6 and ladder.target.tokens == 1e5
    assert prepared.repetition == 100_000  # on by default with space.target_tokens
    # every run's MLflow params: its scale, and each domain's epochs in the proxy and in the target
    m = Mixture({d: 1.0 for d in prepared.domains})
    params = prepared.scale_params(m, scale=1)
    assert params["scale"] == {"index": 1, "params": large.params, "tokens": large.tokens}
    assert set(params["epochs"]["proxy"]) == set(prepared.domains) == set(params["epochs"]["target"])
    for d in prepared.domains:  # the subset repeats each domain as the target would (up to the rounding of
        # a subset of a few windows: a tiny proxy reads 4 windows of each domain)
        assert params["epochs"]["proxy"][d] == pytest.approx(params["epochs"]["target"][d], rel=0.35)
    # the context of each scale trains that scale's proxy against the target's repetition
    ctx = prepared.trial_context(scale=1)
    assert (ctx.proxy, ctx.budget, ctx.target_tokens) == (large.proxy, large.budget, 100_000)
    assert prepared.trial_context(stage=CONFIRM_STAGE).proxy == large.proxy  # confirmation: the largest scale


def test_counts_halve_or_follow_the_compute_budget() -> None:
    def rung(k: int, hidden: int, steps: int) -> Rung:
        proxy = tiny_cpu(hidden_size=hidden, seq_len=32).resolve_vocab(400)
        budget = TrainBudget(steps=steps, micro_batch=2, global_batch=2)
        return Rung(k, proxy, budget, proxy.param_counts().total, steps * 2 * 32)

    rungs = [rung(0, 64, 4), rung(1, 96, 8), rung(2, 128, 16)]
    assert plan_counts(rungs, 16, None) == (16, 8, 4)
    assert plan_counts(rungs, 5, None) == (5, 3, 3)  # never below what the held-out scale needs
    cost = [r.flops for r in rungs]
    budget = 16 * cost[0] + 6 * cost[1] + 5 * cost[2] + 4 * cost[2]
    counts = plan_counts(rungs, 16, budget, confirm=4)
    assert counts[0] == 16 and counts[1] >= MIN_PER_SCALE and counts[2] >= MIN_PER_SCALE
    assert sum(n * c for n, c in zip(counts, cost)) + 4 * cost[2] <= budget  # within the budget
    assert counts[2] <= counts[1] <= counts[0]
    with pytest.raises(SpecError, match=r"proxy.compute_budget: .* afford 2 runs at scale 1"):
        plan_counts(rungs[:2], 16, 16 * cost[0] + 2.5 * cost[1], confirm=0)
    with pytest.raises(SpecError, match=r"proxy.compute_budget: .* do not cover the smallest scale"):
        plan_counts(rungs, 16, 15 * cost[0])


def test_a_largest_scale_with_fewer_runs_than_domains_gets_advice() -> None:
    def ladder(*counts: int) -> Ladder:
        proxy = tiny_cpu(seq_len=32).resolve_vocab(400)
        budget = TrainBudget(steps=4, micro_batch=2, global_batch=2)
        rungs = tuple(Rung(k, proxy, budget, 10**6 * (k + 1), 256 * (k + 1)) for k in range(len(counts)))
        return Ladder(rungs, Scale(1e8, 1e6), counts, None)

    advice = thin_largest_scale(ladder(12, 6), 8)
    assert advice is not None and "trains 6 runs for 8 domain shares" in advice and "at least 8" in advice
    assert thin_largest_scale(ladder(12, 8), 8) is None
    assert thin_largest_scale(ladder(12, 6, 5), 4) is None  # enough for 4 domains
    assert thin_largest_scale(ladder(12, 5, 3), 8) is not None and "at least 5" in thin_largest_scale(
        ladder(12, 5, 3), 8
    )
    assert thin_largest_scale(ladder(12, 5, 5), 8) is None  # the scale below has no more to give
    rows = dict(describe(ladder(12, 6), None, 0, 8))
    assert rows["ladder advice"] == advice and "12 runs" in rows["ladder"]
    assert "ladder advice" not in dict(describe(ladder(12, 12), None, 0, 8))


def test_the_design_rule_picks_the_best_half_and_a_spread() -> None:
    shares = [0.1, 0.15, 0.2, 0.5, 0.52, 0.9, 0.95]
    runs = [
        TrialResult(f"t{i}", Mixture({"code": s, "zh": 1 - s}), "finished", objective=abs(s - 0.12))
        for i, s in enumerate(shares)
    ]
    runs.append(TrialResult("failed", Mixture({"code": 0.3, "zh": 0.7}), "failed"))
    picks = choose(runs, 4, ["code", "zh"], maximize=False)
    assert [(p.trial.trial_key, p.why) for p in picks] == [
        ("t0", "best1"),  # 0.1 and 0.15 are the best two
        ("t1", "best2"),
        ("t6", "spread"),  # then the farthest from them (0.95), then the farthest from all three (0.52)
        ("t4", "spread"),
    ]
    assert len(choose(runs, 20, ["code", "zh"], maximize=False)) == 7  # never a failed run, never more


# -- the rounds with a ladder, training stubbed -------------------------------------------------------------


@pytest.mark.usefixtures("no_mlflow_env")
def test_a_ladder_climbs_proposes_at_the_target_and_confirms_at_the_largest_scale(
    sweep_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared = prepare(load_spec(_spec(sweep_corpus, tmp_path / "out")))
    state = SearchState.load(tmp_path / "out" / "search_state.json")
    candidates = [m for r in range(3) for m in suggest_candidates(prepared, state, r, {})[1]]
    trials = [TrialResult(prepared.trial_key(m), m, "finished", objective=truth(m, 0)) for m in candidates]
    trained: list[tuple[str, int | None, list[TrialPlan]]] = []

    def run_trials(
        prepared: Prepared,
        plans: list[TrialPlan],
        round_: int,
        tracker: _Tracker,
        stage: str,
        scale: int | None = None,
    ) -> list[TrialResult]:
        trained.append((stage, scale, plans))
        ctx = prepared.trial_context(scale, stage)  # what the trials would train
        k = next(r.index for r in prepared.ladder.rungs if r.proxy == ctx.proxy)  # type: ignore[union-attr]
        out = []
        for p in plans:
            res = TrialResult(p.key, p.mixture, "finished", objective=truth(p.mixture, k), run_id=p.run_id)
            tracker.final.setdefault(stage, {})[p.key] = res
            out.append(res)
        return out

    monkeypatch.setattr(sweep_module, "run_trials", run_trials)
    monkeypatch.setattr(sweep_module, "get_run_logger", lambda: logging.getLogger("test"))
    tracker = _Tracker()
    ladder = sweep_module.climb(prepared, tracker, trials)  # type: ignore[arg-type]
    assert [(stage, scale, len(plans)) for stage, scale, plans in trained] == [(SCALE_STAGE, 1, 6)]
    plans = trained[0][2]
    assert [p.sampler for p in plans] == ["best1", "best2", "best3", "spread", "spread", "spread"]
    best3 = sorted(trials, key=lambda t: float(t.objective or 0))[:3]
    assert [p.mixture.key for p in plans[:3]] == [t.mixture.key for t in best3]
    for key, stage, params in tracker.started:  # keyed apart from the trials, scale and epochs in MLflow
        assert stage == SCALE_STAGE and key not in {t.trial_key for t in trials}
        assert params["scale"]["index"] == 1 and params["budget"]["steps"] == 8 and "epochs" in params
    assert {t["scale.why"] for t in tracker.tags.values()} == {"best1", "best2", "best3", "spread"}
    assert [len(runs) for runs in ladder.by_scale] == [12, 6]

    # the proposal optimises the target-scale prediction of a scale-aware choice
    ranked, proposal, summary = recommend(prepared, trials, ladder=ladder)
    assert summary["proposal"]["at"] == {"params": 20e6, "tokens": 1e5}
    assert summary["proposal"]["surrogate"] in DEFAULT_SCALE_CANDIDATES
    assert summary["proposal"]["cv_largest_scale"]["n"] == 6
    assert [r.trial_key for r in ranked] == [
        r.trial_key for r in sorted(ladder.by_scale[1], key=lambda r: float(r.objective or 0))
    ]
    assert summary["best"]["scale"] == 1 and summary["ladder"]["scales"][1]["runs"] == 6
    rows = ladder.rows(prepared.domains, maximize=False)
    assert len(rows) == 12 and all(r["scale1"] is not None for r in rows[:6]) and rows[6]["scale1"] is None
    assert rows[0]["scale1"] == pytest.approx(ranked[0].objective, abs=1e-5) and "why1" in rows[0]

    # the confirmation trains the proposal and the best of the largest scale, at the largest scale
    plan = plan_confirmation(prepared, ranked, proposal)
    assert plan.best_trial == ranked[0].trial_key
    confirmed = sweep_module.confirm(prepared, tracker, ranked, proposal)  # type: ignore[arg-type]
    assert trained[-1][0] == CONFIRM_STAGE and confirmed.pairs == 2
    assert all(p["scale"]["index"] == 1 and p["budget"]["steps"] == 8 for _, s, p in tracker.started if s == "confirm")

    # when the largest scale's runs fail, the sweep still ends: the scale-free proposal, and why
    broken = dataclasses.replace(
        ladder,
        by_scale=[
            ladder.by_scale[0],
            [dataclasses.replace(r, status="failed") if i > 1 else r for i, r in enumerate(ladder.by_scale[1])],
        ],
    )
    assert broken.unusable is not None and "2 runs finished at the largest scale" in broken.unusable
    _, _, fallback = recommend(prepared, trials, ladder=broken)
    assert fallback["ladder"]["note"] == broken.unusable and "at" not in fallback["proposal"]

    # a rerun finds every larger-scale run final: nothing trains again, the same picks come back
    again = sweep_module.climb(prepared, tracker, trials)  # type: ignore[arg-type]
    assert len(trained) == 2 and [r.trial_key for r in again.by_scale[1]] == [r.trial_key for r in ladder.by_scale[1]]


@pytest.mark.usefixtures("no_mlflow_env")
def test_without_scales_keys_and_params_are_todays(sweep_corpus: Path, tmp_path: Path) -> None:
    spec = smoke_spec(sweep_corpus, tmp_path / "out", "plain", rounds=2, per_round=2)
    prepared = prepare(load_spec(spec))
    assert prepared.ladder is None and prepared.repetition is None
    m = Mixture({d: 1.0 for d in prepared.domains})
    today = trial_key(
        m,
        proxy=prepared.proxy,
        budget=prepared.budget,
        data_hash=prepared.data_hash,
        seed=0,
        extra={"backend": "megatron", "eval": prepared.spec.eval.model_dump()},
    )
    assert prepared.trial_key(m) == today and prepared.scale_params(m) == {}
    assert prepared.trial_context().target_tokens is None
    # the sweep's key leaves out the new fields at their defaults
    plain = load_spec(spec)
    payload = plain.model_dump(mode="json")
    assert "target" in payload and "scales" in payload["proxy"]
    assert plain.sweep_key("d") == load_spec({**spec, "target": {"params": None}}).sweep_key("d")
    # a ladder whose smallest scale is the plain proxy trains the plain sweep's trials (same keys) when
    # repetition is off: a ladder added to a finished sweep reuses its trials
    laddered = prepare(
        load_spec(
            {
                **spec,
                "proxy": {**spec["proxy"], "scales": [{}, {"budget": {"steps": 8}}], "match_repetition": False},
                "space": {"target_tokens": "50M"},
                "target": TARGET,
            }
        )
    )
    assert laddered.trial_key(m) == today and laddered.trial_key(m, scale=1) != today
    assert dataclasses.replace(laddered.trial_context(), target_tokens=None) == laddered.trial_context()


@pytest.mark.usefixtures("no_mlflow_env")
def test_the_dry_run_prints_the_ladder_and_the_repetition(sweep_corpus: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    path = tmp_path / "spec.json"  # YAML is a superset of JSON
    path.write_text(json.dumps(_spec(sweep_corpus, tmp_path / "out")), encoding="utf-8")
    result = CliRunner().invoke(app, ["sweep", str(path), "--dry-run"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "12 runs; 1: tiny_cpu" in text and "6 runs; proposal at 20M params x 100k tokens" in text
    assert "repetition" in text and not (tmp_path / "out").exists()  # nothing trained or written
