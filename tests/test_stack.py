"""The local stack for real: Prefect server + worker and MLflow server on free loopback ports; and,
without servers, its state file and its one copy of the quiet environment."""

from __future__ import annotations

import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from flows.stack.local import REPO, LocalStack, StackConfig, StackError, free_port
from flows.stack.quiet_env import QUIET_ENV

SMOKE_CHECK = REPO / "deploy" / "smoke_check.py"


def test_quiet_env_is_one_copy() -> None:
    """The stack's clients and the smoke check use the same variables (the CLI imports the same dict)."""
    assert StackConfig().client_env().items() >= QUIET_ENV.items()
    assert runpy.run_path(str(SMOKE_CHECK), run_name="smoke_check")["quiet_env"]() == QUIET_ENV


def test_smoke_check_reads_quiet_env_without_importing_the_package() -> None:
    """The smoke check runs before the package is known to import: it reads the file, imports nothing of ours."""
    code = (
        "import runpy, sys; env = runpy.run_path(sys.argv[1], run_name='smoke_check')['quiet_env'](); "
        "ours = sorted(m for m in sys.modules if m.split('.')[0] in ('flows', 'mixture_search', 'trainers', 'eval')); "
        "print(len(env), ours)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(SMOKE_CHECK)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(len(QUIET_ENV)), "[]"]


def test_state_file_is_written_whole(tmp_path: Path) -> None:
    stack = LocalStack(StackConfig(home=tmp_path / "stack"), log=lambda m: None)
    stack._save({})
    assert json.loads(stack.state_file.read_text())["processes"] == {}
    assert stack._load() == {}
    assert [p.name for p in stack.state_file.parent.iterdir()] == ["stack.json"]  # no temporary left behind


def _postgres_up() -> bool:
    try:
        import psycopg2

        psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=2).close()
        return True
    except Exception:
        return False


def _drop_databases(cfg: StackConfig) -> None:
    import psycopg2

    conn = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        for service in ("prefect", "mlflow"):
            cur.execute(f'DROP DATABASE IF EXISTS "{cfg.postgres_database(service).rpartition("/")[2]}" WITH (FORCE)')
    conn.close()


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_up_status_restart_stale_down(tmp_path: Path, database: str) -> None:
    if database == "postgres" and not _postgres_up():
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    suffix = f"mixsweep_test_{os.getpid()}"
    cfg = StackConfig(
        home=tmp_path / "stack", prefect_port=free_port(), mlflow_port=free_port(), database=database,  # type: ignore[arg-type]
        postgres_url=f"postgresql://postgres@127.0.0.1:5432/{suffix}", deploy_file=tmp_path / "none.yaml",
    )  # fmt: skip
    stack = LocalStack(cfg, log=lambda m: None)
    try:
        stack.up(deploy=False)
        rows = {r["name"]: r for r in stack.status()}
        assert all(r["state"] == "running" and r["answers"] for r in rows.values()), rows
        pids = {n: r["pid"] for n, r in rows.items()}
        for pid in pids.values():  # every server binds loopback only
            for conn in psutil.Process(int(str(pid))).net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    assert conn.laddr.ip in ("127.0.0.1", "::1"), conn

        # idempotent: nothing new is started
        stack.up(deploy=False)
        assert {r["name"]: r["pid"] for r in stack.status()} == pids

        # a crashed worker is detected as stale and replaced, the servers are reused
        os.killpg(int(str(pids["prefect-worker"])), signal.SIGKILL)
        time.sleep(1)
        assert {r["name"]: r["state"] for r in stack.status()}["prefect-worker"] == "stale"
        stack.up(deploy=False)
        after = {r["name"]: r["pid"] for r in stack.status()}
        assert after["prefect-server"] == pids["prefect-server"] and after["prefect-worker"] != pids["prefect-worker"]

        # another home on the same ports cannot steal them
        with pytest.raises(StackError, match="in use"):
            LocalStack(
                StackConfig(home=tmp_path / "other", prefect_port=cfg.prefect_port, mlflow_port=free_port()),
                log=lambda m: None,
            ).up(deploy=False)
    finally:
        stopped = stack.down()
        if database == "postgres":
            _drop_databases(cfg)
    assert sorted(stopped) == ["mlflow-server", "prefect-server", "prefect-worker"]
    assert all(r["state"] == "stopped" for r in stack.status())
    for pid in after.values():
        assert not psutil.pid_exists(int(str(pid))) or psutil.Process(int(str(pid))).status() == psutil.STATUS_ZOMBIE
