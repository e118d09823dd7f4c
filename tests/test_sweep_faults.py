"""Faults a sweep must survive on the real stack, each test asserting that nothing was lost: a trial's
Ray worker killed mid-training, a trial whose loss goes NaN, the MLflow server restarting mid-sweep, a
full checkpoint disk, and two sweeps at once. (A sweep whose flow process is killed and rerun is
tested in test_sweep_e2e.py.)

Trials are made to misbehave through the documented testing hook `MIXSWEEP_FAULT_INJECT`
(`flows.trials.faults`); workers are killed and servers restarted from outside, as an operator or the
kernel would. Faults that need a sweep of their own each get one; the dead worker and the NaN trial
share one sweep (two trials of it), which keeps the set inside a few minutes on 2 cores."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from mlflow.tracking import MlflowClient

from flows.stack.local import LocalStack
from flows.trials.faults import PAUSED_FILE
from tests.sweep_helpers import smoke_spec, stack_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
DOMAINS = ("prose", "code", "zh", "digits")


# ------------------------------------------------------------------------------------------------
# helpers


@dataclass
class Sweep:
    """A `mixsweep sweep` process and what it leaves behind."""

    name: str
    spec: dict[str, Any]
    proc: subprocess.Popen[bytes]
    log: Path
    started: float
    wall_s: float = 0.0

    @property
    def out(self) -> Path:
        return Path(self.spec["output_dir"])

    @property
    def experiment(self) -> str:
        return str(self.spec["mlflow"]["experiment"])

    def wait(self, timeout: float = 600) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"sweep {self.name} did not end within {timeout:.0f}s: {self.tail()}") from None
        self.wall_s = time.monotonic() - self.started
        return rc

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def running(self) -> None:
        assert self.proc.poll() is None, f"sweep {self.name} ended early: {self.tail()}"


def start_sweep(stack: LocalStack, spec: dict[str, Any], folder: Path, **env: str) -> Sweep:
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / f"{spec['name']}.json"
    spec_file.write_text(json.dumps(spec))
    log = folder / f"{spec['name']}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [str(BIN / "mixsweep"), "sweep", str(spec_file)],
            env={**stack_env(stack), **env},
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Sweep(spec["name"], spec, proc, log, time.monotonic())


def runs(client: MlflowClient, experiment: str) -> tuple[list[Any], list[Any]]:
    """(parent runs, trial runs) of an experiment."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return [], []
    found = client.search_runs([exp.experiment_id], max_results=1000)
    return (
        [r for r in found if r.data.tags.get("mixsweep.role") == "sweep"],
        [r for r in found if r.data.tags.get("mixsweep.role") == "trial"],
    )


def candidates(out: Path, round_: int = 0) -> list[dict[str, float]]:
    """The shares of each candidate of a round, in plan order (read from the sweep's search state)."""
    state = out / "search_state.json"
    if not state.exists():
        return []
    pairs = json.loads(state.read_text())["rounds"][round_]["candidates"]
    return [{n: w / sum(x for _, x in c) for n, w in c} for c in pairs]


def run_of(trials: list[Any], shares: dict[str, float]) -> Any | None:
    """The trial run whose `w.<domain>` params are these shares."""
    for t in trials:
        if all(abs(float(t.data.params.get(f"w.{d}", -1)) - shares.get(d, 0.0)) < 2e-6 for d in DOMAINS):
            return t
    return None


def wait_for(what: str, check: Any, sweep: Sweep, timeout: float = 400, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        sweep.running()
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}: {sweep.tail()}")


def history_steps(client: MlflowClient, run_id: str, key: str = "val.loss.mean") -> list[int]:
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def trial_processes(sweep: Sweep, key: str) -> list[psutil.Process]:
    """The Ray worker process(es) running trial `key`: among the sweep's own descendants (never anyone
    else's Ray), the Tune trainable actor whose working directory is that trial's (Tune changes into it)."""
    found = []
    for p in psutil.Process(sweep.proc.pid).children(recursive=True):
        try:
            if "ImplicitFunc" in " ".join(p.cmdline()) and Path(p.cwd()).name == f"trial_{key[:8]}":
                found.append(p)
        except psutil.Error:
            continue
    return found


def artifact(stack: LocalStack, key: str) -> Any:
    """The latest Prefect artifact with this key, through the server's REST API."""
    body = json.dumps({"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}).encode()
    req = urllib.request.Request(
        f"{stack.cfg.prefect_api}/artifacts/filter", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        found = json.loads(r.read())
    assert found, f"no Prefect artifact {key!r}"
    return found[0]["data"]


def assert_complete(client: MlflowClient, trial: Any, steps: list[int]) -> None:
    """A finished trial with everything stored: final, metrics with their full history, artifacts."""
    assert trial.info.status == "FINISHED" and trial.data.tags["mixsweep.status"] == "finished"
    assert trial.data.tags["mixsweep.final"] == "1"
    assert {"objective", "val.bpb.mean", "val.loss.mean"} <= set(trial.data.metrics)
    assert history_steps(client, trial.info.run_id) == steps  # every evaluation, once
    files = {a.path for a in client.list_artifacts(trial.info.run_id)}
    assert {"mixture.yaml", "trial.json"} <= files


# ------------------------------------------------------------------------------------------------
# a killed trial worker and a NaN trial, in one sweep of 5 trials


@dataclass
class FaultySweep:
    sweep: Sweep
    client: MlflowClient
    killed_pid: int
    killed_at_step: int
    paused_key: str


@pytest.fixture(scope="module")
def faulty_sweep(
    sweep_stack: LocalStack, sweep_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultySweep]:
    folder = tmp_path_factory.mktemp("faulty")
    spec = smoke_spec(sweep_corpus, folder / "out", "faulty", rounds=1, per_round=5, steps=6)
    spec["max_failures"] = 2
    # trial 0 pauses after step 3 (its step-2 checkpoint written) so its worker can be killed there;
    # trial 1 trains at a learning rate that makes its loss NaN
    sweep = start_sweep(sweep_stack, spec, folder, MIXSWEEP_FAULT_INJECT="pause:3@0.0,diverge@0.1")
    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    try:
        first = wait_for("the candidates", lambda: candidates(sweep.out), sweep)[0]
        paused = wait_for("trial 0's run", lambda: run_of(runs(client, sweep.experiment)[1], first), sweep)
        wait_for("trial 0's evaluation at step 2", lambda: 2 in history_steps(client, paused.info.run_id), sweep)
        key = paused.data.tags["mixsweep.trial_key"]
        # the step-2 checkpoint is written, step 3 trained, then the trial sleeps in the pause hook,
        # where its worker is killed
        procs = wait_for("trial 0's worker", lambda: trial_processes(sweep, key), sweep, timeout=60)
        assert len(procs) == 1, procs
        wait_for("trial 0 to pause", lambda: (Path(procs[0].cwd()) / PAUSED_FILE).exists(), sweep, timeout=120)
        procs[0].send_signal(signal.SIGKILL)
        rc = sweep.wait()
        assert rc == 0, sweep.tail()
        yield FaultySweep(sweep, client, procs[0].pid, 3, key)
    finally:
        if sweep.proc.poll() is None:
            os.killpg(sweep.proc.pid, signal.SIGKILL)
            sweep.proc.wait()


def test_a_killed_trial_worker_is_retried_from_its_checkpoint(faulty_sweep: FaultySweep) -> None:
    f = faulty_sweep
    parents, trials = runs(f.client, f.sweep.experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = [t.data.tags["mixsweep.trial_key"] for t in trials]
    assert len(keys) == len(set(keys)) == 5  # exactly one child run per trial, the retried one included
    assert not [t for t in trials if t.info.status == "RUNNING"]  # no orphan
    assert not psutil.pid_exists(f.killed_pid)
    killed = next(t for t in trials if t.data.tags["mixsweep.trial_key"] == f.paused_key)
    assert_complete(f.client, killed, [2, 4, 6])  # step 2 was logged before the kill, 4 and 6 after
    m = killed.data.metrics
    assert m["train.retries"] == 1  # Ray restarted it once
    assert m["train.resumed_from_step"] == 2  # from the step-2 checkpoint, not from scratch
    others = [t for t in trials if t is not killed and t.data.tags["mixsweep.status"] == "finished"]
    assert len(others) == 3
    for t in others:
        assert_complete(f.client, t, [2, 4, 6])
        assert t.data.metrics["train.retries"] == 0 and t.data.metrics["train.resumed_from_step"] == 0
    results = {r["trial_key"]: r for r in json.loads((f.sweep.out / "results.json").read_text())}
    trained = json.loads(Path(results[f.paused_key]["paths"]["run_dir"], "result.json").read_text())
    assert trained["status"] == "completed" and trained["steps"] == 6 and len(trained["loss_curve"]) == 6


def test_a_nan_trial_is_failed_with_its_step_and_the_sweep_goes_on(
    faulty_sweep: FaultySweep, sweep_stack: LocalStack
) -> None:
    f = faulty_sweep
    _, trials = runs(f.client, f.sweep.experiment)
    diverged = run_of(trials, candidates(f.sweep.out)[1])
    assert diverged is not None
    key = diverged.data.tags["mixsweep.trial_key"]
    # MLflow: failed, final (a rerun will not train it again), status and error tags naming the step
    assert diverged.info.status == "FAILED" and diverged.data.tags["mixsweep.status"] == "failed"
    assert diverged.data.tags["mixsweep.final"] == "1"
    error = diverged.data.tags["error"]
    assert "training diverged: loss became " in error and " at step " in error and "\n" not in error
    results = {r["trial_key"]: r for r in json.loads((f.sweep.out / "results.json").read_text())}
    failed = results[key]
    assert failed["status"] == "failed" and failed["objective"] is None
    assert failed["step"] >= 1 and f"at step {failed['step']}" in failed["error"]
    # excluded from the surrogate and the ranking: fitted on the 4 finished trials only
    summary = json.loads((f.sweep.out / "summary.json").read_text())
    assert summary["trials"] == 5 and summary["finished"] == 4 and summary["failed"] == 1
    parent = runs(f.client, f.sweep.experiment)[0][0]
    assert parent.data.metrics["cv.n"] == 4
    assert "rank" not in diverged.data.tags
    assert sorted(int(t.data.tags["rank"]) for t in trials if "rank" in t.data.tags) == [1, 2, 3, 4]
    # Prefect: the final leaderboard and the round report show it failed, with the reason
    rows = artifact(sweep_stack, "faulty-leaderboard")
    rows = json.loads(rows) if isinstance(rows, str) else rows
    row = next(r for r in rows if r["trial"] == key[:8])
    assert row["status"] == "failed" and row["rank"] is None and "training diverged" in row["error"]
    report = artifact(sweep_stack, "faulty-round-1")
    assert "1 failed" in report and f"- `{key[:8]}`: " in report and "training diverged: loss became" in report


# ------------------------------------------------------------------------------------------------
# the MLflow server restarting mid-sweep


def test_mlflow_restart_mid_sweep_loses_nothing(sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path) -> None:
    spec = smoke_spec(sweep_corpus, tmp_path / "out", "mlflow-restart", rounds=1, per_round=3, steps=6)
    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    sweep = start_sweep(sweep_stack, spec, tmp_path)
    try:

        def logging_trial() -> Any:
            _, trials = runs(client, sweep.experiment)
            return next((t for t in trials if history_steps(client, t.info.run_id)), None)

        wait_for("a trial logging its evaluations", logging_trial, sweep)
        t0 = time.monotonic()
        sweep_stack.restart("mlflow-server")  # same command: same port, same SQLite store and artifacts
        downtime = time.monotonic() - t0
        rc = sweep.wait()
    finally:
        if sweep.proc.poll() is None:
            os.killpg(sweep.proc.pid, signal.SIGKILL)
            sweep.proc.wait()
    assert rc == 0, sweep.tail()
    print(f"MLflow down for {downtime:.1f}s; sweep took {sweep.wall_s:.0f}s")
    parents, trials = runs(client, sweep.experiment)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    keys = [t.data.tags["mixsweep.trial_key"] for t in trials]
    assert len(keys) == len(set(keys)) == 3  # a retried create_run made no duplicate
    for t in trials:
        assert t.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert_complete(client, t, [2, 4, 6])
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"leaderboard.json", "summary.json", "spec.yaml", "recommended"} <= artifacts


# ------------------------------------------------------------------------------------------------
# a full checkpoint disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """`<tmp>/out/trials` (a sweep's checkpoint folder) on a 2 MiB tmpfs (needs root or CAP_SYS_ADMIN),
    unmounted afterwards."""
    where = tmp_path / "out" / "trials"
    where.mkdir(parents=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip() or out.stdout.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_checkpoint_disk_fails_its_trials_in_one_line(
    sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path, small_disk: Path
) -> None:
    spec = smoke_spec(sweep_corpus, tmp_path / "out", "disk-full", rounds=1, per_round=2, steps=4)
    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    sweep = start_sweep(sweep_stack, spec, tmp_path)
    rc = sweep.wait()
    print(f"sweep on a full disk took {sweep.wall_s:.0f}s, exit status {rc}")
    _, trials = runs(client, sweep.experiment)
    assert len(trials) == 2 and not [t for t in trials if t.info.status == "RUNNING"]
    failed = [t for t in trials if t.data.tags["mixsweep.status"] == "failed"]
    assert failed, "the small disk did not fill up"
    for t in failed:  # one line, naming the file that could not be written
        error = t.data.tags["error"]
        print(f"trial {t.data.tags['mixsweep.trial_key'][:8]}: {error}")
        assert error.startswith("no space left on device while writing ") and "\n" not in error
        assert str(small_disk) in error
        assert t.info.status == "FAILED"
    for t in trials:
        if t not in failed:  # a trial that fitted is complete
            assert_complete(client, t, [2, 4])
    if len(failed) == len(trials):  # nothing to rank: the sweep says so in one line, without a traceback
        assert rc != 0
        assert "no trial finished, so there is nothing to rank" in sweep.tail()
    else:
        assert rc == 0, sweep.tail()


# ------------------------------------------------------------------------------------------------
# two sweeps at once


def test_two_sweeps_at_once_do_not_mix(sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path) -> None:
    specs = []
    for name in ("twin-a", "twin-b"):
        spec = smoke_spec(sweep_corpus, tmp_path / name, name, rounds=1, per_round=3, steps=4)
        spec["mlflow"]["experiment"] = "e2e-twins"  # one experiment: only the parent runs keep them apart
        specs.append(spec)
    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    sweeps = [start_sweep(sweep_stack, spec, tmp_path) for spec in specs]
    try:
        codes = [s.wait() for s in sweeps]
    finally:
        for s in sweeps:
            if s.proc.poll() is None:
                os.killpg(s.proc.pid, signal.SIGKILL)
                s.proc.wait()
    assert codes == [0, 0], [s.tail() for s in sweeps]
    parents, trials = runs(client, "e2e-twins")
    assert sorted(p.info.run_name for p in parents) == ["twin-a", "twin-b"]
    results = {}
    for s in sweeps:
        parent = next(p for p in parents if p.info.run_name == s.name)
        assert parent.info.status == "FINISHED"
        mine = [t for t in trials if t.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        keys = {t.data.tags["mixsweep.trial_key"] for t in mine}
        assert len(mine) == len(keys) == 3
        for t in mine:
            assert_complete(client, t, [2, 4])
        # each sweep's own folders: results, checkpoints and Ray's experiment point into it only
        rows = json.loads((s.out / "results.json").read_text())
        assert {r["trial_key"] for r in rows} == keys and {r["run_id"] for r in rows} == {t.info.run_id for t in mine}
        for r in rows:
            assert Path(r["paths"]["run_dir"]).resolve().is_relative_to(s.out.resolve())
            assert json.loads(Path(r["paths"]["run_dir"], "result.json").read_text())["status"] == "completed"
        ray_trials = {p.name for p in (s.out / "ray").glob("round_0*/trial_*")}
        assert ray_trials == {f"trial_{k[:8]}" for k in keys}
        results[s.name] = {r["trial_key"]: r["objective"] for r in rows}
    assert len(trials) == 6  # nothing else in the experiment
    # same seed and data: the same mixtures, trained apart, give the same objectives to the last bit
    assert results["twin-a"] == results["twin-b"]
    # the shared blend cache in the corpus: every entry complete, no half-written temporary left
    cache = sweep_corpus / "cache"
    entries = list(cache.glob("blend-*"))
    assert entries and all((e / "summary.json").is_file() for e in entries)
    assert not list(cache.glob(".blend-*"))
