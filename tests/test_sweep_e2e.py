"""The product as users meet it: the real local stack (Prefect server + worker, MLflow server), the
`sweep/smoke` deployment started with `prefect deployment run`, trials on Ray, results in MLflow; and
a sweep killed mid-way that resumes without retraining what finished."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.stack.local import LocalStack
from mixture_search.formats import read_mixture
from tests.sweep_helpers import smoke_spec, stack_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


def children(client: MlflowClient, experiment: str) -> tuple[object, list]:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parent = [r for r in runs if r.data.tags.get("mixsweep.role") == "sweep"]
    return parent, [r for r in runs if r.data.tags.get("mixsweep.role") == "trial"]


def test_smoke_deployment_through_prefect(sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path) -> None:
    spec = smoke_spec(sweep_corpus, tmp_path / "out", "smoke-e2e")
    spec["eval"] = {"tasks": ["bpb"], "max_docs": 2}  # each trial: convert to Hugging Face, run LightEval
    cmd = [
        str(BIN / "prefect"),
        "deployment",
        "run",
        "sweep/smoke",
        "--params",
        json.dumps({"spec": spec}),
        "--watch",
        "--watch-timeout",
        "900",
    ]
    proc = subprocess.run(cmd, env=stack_env(sweep_stack), capture_output=True, text=True, timeout=960)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Completed" in proc.stdout

    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    parents, trials = children(client, "e2e-smoke-e2e")
    assert client.get_experiment_by_name("e2e-smoke-e2e").tags["mlflow.experimentKind"] == "custom_model_development"
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 4 and len({t.data.tags["mixsweep.trial_key"] for t in trials}) == 4
    domains = ("prose", "code", "zh", "digits")
    for t in trials:
        assert t.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert t.info.status == "FINISHED" and t.data.tags["mixsweep.status"] == "finished"
        shares = [float(t.data.params[f"w.{d}"]) for d in domains]
        assert abs(sum(shares) - 1) < 1e-5
        assert "val.bpb.mean" in t.data.metrics and "objective" in t.data.metrics
        assert len(client.get_metric_history(t.info.run_id, "val.loss.prose")) == 2  # evaluations at steps 2 and 4
        assert any(k.startswith("eval.bpb") for k in t.data.metrics)  # LightEval's scores
        files = {a.path for a in client.list_artifacts(t.info.run_id)}
        assert {"mixture.yaml", "trial.json", "eval", "hf_model"} <= files
        weights = read_mixture(Path(client.download_artifacts(t.info.run_id, "mixture.yaml", str(tmp_path)))).mixture
        assert [round(weights.share(d), 6) for d in domains] == [
            round(float(t.data.params[f"w.{d}"]), 6) for d in domains
        ]
    ranks = sorted(int(t.data.tags["rank"]) for t in trials)
    assert ranks == [1, 2, 3, 4]
    best = next(t for t in trials if t.data.tags["rank"] == "1")
    assert best.data.metrics["objective"] == min(t.data.metrics["objective"] for t in trials)
    assert {t.data.tags["round"] for t in trials} == {"0", "1"}

    recommended = read_mixture(tmp_path / "out" / "recommended" / "mixture.yaml").mixture
    assert set(recommended) == set(domains) and abs(sum(recommended.normalized) - 1) < 1e-9
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"recommended", "plots", "leaderboard.json", "spec.yaml", "summary.json"} <= artifacts
    plots = {a.path for a in client.list_artifacts(parents[0].info.run_id, "plots")}
    assert {"plots/objective_vs_weights.png", "plots/leaderboard.png", "plots/loss_curves.png"} <= plots


def test_killed_sweep_resumes_without_retraining(sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path) -> None:
    """Killed in its first round, the sweep resumes, replicates its best trial with a new seed and then
    confirms: the proposal and the best trial (by the mean over seeds) trained again with 2 new seeds,
    as child runs tagged stage=replicate and stage=confirm that are not trials. A third run trains
    nothing, replicate and confirmation runs included."""
    spec = smoke_spec(sweep_corpus, tmp_path / "out", "killed", rounds=2, per_round=3, steps=4, confirm=True)
    spec["search"]["replicates"] = 1
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    cmd = [str(BIN / "mixsweep"), "sweep", str(spec_path)]
    proc = subprocess.Popen(
        cmd, env=stack_env(sweep_stack), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 600
        finished: list = []
        while time.monotonic() < deadline:  # kill as soon as some, not all, trials are final
            exp = client.get_experiment_by_name("e2e-killed")
            if exp is not None:
                _, trials = children(client, "e2e-killed")
                finished = [t for t in trials if t.data.tags.get("mixsweep.final") == "1"]
                if finished:
                    break
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(1)
        assert finished, "no trial finished within the time limit"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = {t.data.tags["mixsweep.trial_key"]: t.info.end_time for t in finished}
    killed_trial_dirs = set((tmp_path / "out" / "ray").glob("*/trial_*"))  # one may have died before its first report
    completed = {  # trainings whose result was complete at the kill
        p: p.stat().st_mtime_ns
        for p in (tmp_path / "out" / "trials").glob("*/result.json")
        if json.loads(p.read_text())["status"] == "completed"
    }

    rerun = subprocess.run(cmd, env=stack_env(sweep_stack), capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    _, trials = children(client, "e2e-killed")
    keys = [t.data.tags["mixsweep.trial_key"] for t in trials]
    assert len(keys) == len(set(keys)) == 6  # one child run per trial: no duplicates
    assert all(t.info.status == "FINISHED" for t in trials)  # no orphan left RUNNING
    for t in trials:  # trials final before the kill were not touched again
        key = t.data.tags["mixsweep.trial_key"]
        if key in before:
            assert t.info.end_time == before[key]
    for path, mtime in completed.items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was trained again"
    # Tune's own trial logs: its JSON and CSV ones, not its TensorBoard logger (which imports torch), for
    # every trial of the rerun (the killed run's experiment folders are kept, a new one per round is started)
    trial_dirs = set((tmp_path / "out" / "ray").glob("*/trial_*")) - killed_trial_dirs
    assert trial_dirs and all((d / "result.json").is_file() and (d / "progress.csv").is_file() for d in trial_dirs)
    assert not list((tmp_path / "out" / "ray").rglob("events.out.tfevents*"))

    # the confirmation: 2 seeds x (proposal, best trial), in summary.json, MLflow and `mixsweep results`
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    confirm = summary["confirm"]
    print("confirmation:", confirm["verdict"], "timings:", summary["timings_s"])
    assert confirm["seeds"] == [1, 2] and confirm["pairs"] == 2 and confirm["exported"] in ("proposal", "best_trial")
    assert confirm["best_trial"] == summary["best"]["trial"] and confirm["lo"] <= confirm["diff"] <= confirm["hi"]
    assert "confirmation: " + confirm["verdict"][:40] in " ".join(rerun.stdout.split())
    exp = client.get_experiment_by_name("e2e-killed")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    confirm_runs = [r for r in runs if r.data.tags.get("stage") == "confirm"]
    assert sorted(r.data.tags["mixsweep.trial_key"] for r in confirm_runs) == sorted(
        r["trial_key"] for r in confirm["runs"]
    )
    assert len(confirm_runs) == 4 and all(r.info.status == "FINISHED" for r in confirm_runs)
    assert not set(keys) & {r.data.tags["mixsweep.trial_key"] for r in confirm_runs}  # not trials
    assert len(json.loads((tmp_path / "out" / "results.json").read_text())) == 6
    (parent,) = [r for r in runs if r.data.tags.get("mixsweep.role") == "sweep"]
    assert parent.data.tags["confirm.verdict"] == confirm["verdict"]
    assert parent.data.metrics["confirm.diff"] == pytest.approx(confirm["diff"])
    assert parent.data.metrics["confirm.seeds"] == 2

    # does the proxy separate the mixtures? the 6 trials' spread against the seed noise of the mixtures
    # trained again: the confirmation's 2 x 2 runs and the replicated mixture's 2 (3 degrees of freedom)
    separated = summary["separation"]
    assert separated["trials"] == 6 and (separated["seed_runs"], separated["seed_dof"]) == (6, 3)
    assert separated["level"] in ("well", "roughly", "barely") and separated["seed_std"] > 0
    assert parent.data.tags["noise.verdict"] == separated["verdict"]
    assert parent.data.metrics["noise.trial_std"] == pytest.approx(separated["trial_std"])
    assert separated["verdict"][:40] in " ".join(rerun.stdout.split())

    # the replicate: the best trial by its first seed, trained again with seed 1000; ranked by the mean
    replicates = summary["replicates"]
    (replicated,) = replicates["replicated"]
    assert replicates["seed"] == 1000 and replicates["seeds_per_mixture"][replicated] == 2
    assert replicates["seed_std"] is not None and summary["proposal"]["noise_std"] == replicates["seed_std"]
    assert parent.data.metrics["replicates.seed_std"] == pytest.approx(replicates["seed_std"])
    (replicate_run,) = [r for r in runs if r.data.tags.get("stage") == "replicate"]
    assert replicate_run.info.status == "FINISHED" and replicate_run.data.params["seed"] == "1000"
    assert replicate_run.data.tags["mixsweep.trial_key"] not in keys  # not a trial

    # a third run trains nothing: no new child run, none ended again, no training folder touched
    ended = {r.info.run_id: r.info.end_time for r in runs if r.data.tags.get("mixsweep.role") != "sweep"}
    trained = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "trials").glob("*/result.json")}
    assert len(trained) == 11  # 6 trials + 1 replicate + 4 confirmation runs
    again = subprocess.run(cmd, env=stack_env(sweep_stack), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    assert {r.info.run_id: r.info.end_time for r in runs if r.data.tags.get("mixsweep.role") != "sweep"} == ended
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "trials").glob("*/result.json")} == trained
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["confirm"]["diff"] == confirm["diff"]


STATE = """
import asyncio, sys
from prefect.client.orchestration import get_client

async def main(run_id):
    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        print(run.state.type.value if run.state else "NONE")

asyncio.run(main(sys.argv[1]))
"""


@pytest.mark.timeout(1200)  # ~4 min on 2 idle cores (a cancelled sweep, then its rerun); more on shared ones
def test_a_sweep_cancelled_from_prefect_leaves_mlflow_clean_and_a_rerun_continues(
    sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path
) -> None:
    """`prefect flow-run cancel` (what the UI's Cancel button does) on a running sweep: the flow run ends
    Cancelled, its MLflow parent run and the child runs it was training end KILLED with a tag saying
    why, the finished trials stay FINISHED, and a rerun trains only what had not finished."""
    env = stack_env(sweep_stack)
    spec = smoke_spec(sweep_corpus, tmp_path / "out", "cancelled", rounds=2, per_round=2, steps=4)
    cmd = [str(BIN / "prefect"), "deployment", "run", "sweep/smoke", "--params", json.dumps({"spec": spec})]
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", started.stdout)
    assert found, started.stdout
    run_id = found.group(0)

    def state() -> str:
        out = subprocess.run([sys.executable, "-c", STATE, run_id], env=env, capture_output=True, text=True, timeout=60)
        return out.stdout.strip()

    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    deadline = time.monotonic() + 600
    finished: list = []
    while time.monotonic() < deadline:  # cancel as soon as some, not all, trials are final
        if client.get_experiment_by_name("e2e-cancelled") is not None:
            _, trials = children(client, "e2e-cancelled")
            finished = [t for t in trials if t.data.tags.get("mixsweep.final") == "1"]
            if finished:
                break
        assert state() not in ("COMPLETED", "FAILED", "CRASHED"), "the sweep ended before it could be cancelled"
        time.sleep(1)
    assert finished, "no trial finished within the time limit"
    cancel = subprocess.run(
        [str(BIN / "prefect"), "flow-run", "cancel", run_id], env=env, capture_output=True, text=True, timeout=60
    )
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    deadline = time.monotonic() + 180
    while state() != "CANCELLED" and time.monotonic() < deadline:
        time.sleep(2)
    assert state() == "CANCELLED"

    parents, trials = children(client, "e2e-cancelled")
    assert len(parents) == 1 and parents[0].info.status == "KILLED", parents[0].data.tags.get("mixsweep.end_reason")
    assert parents[0].data.tags["mixsweep.end_reason"].startswith("cancelled (")
    assert not [t for t in trials if t.info.status == "RUNNING"]  # no orphan left RUNNING
    killed = [t for t in trials if t.info.status == "KILLED"]
    assert all(t.data.tags["mixsweep.end_reason"].startswith("cancelled") for t in killed)
    before = {t.data.tags["mixsweep.trial_key"]: t.info.end_time for t in finished}
    assert all(client.get_run(t.info.run_id).info.status == "FINISHED" for t in finished)

    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    rerun = subprocess.run(
        [str(BIN / "mixsweep"), "sweep", str(spec_path)], env=env, capture_output=True, text=True, timeout=900
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    parents, trials = children(client, "e2e-cancelled")
    assert parents[0].info.status == "FINISHED"
    assert len({t.data.tags["mixsweep.trial_key"] for t in trials}) == len(trials) == 4
    assert all(t.info.status == "FINISHED" for t in trials)
    for t in trials:  # trials final before the cancellation were not trained again
        key = t.data.tags["mixsweep.trial_key"]
        if key in before:
            assert t.info.end_time == before[key]
