"""The cluster path, run for real on one machine: a Ray cluster of two nodes on this host (`ray start
--head` and `ray start --address`, each its own raylet, temp dir, custom resource and one CPU, so two
concurrent trials must land on different nodes), the `sweep/smoke` deployment run through it once by
Ray Client (`ray://127.0.0.1:<client port>`) and once by the GCS address (`127.0.0.1:<gcs port>`), with
Prefect and MLflow on PostgreSQL. Each trial records the Ray node it ran on (`node` in `results.json`,
the tag `ray.node_id` on its MLflow run): over a sweep these must be exactly the two nodes' ids.

Ray 2.60 never puts a node on 127.0.0.1 (it replaces a loopback `--node-ip-address` with the host's
address), so the nodes report the host's IP; every port is chosen at run time and the addresses the
sweep gets are loopback ones. The cluster runs with token authentication (`RAY_AUTH_MODE=token`, a token
made per test module, handed to the nodes and to the Prefect worker whose flow runs connect): with
`~/.ray/auth_token` present, a head turns authentication on by itself while a worker node or a driver
without `RAY_AUTH_MODE` does not, so leaving it to chance fails on one machine and not on another.

PostgreSQL (127.0.0.1:5432, trust authentication) may not run on a user's machine: the test skips then.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg2
import pytest
from mlflow.tracking import MlflowClient
from psycopg2 import sql

from flows.stack.local import LocalStack, StackConfig, free_port
from tests.sweep_helpers import smoke_spec, stack_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
PG_HOST = "127.0.0.1:5432"
MARKER = "MIXSWEEP_TEST_RAY_CLUSTER"  # set for the nodes only: what the teardown looks for
NODES = ("node_a", "node_b")  # the custom resource each node carries: it tells which node is which

# Run by a fresh interpreter, so that this test process never holds a Ray connection other tests would reuse.
PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, configure_logging=False)
print(json.dumps({n["NodeID"]: sorted(n["Resources"]) for n in ray.nodes() if n["Alive"]}))
"""


# ------------------------------------------------------------------------------------------------
# PostgreSQL


def _postgres_user() -> str | None:
    """The first of postgres / root that PostgreSQL on 127.0.0.1:5432 lets in, or None."""
    for user in ("postgres", "root"):
        try:
            psycopg2.connect(f"postgresql://{user}@{PG_HOST}/postgres", connect_timeout=3).close()
            return user
        except psycopg2.OperationalError:
            continue
    return None


@pytest.fixture(scope="module")
def cluster_db() -> Iterator[str]:
    """A fresh database name per test module; the stack creates `<name>_prefect` and `<name>_mlflow`
    from it, and both are dropped at the end."""
    user = _postgres_user()
    if user is None:
        pytest.skip(f"PostgreSQL is not reachable on {PG_HOST} (user postgres or root, trust authentication)")
    url = f"postgresql://{user}@{PG_HOST}/mixsweep_cluster_{secrets.token_hex(4)}"
    try:
        yield url
    finally:
        conn = psycopg2.connect(f"postgresql://{user}@{PG_HOST}/postgres", connect_timeout=5)
        conn.autocommit = True
        with conn.cursor() as cur:
            for service in ("prefect", "mlflow"):
                name = f"{url.rpartition('/')[2]}_{service}"
                cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.close()


def _query(url: str, query: str) -> list[tuple]:
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    finally:
        conn.close()


# ------------------------------------------------------------------------------------------------
# the stack and the Ray cluster


@pytest.fixture(scope="module")
def ray_auth() -> dict[str, str]:
    """Token authentication for the cluster and for every process that connects to it."""
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


@pytest.fixture(scope="module")
def cluster_stack(
    tmp_path_factory: pytest.TempPathFactory, cluster_db: str, ray_auth: dict[str, str]
) -> Iterator[LocalStack]:
    """Prefect server + worker and MLflow server on PostgreSQL, the deployments registered. The worker
    starts with the Ray token, so the flow runs it starts can connect to the cluster."""
    cfg = StackConfig(
        home=tmp_path_factory.mktemp("cluster-stack"), prefect_port=free_port(), mlflow_port=free_port(),
        database="postgres", postgres_url=cluster_db,
    )  # fmt: skip
    stack = LocalStack(cfg, log=lambda m: None)
    try:
        with pytest.MonkeyPatch.context() as mp:  # only the processes started here inherit it
            for key, value in ray_auth.items():
                mp.setenv(key, value)
            stack.up()
        yield stack
    finally:
        stack.down()


@dataclass(frozen=True)
class RayCluster:
    gcs_address: str  # 127.0.0.1:<gcs port>
    client_address: str | None  # ray://127.0.0.1:<client port>; None when Ray Client is not installed
    node_ids: dict[str, str]  # custom resource (node_a, node_b) -> Ray node id


def _ray_start(args: list[str], temp_dir: Path, resource: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`ray start --block` for one node, in its own process group; every port it opens is chosen now
    (two nodes on one host must not share one, nor take the defaults another Ray here may use)."""
    ports = {
        "--node-manager-port": free_port(), "--object-manager-port": free_port(),
        "--metrics-export-port": free_port(), "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(), "--runtime-env-agent-port": free_port(),
    }  # fmt: skip
    cmd = [
        str(BIN / "ray"), "start", "--block", *args, "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
        "--resources", json.dumps({resource: 1}), "--temp-dir", str(temp_dir), "--disable-usage-stats",
        "--min-worker-port", "0", "--max-worker-port", "0",  # 0: workers take ports the OS gives
        *(str(x) for kv in ports.items() for x in kv),
    ]  # fmt: skip
    temp_dir.mkdir(parents=True)
    with (temp_dir.parent / f"{resource}.log").open("wb") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _probe(address: str, env: dict[str, str], *, logs: Path | None = None) -> dict[str, list[str]]:
    """The cluster's alive nodes (node id -> resource names) as a driver at `address` sees them.

    Through Ray Client the head starts a server process per client; on a loaded 2-core machine that
    start has failed once (CI), so a Ray Client connection is tried three times, as a driver would
    reconnect. A failure carries the end of the head's client-server logs (under `logs`)."""
    attempts = 3 if address.startswith("ray://") else 1
    for attempt in range(1, attempts + 1):
        out = subprocess.run(
            [sys.executable, "-c", PROBE, address], env=env, capture_output=True, text=True, timeout=120
        )
        lines = out.stdout.strip().splitlines()
        if out.returncode == 0 and lines:
            return dict(json.loads(lines[-1]))
        if attempt < attempts:
            time.sleep(5)
    server_logs = sorted(logs.glob("**/logs/ray_client_server*")) if logs is not None else []
    tails = "\n".join(f"--- {f.name}:\n{f.read_text(errors='replace')[-800:]}" for f in server_logs[-3:])
    raise RuntimeError(f"cannot connect to Ray at {address}: {out.stderr.strip()[-1500:]}\n{tails}")


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `ray start --block` (it stops its raylet, GCS and workers itself), then SIGKILL to its
    whole process group: what is still there after 30 s, or what the first step left behind."""
    proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


def _kill_leftovers(marker: str) -> None:
    """Any process of this cluster still alive: Ray workers run in process groups of their own and
    rename themselves (`ray::ImplicitFunc`), so they are found by the marker every node's environment
    carries down to them."""
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if p.environ().get(MARKER) == marker:
                p.kill()


@pytest.fixture(scope="module")
def ray_cluster(ray_auth: dict[str, str], cluster_stack: LocalStack) -> Iterator[RayCluster]:
    # short temp dirs: Ray's Unix sockets live under them and a socket path holds ~107 characters
    root = Path(tempfile.mkdtemp(prefix="mxray", dir="/tmp"))
    # as deploy/cluster/raycluster.yaml gives every Ray pod MLFLOW_TRACKING_URI and PREFECT_API_URL: under
    # Ray Client, Tune's driver loop and its callbacks run on the head
    env = {**os.environ, **cluster_stack.cfg.client_env(), **ray_auth, MARKER: str(root)}
    gcs_port = free_port()
    client_port = free_port() if importlib.util.find_spec("grpc") is not None else None  # Ray Client needs grpcio
    gcs = f"127.0.0.1:{gcs_port}"
    head_args = ["--head", "--port", str(gcs_port), "--include-dashboard", "false"]
    head_args += ["--dashboard-port", str(free_port())]  # its process starts even so: not on the default 8265
    if client_port is not None:
        head_args += ["--ray-client-server-port", str(client_port)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(_ray_start(head_args, root / "a", NODES[0], env))
        deadline = time.monotonic() + 120
        while not _tcp_answers(gcs_port):
            if procs[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start: {(root / 'node_a.log').read_text()[-2000:]}")
            time.sleep(0.5)
        procs.append(_ray_start(["--address", gcs], root / "b", NODES[1], env))
        deadline = time.monotonic() + 180
        while True:  # both nodes registered, each with its resource
            seen = _probe(gcs, env)
            node_ids = {r: n for n, resources in seen.items() for r in resources if r in NODES}
            if set(node_ids) == set(NODES):
                break
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                logs = "\n".join((root / f"{r}.log").read_text()[-1500:] for r in NODES)
                raise RuntimeError(f"the two Ray nodes did not register (seen {seen}):\n{logs}")
            time.sleep(2)
        client = f"ray://127.0.0.1:{client_port}" if client_port is not None else None
        if client is not None:  # the same two nodes through Ray Client
            assert set(_probe(client, env, logs=root / "a")) == set(node_ids.values())
        yield RayCluster(gcs_address=gcs, client_address=client, node_ids=node_ids)
    finally:
        for proc in reversed(procs):  # the worker node first, then the head
            _stop_group(proc)
        _kill_leftovers(str(root))
        shutil.rmtree(root, ignore_errors=True)


def _tcp_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


# ------------------------------------------------------------------------------------------------
# the test


@pytest.mark.timeout(1200)  # ~1 min for the stack and the cluster, ~1-2 min per sweep on 2 idle cores
@pytest.mark.parametrize("via", ["ray-client", "gcs"])
def test_sweep_runs_trials_on_both_nodes(
    via: str, ray_cluster: RayCluster, cluster_stack: LocalStack, sweep_corpus: Path, tmp_path: Path
) -> None:
    if via == "ray-client" and ray_cluster.client_address is None:
        pytest.fail("Ray Client (ray://) needs `ray[client]` (grpcio), which is not installed: pin ray[tune,client]")
    address = ray_cluster.client_address if via == "ray-client" else ray_cluster.gcs_address
    name = f"cluster-{via}"
    out = tmp_path / "out"
    # one round of two trials, at most two at a time, one CPU each: one per node
    spec = {**smoke_spec(sweep_corpus, out, name, rounds=1, per_round=2, steps=4), "ray_address": address}
    cmd = [
        str(BIN / "prefect"), "deployment", "run", "sweep/smoke", "--params", json.dumps({"spec": spec}),
        "--watch", "--watch-timeout", "900",
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=stack_env(cluster_stack), capture_output=True, text=True, timeout=960)
    assert proc.returncode == 0 and "Completed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]

    nodes = set(ray_cluster.node_ids.values())
    results = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in results] == ["finished", "finished"], results
    assert {r["node"] for r in results} == nodes  # the trials ran on both nodes, and only there
    print(f"{via}: trials on nodes {sorted(r['node'] for r in results)}")

    client = MlflowClient(cluster_stack.cfg.mlflow_uri)
    experiment = client.get_experiment_by_name(f"e2e-{name}")
    trials = [
        r
        for r in client.search_runs([experiment.experiment_id], max_results=100)
        if r.data.tags.get("mixsweep.role") == "trial"
    ]
    by_run = {r["run_id"]: r["node"] for r in results}
    assert {t.info.run_id: t.data.tags["ray.node_id"] for t in trials} == by_run

    # both servers really keep their books in PostgreSQL
    pg = cluster_stack.cfg
    tagged = _query(pg.postgres_database("mlflow"), "SELECT run_uuid, value FROM tags WHERE key = 'ray.node_id'")
    assert set(by_run.items()) <= set(tagged)
    states = _query(pg.postgres_database("prefect"), "SELECT state_type FROM flow_run")
    assert any(str(state).endswith("COMPLETED") for (state,) in states), states
