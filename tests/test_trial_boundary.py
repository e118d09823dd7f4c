"""The trial boundary without Ray: a trial's last report to Tune becomes a `TrialResult`, the trial
key is derived from its components' own keys, and `prepare` hands the trials typed values."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from flows.steps.prepare import prepare
from flows.steps.spec import EvalSpec, ObjectiveSpec, load_spec
from flows.steps.timing import Timings
from flows.trials.result import TrialPlan, TrialReport, trial_key
from flows.trials.tune import REPORT_KEY, objective_of, to_trial_result
from mixture_search.mixture import Mixture
from tests.sweep_helpers import smoke_spec
from trainers.budget import TrainBudget
from trainers.config import ProxyConfig
from trainers.presets import tiny_cpu

MIX = Mixture({"a": 1.0, "b": 3.0})
PLAN = TrialPlan("k" * 16, MIX, "run-1", round=1, sampler="adaptive")


def test_a_finished_report_keeps_metrics_apart_from_status_and_paths() -> None:
    report = TrialReport(
        "finished", 8, {"val.bpb.mean": 2.5, "train.tokens_per_s": 100.0}, objective=2.5,
        paths={"run_dir": "/r"}, backend="megatron", wall_s=3.0, node="n1",
    )  # fmt: skip
    last = {"step": 8, "metrics": report.metrics, REPORT_KEY: json.dumps(report.to_dict())}
    result = to_trial_result(PLAN, last, None, retries=1)
    assert (result.status, result.objective, result.step, result.node, result.backend) == (
        "finished", 2.5, 8, "n1", "megatron",
    )  # fmt: skip
    assert result.metrics == {"val.bpb.mean": 2.5, "train.tokens_per_s": 100.0, "train.retries": 1.0}
    assert result.paths == {"run_dir": "/r"}
    assert (result.run_id, result.round, result.sampler) == ("run-1", 1, "adaptive")
    assert TrialReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report


def test_a_failed_report_a_ray_error_and_a_stopped_trial() -> None:
    failed = TrialReport("failed", 4, {}, error="loss is nan at step 4")
    result = to_trial_result(PLAN, {"step": 4, REPORT_KEY: json.dumps(failed.to_dict())}, None)
    assert (result.status, result.error, result.step, result.ok) == ("failed", "loss is nan at step 4", 4, False)
    errored = to_trial_result(PLAN, {"step": 2, "metrics": {"val.loss.mean": 3.0}}, RuntimeError("worker\n died"))
    assert (errored.status, errored.error, errored.metrics) == ("failed", "worker died", {"val.loss.mean": 3.0})
    stopped = to_trial_result(PLAN, {"step": 2, "metrics": {"val.loss.mean": 3.0}}, None)
    assert (stopped.status, stopped.objective, stopped.step) == ("stopped", None, 2)
    assert stopped.error == "stopped early by the scheduler at step 2"


def test_objective_is_one_metric_or_a_weighted_sum() -> None:
    metrics = {"val.bpb.a": 2.0, "val.bpb.b": 4.0, "val.bpb.mean": 3.0}
    assert objective_of(metrics, ObjectiveSpec()) == 3.0
    assert objective_of(metrics, ObjectiveSpec(weights={"val.bpb.a": 0.25, "val.bpb.b": 0.75})) == 3.5
    assert objective_of(metrics, ObjectiveSpec(weights={"val.bpb.c": 1.0})) is None


def test_the_trial_key_follows_each_component_key() -> None:
    proxy, budget = tiny_cpu(seq_len=32), TrainBudget(steps=4)
    base = trial_key(MIX, proxy=proxy, budget=budget, data_hash="d", seed=0)
    assert base == trial_key(Mixture({"a": 2.0, "b": 6.0}), proxy=proxy, budget=budget, data_hash="d", seed=0)
    variants = [
        trial_key(Mixture({"a": 1.0, "b": 2.0}), proxy=proxy, budget=budget, data_hash="d", seed=0),
        trial_key(MIX, proxy=tiny_cpu(seq_len=64), budget=budget, data_hash="d", seed=0),
        trial_key(MIX, proxy=proxy, budget=budget.replace(steps=5), data_hash="d", seed=0),
        trial_key(MIX, proxy=proxy, budget=budget, data_hash="e", seed=0),
        trial_key(MIX, proxy=proxy, budget=budget, data_hash="d", seed=1),
        trial_key(MIX, proxy=proxy, budget=budget, data_hash="d", seed=0, extra={"backend": "deepspeed"}),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_prepare_hands_trials_typed_values(sweep_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = smoke_spec(sweep_corpus, tmp_path / "out", "typed")
    spec["eval"] = {"tasks": ["bpb"], "max_docs": 3}
    spec["objective"] = {"weights": {"val.bpb.code": 0.5, "val.bpb.zh": 0.5}}
    prepared = prepare(load_spec(spec))
    assert isinstance(prepared.proxy, ProxyConfig) and prepared.proxy.vocab_size  # resolved from the corpus
    assert isinstance(prepared.budget, TrainBudget) and prepared.budget.steps == 4
    ctx = prepared.trial_context()
    assert (ctx.proxy, ctx.budget) == (prepared.proxy, prepared.budget)
    assert ctx.eval == EvalSpec(tasks=["bpb"], max_docs=3)
    assert ctx.objective.weights == {"val.bpb.code": 0.5, "val.bpb.zh": 0.5}
    assert ctx.trials_dir == str(tmp_path / "out" / "trials")
    assert dataclasses.replace(ctx, budget=ctx.budget.replace(steps=8)).budget.total_steps(32) == 8


def test_timings_add_up_to_the_total() -> None:
    t = Timings()
    for _ in range(2):
        with t.stage("trials"):
            pass
    out = t.rounded()
    assert set(out) == {"trials", "other", "total"}
    assert out["total"] >= out["trials"] >= 0


def test_the_sweeps_process_runs_its_linear_algebra_on_one_thread() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    from flows.steps.threads import one_blas_thread

    with threadpool_limits(2, user_api="blas"):  # the default on 2 cores; restored after the test
        one_blas_thread()
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert {lib["prefix"] for lib in blas} >= {"libscipy_openblas"}  # scipy's own, loaded by the call
        assert [lib["num_threads"] for lib in blas] == [1] * len(blas)
