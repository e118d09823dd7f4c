from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from flows.stack.quiet_env import QUIET_ENV

# Reproducible property tests: the same examples on every run (a failure in CI replays locally), and
# no per-example deadline (a loaded 2-core machine must not turn slowness into failures).
settings.register_profile("mixsweep", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mixsweep"))

# shared session fixtures of some test areas (the small prepared training corpus: `train_corpus`)
pytest_plugins = ["tests.train_helpers", "tests.sweep_helpers"]

TESTS = Path(__file__).parent
FIXTURES = TESTS / "fixtures"
OPENSEEK = FIXTURES / "openseek"
OPENSEEK_EXPERIMENT = OPENSEEK / "OpenSeek-Small-v1-Baseline" / "config_deepseek_v3_1_4b.yaml"
OPENSEEK_TASK = OPENSEEK / "OpenSeek-Small-v1-Baseline" / "train" / "train_deepseek_v3_1_4b.yaml"
OPENSEEK_TOKENS = OPENSEEK / "pretrain_100B_files_tokens.csv"
BAD_INPUTS = TESTS / "bad_inputs"

# Quiet, offline defaults for every engine a test may start (the CLI's and the stack's own).
for key, value in QUIET_ENV.items():
    os.environ.setdefault(key, value)


@pytest.fixture
def openseek_experiment() -> Path:
    return OPENSEEK_EXPERIMENT


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server (SQLite + local artifacts) on a free loopback port, once per session."""
    import subprocess
    import sys
    import time
    import urllib.request

    from flows.stack.local import free_port

    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    cmd = [
        str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{home}/mlflow.db", "--artifacts-destination", str(home / "artifacts"), "--serve-artifacts",
    ]  # fmt: skip
    log = (home / "server.log").open("wb")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"MLflow server did not start: {(home / 'server.log').read_text()[-2000:]}"
                ) from None
            time.sleep(0.3)
    yield uri
    proc.terminate()
    proc.wait(timeout=30)
