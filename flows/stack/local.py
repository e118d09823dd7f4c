"""The local stack: a Prefect server, a process work pool with a worker, and an MLflow server.

`up` starts what is not already running (on loopback unless told otherwise), records each process
(pid + its start time, so a recycled pid is never mistaken for ours) in `<home>/stack.json`, waits
until each answers, and registers the deployments in `deploy/prefect.yaml`. `down` stops exactly the
processes it recorded. `status` tells running / stale / stopped and whether each one answers.

SQLite is the default store for both servers; `database="postgres"` points both at PostgreSQL (the
cluster configuration).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import psutil
from ruamel.yaml import YAML

from flows.stack.quiet_env import QUIET_ENV
from mixture_search.errors import MixSweepError
from mixture_search.files import atomic_write

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


class StackError(MixSweepError):
    """A stack component that cannot start, answer or stop."""


@dataclass(frozen=True)
class StackConfig:
    home: Path = field(default_factory=lambda: Path(os.environ.get("MIXSWEEP_HOME", "runs/stack")))
    host: str = "127.0.0.1"
    prefect_port: int = 4200
    mlflow_port: int = 5000
    pool: str = "mixsweep-local"
    database: Literal["sqlite", "postgres"] = "sqlite"
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    deploy_file: Path = REPO / "deploy" / "prefect.yaml"

    def __post_init__(self) -> None:
        object.__setattr__(self, "home", Path(self.home).resolve())
        if self.database not in ("sqlite", "postgres"):
            raise StackError(f"database must be sqlite or postgres, not {self.database!r}", where="database")

    @property
    def prefect_api(self) -> str:
        return f"http://{_client_host(self.host)}:{self.prefect_port}/api"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{_client_host(self.host)}:{self.mlflow_port}"

    def client_env(self) -> dict[str, str]:
        """What a client (CLI, worker, test) needs to talk to this stack."""
        return {"PREFECT_API_URL": self.prefect_api, "MLFLOW_TRACKING_URI": self.mlflow_uri, **QUIET_ENV}

    def postgres_database(self, service: str) -> str:
        """`postgresql://.../<db>` -> `postgresql://.../<db>_<service>`: Prefect and MLflow each need
        their own database (both keep an `alembic_version` table)."""
        base, _, db = self.postgres_url.rpartition("/")
        return f"{base}/{db}_{service}"

    def prefect_db_url(self) -> str:
        if self.database == "postgres":
            return self.postgres_database("prefect").replace("postgresql://", "postgresql+asyncpg://", 1)
        return f"sqlite+aiosqlite:///{self.home / 'prefect' / 'prefect.db'}"

    def mlflow_db_url(self) -> str:
        if self.database == "postgres":
            return self.postgres_database("mlflow").replace("postgresql://", "postgresql+psycopg2://", 1)
        return f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}"


def _client_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


#: seconds by which a recorded process's start time may differ from psutil's reading of it, where the
#: clock-free start (`start_ticks`) cannot be read
CREATE_TIME_SLACK = 1.5


def start_ticks(pid: int) -> int | None:
    """The process's start in clock ticks after boot (/proc/PID/stat, field 22): unlike psutil's
    create_time, which adds /proc/stat's btime recomputed from the wall clock, it does not move when the
    clock is adjusted. None where /proc cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # after the command name, which is in parentheses and may hold spaces: field 3 (state) onwards
    return int(stat[stat.rindex(")") + 2 :].split()[19])


@dataclass
class Proc:
    """A process we started: pid plus its start identify it even after pid reuse."""

    name: str
    pid: int
    create_time: float
    cmd: list[str]
    log: str
    url: str | None = None
    #: its start in ticks after boot (`start_ticks`); None in records written before it was kept
    start_ticks: int | None = None

    def alive(self) -> bool:
        try:
            p = psutil.Process(self.pid)
            if p.status() == psutil.STATUS_ZOMBIE:
                return False
            ticks = start_ticks(self.pid) if self.start_ticks is not None else None
            if ticks is not None:
                return ticks == self.start_ticks
            # psutil's create_time moves with the wall clock: a sweep's CI once read a running MLflow server's
            # 12 s apart from its record and called it exited
            return abs(p.create_time() - self.create_time) < CREATE_TIME_SLACK
        except psutil.Error:
            return False


@dataclass(frozen=True)
class Component:
    name: str
    command: Callable[[StackConfig], list[str]]
    env: Callable[[StackConfig], dict[str, str]]
    health_url: Callable[[StackConfig], str | None]


def _prefect_server(cfg: StackConfig) -> list[str]:
    return [str(BIN / "prefect"), "server", "start", "--host", cfg.host, "--port", str(cfg.prefect_port)]


def _prefect_env(cfg: StackConfig) -> dict[str, str]:
    return {
        "PREFECT_HOME": str(cfg.home / "prefect"),
        "PREFECT_API_DATABASE_CONNECTION_URL": cfg.prefect_db_url(),
        "PREFECT_UI_API_URL": cfg.prefect_api,
        "PREFECT_SERVER_API_HOST": cfg.host,
    }


def _mlflow_server(cfg: StackConfig) -> list[str]:
    return [
        str(BIN / "mlflow"), "server", "--host", cfg.host, "--port", str(cfg.mlflow_port), "--workers", "1",
        "--backend-store-uri", cfg.mlflow_db_url(),
        "--artifacts-destination", str(cfg.home / "mlflow" / "artifacts"), "--serve-artifacts",
    ]  # fmt: skip


def _worker(cfg: StackConfig) -> list[str]:
    return [str(BIN / "prefect"), "worker", "start", "--pool", cfg.pool, "--type", "process"]


COMPONENTS: tuple[Component, ...] = (
    Component("prefect-server", _prefect_server, _prefect_env, lambda c: f"{c.prefect_api}/health"),
    Component(
        "mlflow-server",
        _mlflow_server,
        lambda c: {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        lambda c: f"{c.mlflow_uri}/health",
    ),
    Component(
        "prefect-worker",
        _worker,
        # flow runs started by the worker inherit this: they log to this stack's MLflow server
        lambda c: {
            "PREFECT_HOME": str(c.home / "prefect"),
            "PREFECT_API_URL": c.prefect_api,
            "MLFLOW_TRACKING_URI": c.mlflow_uri,
        },
        lambda c: None,
    ),
)


def inline_spec_files(deploy_file: Path, out: Path) -> Path:
    """A copy of the Prefect deployments file `deploy_file` at `out` in which a deployment's `spec`
    parameter that is the path of a YAML file (relative to the repository) holds the file's mapping."""
    round_trip = YAML(typ="rt")  # ruamel's round-trip loader builds no Python objects: safe, and keeps comments
    doc = round_trip.load(deploy_file.read_text(encoding="utf-8"))
    for deployment in doc.get("deployments") or []:
        params = deployment.get("parameters") or {}
        spec = params.get("spec")
        if isinstance(spec, str) and spec.endswith((".yaml", ".yml")):
            path = spec if Path(spec).is_absolute() else REPO / spec
            if not Path(path).is_file():
                raise StackError(
                    "spec file not found", where=f"{deploy_file}: {deployment.get('name')}.parameters.spec"
                )
            params["spec"] = YAML(typ="safe").load(Path(path).read_text(encoding="utf-8"))
    buf = io.StringIO()
    round_trip.dump(doc, buf)
    atomic_write(out, buf.getvalue())
    return out


class LocalStack:
    """Start, inspect and stop the local stack described by a `StackConfig`."""

    def __init__(self, cfg: StackConfig, *, log: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.log = log
        self.state_file = cfg.home / "stack.json"

    # -- state ------------------------------------------------------------------------------------
    def _load(self) -> dict[str, Proc]:
        if not self.state_file.exists():
            return {}
        try:
            raw = json.loads(self.state_file.read_text())
        except json.JSONDecodeError:
            raise StackError(
                "stack state is not valid JSON; remove it after stopping the processes", where=str(self.state_file)
            ) from None
        return {name: Proc(**p) for name, p in raw.get("processes", {}).items()}

    @classmethod
    def at(cls, home: Path, *, log: Callable[[str], None] = print) -> LocalStack:
        """The stack recorded in `home` (its ports and database), or a default one if none is recorded."""
        state = Path(home).resolve() / "stack.json"
        if state.exists():
            try:
                raw = json.loads(state.read_text()).get("config", {})
            except json.JSONDecodeError:
                raise StackError("stack state is not valid JSON", where=str(state)) from None
            return cls(_config_from_dict(raw), log=log)
        return cls(StackConfig(home=home), log=log)

    def _save(self, procs: dict[str, Proc]) -> None:
        payload = {"config": _config_to_dict(self.cfg), "processes": {n: asdict(p) for n, p in procs.items()}}
        atomic_write(self.state_file, json.dumps(payload, indent=2))

    # -- operations -------------------------------------------------------------------------------
    def status(self) -> list[dict[str, object]]:
        procs = self._load()
        rows: list[dict[str, object]] = []
        for comp in COMPONENTS:
            p = procs.get(comp.name)
            url = comp.health_url(self.cfg)
            if p is None:
                state, answers = "stopped", None
            elif not p.alive():
                state, answers = "stale", False
            else:
                state, answers = "running", (_answers(url) if url else True)
            rows.append(
                {
                    "name": comp.name,
                    "state": state,
                    "pid": p.pid if p else None,
                    "answers": answers,
                    "url": url,
                    "log": p.log if p else None,
                }
            )
        return rows

    def up(self, *, timeout: float = 180.0, deploy: bool = True) -> dict[str, str]:
        """Start what is not running; returns the URLs. Idempotent."""
        cfg = self.cfg
        for sub in ("prefect", "mlflow/artifacts", "logs"):
            (cfg.home / sub).mkdir(parents=True, exist_ok=True)
        if cfg.database == "postgres":
            for service in ("prefect", "mlflow"):
                ensure_postgres_database(cfg.postgres_database(service))
        procs = self._load()
        if any(p.alive() for p in procs.values()):
            recorded = LocalStack.at(cfg.home).cfg
            if _config_to_dict(recorded) != _config_to_dict(cfg):
                raise StackError(
                    f"a stack already runs here with other settings (Prefect {recorded.prefect_api}, MLflow "
                    f"{recorded.mlflow_uri}, {recorded.database}); run `mixsweep down` first or use another --home",
                    where=str(cfg.home),
                )
        for comp in COMPONENTS:
            p = procs.get(comp.name)
            if p is not None and p.alive():
                self.log(f"{comp.name}: already running (pid {p.pid})")
                continue
            if p is not None:
                self.log(f"{comp.name}: stale record (pid {p.pid} is gone or reused); starting a new one")
            if comp.name == "prefect-worker":
                self._create_pool(timeout)
            url = comp.health_url(cfg)
            if url:
                port = cfg.prefect_port if comp.name == "prefect-server" else cfg.mlflow_port
                if not _port_free(cfg.host, port):
                    raise StackError(
                        f"port {port} on {cfg.host} is in use by a process this stack did not start; choose another port",
                        where=comp.name,
                    )
            procs[comp.name] = self._spawn(comp)
            self._save(procs)
            if url:
                self._wait(procs[comp.name], url, timeout)
            self.log(f"{comp.name}: started (pid {procs[comp.name].pid})")
        if deploy and cfg.deploy_file.exists():
            self.deploy()
        return {"prefect": cfg.prefect_api.removesuffix("/api"), "mlflow": cfg.mlflow_uri}

    def down(self, *, timeout: float = 20.0) -> list[str]:
        """Stop exactly the processes recorded in the state file; returns the names stopped."""
        procs = self._load()
        stopped = []
        for comp in reversed(COMPONENTS):
            p = procs.pop(comp.name, None)
            if p is None:
                continue
            if p.alive():
                _stop(p, timeout)
                stopped.append(comp.name)
                self.log(f"{comp.name}: stopped (pid {p.pid})")
            else:
                self.log(f"{comp.name}: was not running (stale record removed)")
            self._save(procs)
        return stopped

    def restart(self, name: str, *, timeout: float = 180.0) -> None:
        """Stop the recorded process of component `name` and start it again with the same command (same
        port, same stores); returns once it answers. Clients retry meanwhile (MLflow's HTTP client backs
        off for minutes), so a sweep running against this stack loses nothing."""
        comp = next((c for c in COMPONENTS if c.name == name), None)
        if comp is None:
            raise StackError(f"unknown component (known: {', '.join(c.name for c in COMPONENTS)})", where=name)
        procs = self._load()
        old = procs.get(name)
        if old is not None and old.alive():
            _stop(old, 20.0)
            self.log(f"{name}: stopped (pid {old.pid})")
        procs[name] = self._spawn(comp)
        self._save(procs)
        url = comp.health_url(self.cfg)
        if url:
            self._wait(procs[name], url, timeout)
        self.log(f"{name}: started (pid {procs[name].pid})")

    def deploy(self) -> None:
        """Register the deployments of `deploy/prefect.yaml` on this stack's Prefect server, each `spec`
        parameter that names a YAML file replaced by the file's contents: Prefect's run form then opens
        with every field of the spec filled in (a path or YAML text can still be passed instead)."""
        self.log(f"registering deployments from {self.cfg.deploy_file}")
        prefect_file = inline_spec_files(self.cfg.deploy_file, self.cfg.home / "prefect" / "deployments.yaml")
        _run(
            [str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)],
            env={**_prefect_env(self.cfg), **self.cfg.client_env(), "MIXSWEEP_REPO": str(REPO)},
            cwd=REPO,
            what="prefect deploy",
        )

    # -- helpers ----------------------------------------------------------------------------------
    def _spawn(self, comp: Component) -> Proc:
        log = self.cfg.home / "logs" / f"{comp.name}.log"
        env = {**os.environ, **QUIET_ENV, **comp.env(self.cfg)}
        cmd = comp.command(self.cfg)
        with log.open("ab") as fh:
            proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True)
        return Proc(
            comp.name,
            proc.pid,
            psutil.Process(proc.pid).create_time(),
            cmd,
            str(log),
            comp.health_url(self.cfg),
            start_ticks(proc.pid),
        )

    def _wait(self, p: Proc, url: str, timeout: float) -> None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if not p.alive():
                tail = (
                    Path(p.log).read_text(errors="replace")[-2000:].strip().splitlines()[-1:]
                    if Path(p.log).exists()
                    else []
                )
                raise StackError(
                    f"exited before answering {url}; last log line: {tail[0] if tail else '(empty)'} (log {p.log})",
                    where=p.name,
                )
            if _answers(url):
                return
            time.sleep(0.5)
        raise StackError(f"did not answer {url} within {timeout:.0f}s (log {p.log})", where=p.name)

    def _create_pool(self, timeout: float) -> None:
        env = {**_prefect_env(self.cfg), **self.cfg.client_env()}
        _run(
            [str(BIN / "prefect"), "work-pool", "create", self.cfg.pool, "--type", "process", "--overwrite"],
            env=env,
            cwd=REPO,
            what="work-pool create",
        )


def _config_to_dict(cfg: StackConfig) -> dict[str, object]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}


def _config_from_dict(raw: dict[str, object]) -> StackConfig:
    known = {f for f in StackConfig.__dataclass_fields__}
    kwargs: dict = {k: v for k, v in raw.items() if k in known}
    for key in ("home", "deploy_file"):
        if key in kwargs:
            kwargs[key] = Path(str(kwargs[key]))
    for key in ("prefect_port", "mlflow_port"):
        if key in kwargs:
            kwargs[key] = int(str(kwargs[key]))
    return StackConfig(**kwargs)


def ensure_postgres_database(url: str) -> None:
    """Create the database named in `url` if it does not exist (needs CREATEDB on the server)."""
    import psycopg2  # only `--database postgres` needs it; `mixsweep --help` imports this module
    from psycopg2 import sql  # (the same)

    base, _, name = url.rpartition("/")
    try:
        conn = psycopg2.connect(f"{base}/postgres", connect_timeout=5)
    except psycopg2.OperationalError as exc:
        raise StackError(f"cannot connect to PostgreSQL: {' '.join(str(exc).split())}", where=base) from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    finally:
        conn.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _stop(p: Proc, timeout: float) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the process group (Prefect's worker ignores one SIGTERM)."""
    for sig, wait in ((signal.SIGINT, timeout / 4), (signal.SIGTERM, timeout / 2), (signal.SIGKILL, timeout / 4)):
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not p.alive():
                _reap_group(p.pid)
                return
            time.sleep(0.2)
    _reap_group(p.pid)


def _reap_group(pgid: int) -> None:
    """Children of the group that outlived their parent (uvicorn workers, subprocesses) go too; the
    leader is reaped when it is our own child, so no zombie is left behind."""
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pgid:
                proc.kill()
        except (ProcessLookupError, psutil.Error):
            continue
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)


def _run(cmd: list[str], *, env: dict[str, str], cwd: Path, what: str) -> None:
    out = subprocess.run(cmd, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        last = (out.stderr.strip() or out.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise StackError(f"failed with exit code {out.returncode}: {last[0]}", where=what)
