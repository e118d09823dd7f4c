"""MLflow bookkeeping against a real MLflow server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.tracking.tracker import SweepTracker, TrackingError, weight_params
from flows.trials.result import TrialResult, trial_key
from mixture_search.formats import read_mixture
from mixture_search.keys import metric_key
from mixture_search.mixture import Mixture
from tests.conftest import OPENSEEK_EXPERIMENT
from trainers.budget import TrainBudget
from trainers.presets import tiny_cpu

PROXY, BUDGET = tiny_cpu(), TrainBudget(steps=3)

pytestmark = pytest.mark.integration


def test_keys_and_weight_params() -> None:
    assert metric_key("Reasoning&Instruct") == "Reasoning_Instruct"
    assert metric_key("val.loss/code-high") == "val.loss/code-high"
    params = weight_params(Mixture({"code": 1, "web": 3}))
    assert params == {"w.code": "0.250000", "raw.code": "1.0", "w.web": "0.750000", "raw.web": "3.0"}


def test_one_child_per_trial_and_resume(mlflow_server: str) -> None:
    t = SweepTracker(mlflow_server, "tracking-test", sweep_name="s", sweep_key="k1")
    parent = t.parent_run({"spec": {"rounds": 2, "sampler": "dirichlet"}})
    assert SweepTracker(mlflow_server, "tracking-test", sweep_name="s", sweep_key="k1").parent_run() == parent

    m = Mixture({"code": 1.0, "Reasoning&Instruct": 2.0})
    key = trial_key(m, proxy=PROXY, budget=BUDGET, data_hash="d", seed=0)
    run = t.start_trial(key, m, round_=0, sampler="grid", params={"proxy": {"preset": "tiny"}})
    assert t.start_trial(key, m, round_=0, sampler="grid", params={}) == run  # a retry reuses the run
    t.log_history(run, {"val.loss.code": [(1, 3.0), (2, 2.5)], "val.loss.Reasoning&Instruct": [(2, 2.9)]})
    assert t.finished_trials() == {}  # started, not final
    history = {"val.loss.code": [(1, 3.0), (2, 2.5)]}
    result = TrialResult(
        key, m, "finished", objective=2.7, metrics={"val.loss.code": 2.5}, history=history, round=0, sampler="grid"
    )
    t.end_trial(run, result)

    failed_m = Mixture({"code": 1.0, "Reasoning&Instruct": 0.0})
    fkey = trial_key(failed_m, proxy=PROXY, budget=BUDGET, data_hash="d", seed=0)
    frun = t.start_trial(fkey, failed_m, round_=1, sampler="grid", params={})
    t.end_trial(frun, TrialResult(fkey, failed_m, "failed", error="loss became NaN at step 7"))

    done = SweepTracker(mlflow_server, "tracking-test", sweep_name="s", sweep_key="k1").finished_trials()
    assert set(done) == {key, fkey}
    assert done[key].mixture.pairs == m.pairs and done[key].objective == 2.7 and done[key].run_id == run
    assert done[key].metrics == {"val.loss.code": 2.5} and done[key].history == {}  # history stays in MLflow
    assert done[fkey].status == "failed" and done[fkey].error == "loss became NaN at step 7"

    client = MlflowClient(mlflow_server)
    child = client.get_run(run)
    assert child.data.params["w.Reasoning_Instruct"] == "0.666667" and child.data.tags["mlflow.parentRunId"] == parent
    assert [m.value for m in client.get_metric_history(run, "val.loss.code")] == [3.0, 2.5]
    assert client.get_run(frun).info.status == "FAILED"
    assert len(t.children()) == 2


def test_confirmation_runs_are_children_but_not_trials(mlflow_server: str) -> None:
    t = SweepTracker(mlflow_server, "tracking-test", sweep_name="c", sweep_key="k3")
    m = Mixture({"code": 1.0, "web": 1.0})
    key = trial_key(m, proxy=PROXY, budget=BUDGET, data_hash="d", seed=0)
    ckey = trial_key(m, proxy=PROXY, budget=BUDGET, data_hash="d", seed=1, extra={"stage": "confirm"})
    run = t.start_trial(key, m, round_=0, sampler="grid", params={})
    crun = t.start_trial(ckey, m, round_=1, sampler="proposal", params={"seed": 1}, stage="confirm")
    assert t.start_trial(ckey, m, round_=1, sampler="proposal", params={}, stage="confirm") == crun
    t.end_trial(run, TrialResult(key, m, "finished", objective=2.0))
    t.end_trial(crun, TrialResult(ckey, m, "finished", objective=1.9, sampler="proposal"))
    again = SweepTracker(mlflow_server, "tracking-test", sweep_name="c", sweep_key="k3")
    assert set(again.finished_trials()) == {key}  # never ranked or fed to a sampler
    assert set(again.finished_trials(stage="confirm")) == {ckey}  # but found on a rerun
    tags = MlflowClient(mlflow_server).get_run(crun).data.tags
    assert tags["stage"] == "confirm" and tags["mixsweep.role"] == "confirm"
    assert MlflowClient(mlflow_server).get_run(run).data.tags["stage"] == "trial"


def test_an_aborted_sweep_marks_its_running_runs_and_keeps_the_finished_ones(mlflow_server: str) -> None:
    t = SweepTracker(mlflow_server, "tracking-test", sweep_name="a", sweep_key="k4")
    parent = t.parent_run()
    done, busy = Mixture({"code": 1.0, "web": 1.0}), Mixture({"code": 1.0, "web": 3.0})
    keys = [trial_key(m, proxy=PROXY, budget=BUDGET, data_hash="d", seed=0) for m in (done, busy)]
    run = t.start_trial(keys[0], done, round_=0, sampler="grid", params={})
    t.end_trial(run, TrialResult(keys[0], done, "finished", objective=2.0))
    running = t.start_trial(keys[1], busy, round_=0, sampler="grid", params={})
    assert t.abort("KILLED", "cancelled (TerminationSignal)") == [running]
    client = MlflowClient(mlflow_server)
    for run_id, status in ((parent, "KILLED"), (running, "KILLED"), (run, "FINISHED")):
        assert client.get_run(run_id).info.status == status
    assert client.get_run(parent).data.tags["mixsweep.end_reason"] == "cancelled (TerminationSignal)"
    assert "mixsweep.end_reason" not in client.get_run(run).data.tags
    again = SweepTracker(mlflow_server, "tracking-test", sweep_name="a", sweep_key="k4")
    assert again.parent_run() == parent and client.get_run(parent).info.status == "RUNNING"  # a rerun continues
    assert set(again.finished_trials()) == {keys[0]}  # and trains only what did not finish


def test_the_cancellation_hook_ends_the_runs_of_its_flow_run_only(mlflow_server: str, tmp_path: Path) -> None:
    """The worker's on_cancellation hook (the sweep's own process may die before it can) finds the parent
    run by the flow run's id, ends it and its running children KILLED, and leaves other sweeps alone."""
    from prefect.client.schemas.objects import FlowRun

    from flows.sweep import end_mlflow_runs_on_cancellation

    flow_run = FlowRun(flow_id=uuid.uuid4(), name="cancelled-run", parameters={"spec": {}})
    other_id = str(uuid.uuid4())
    runs = {}
    for name, run_id in (("mine", str(flow_run.id)), ("other", other_id)):
        t = SweepTracker(mlflow_server, "hook-test", sweep_name=name, sweep_key=f"key-{name}")
        t.tag_flow_run(run_id)
        m = Mixture({"code": 1.0, "web": 2.0})
        key = trial_key(m, proxy=PROXY, budget=BUDGET, data_hash=name, seed=0)
        runs[name] = (t.parent_run(), t.start_trial(key, m, round_=0, sampler="grid", params={}))
    spec = {
        "name": "mine",
        "corpus": str(tmp_path),
        "mlflow": {"experiment": "hook-test", "tracking_uri": mlflow_server},
    }
    flow_run.parameters = {"spec": spec}
    end_mlflow_runs_on_cancellation(None, flow_run, None)
    client = MlflowClient(mlflow_server)
    for run_id in runs["mine"]:
        run = client.get_run(run_id)
        assert run.info.status == "KILLED" and run.data.tags["mixsweep.end_reason"].startswith("cancelled (")
    assert [client.get_run(r).info.status for r in runs["other"]] == ["RUNNING", "RUNNING"]
    end_mlflow_runs_on_cancellation(None, flow_run, None)  # again (the flow's process ran it first): no change
    assert client.get_run(runs["mine"][0]).info.status == "KILLED"


def test_the_validations_cancellation_hook_reads_its_own_spec(mlflow_server: str) -> None:
    from prefect.client.schemas.objects import FlowRun

    from flows.validate import end_validate_runs_on_cancellation

    t = SweepTracker(mlflow_server, "hook-validate", sweep_name="v", sweep_key="validate-key")
    flow_run = FlowRun(flow_id=uuid.uuid4(), name="cancelled-validation")
    t.tag_flow_run(str(flow_run.id))
    flow_run.parameters = {
        "spec": {
            "name": "v",
            "sweep": "deploy/specs/demo.yaml",
            "mlflow": {"experiment": "hook-validate", "tracking_uri": mlflow_server},
        }
    }
    end_validate_runs_on_cancellation(None, flow_run, None)
    assert t.parent_status() == "KILLED"


def test_large_results_fall_back_to_the_artifact(mlflow_server: str) -> None:
    m = read_mixture(OPENSEEK_EXPERIMENT).mixture  # 84 long names: too big for a tag
    t = SweepTracker(mlflow_server, "tracking-test", sweep_name="big", sweep_key="k2")
    key = trial_key(m, proxy=PROXY, budget=BUDGET, data_hash="d", seed=1)
    run = t.start_trial(key, m, round_=0, sampler="x", params={})
    metrics = {f"val.loss.{n}": 1.0 + i / 100 for i, n in enumerate(m)}
    t.end_trial(run, TrialResult(key, m, "finished", objective=1.5, metrics=metrics))
    back = t.finished_trials()[key]
    assert back.mixture.pairs == m.pairs and back.metrics == metrics


def test_unreachable_server_is_one_line() -> None:
    import os

    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    try:
        with pytest.raises(TrackingError, match="cannot reach MLflow"):
            SweepTracker("http://127.0.0.1:9", "x", sweep_name="s", sweep_key="k")
    finally:
        del os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"]
