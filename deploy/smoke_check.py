"""Smoke check run at the end of `make setup`: catches a broken install that `pip check` misses.

It imports every engine, and really starts a Prefect server, an MLflow server and a Ray runtime on
loopback ports (in a throw-away state folder), waits until each answers, and stops them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def quiet_env() -> dict[str, str]:
    """The package's one `QUIET_ENV`, read from its file: this script checks whether the package imports
    (in `main`, with every engine), so it must not depend on that. `flows/stack/quiet_env.py` imports
    nothing, so loading it by path runs no package code but its own, and needs no install."""
    path = Path(__file__).resolve().parents[1] / "flows" / "stack" / "quiet_env.py"
    spec = importlib.util.spec_from_file_location("_mixsweep_quiet_env", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return dict(module.QUIET_ENV)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, name: str, timeout: float = 180) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"smoke check: {name} exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"smoke check: {name} did not answer {url} within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    for mod in (
        "numpy", "torch", "megatron.core", "deepspeed", "transformers", "tokenizers", "lighteval", "datasets",
        "prefect", "ray.tune", "mlflow", "lightgbm", "sklearn", "scipy", "optuna", "omegaconf", "ruamel.yaml",
        "mixture_search", "trainers", "eval", "flows",
    ):  # fmt: skip
        t = time.monotonic()
        m = importlib.import_module(mod)
        print(f"  import {mod:<14} {getattr(m, '__version__', ''):<12} {time.monotonic() - t:5.1f}s", flush=True)
    import torch  # after the loop above, which names the engine that fails to import

    assert torch.__version__.startswith("2.13.0"), f"expected torch 2.13.0, found {torch.__version__}"
    # after the loop, like torch; fails when megatron-core is half-installed
    from megatron.core.models.gpt import GPTModel  # noqa: F401

    env = {**os.environ, **quiet_env()}
    with tempfile.TemporaryDirectory(prefix="mixsweep-smoke-") as tmp:
        pp, mp = free_port(), free_port()
        penv = {
            **env,
            "PREFECT_HOME": f"{tmp}/prefect",
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{tmp}/prefect.db",
        }
        prefect = subprocess.Popen(
            [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(pp)],
            env=penv, stdout=open(f"{tmp}/prefect.log", "w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        menv = {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        mlflow = subprocess.Popen(
            [BIN / "mlflow", "server", "--host", "127.0.0.1", "--port", str(mp), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db", "--default-artifact-root", f"{tmp}/artifacts"],
            env=menv, stdout=open(f"{tmp}/mlflow.log", "w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            import ray  # after the loop above, like torch

            t = time.monotonic()
            for attempt in (1, 2):  # Ray gives its raylet 30 s to register; a loaded machine may need a second try
                try:
                    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
                    break
                except Exception as exc:
                    ray.shutdown()
                    if attempt == 2:
                        raise
                    print(f"  ray runtime             did not start ({exc}); trying once more", flush=True)
            assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
            ray.shutdown()
            print(f"  ray runtime             up and ran a task in {time.monotonic() - t:5.1f}s", flush=True)
            for name, url, proc, log in (
                ("MLflow server", f"http://127.0.0.1:{mp}/health", mlflow, "mlflow.log"),
                ("Prefect server", f"http://127.0.0.1:{pp}/api/health", prefect, "prefect.log"),
            ):
                try:
                    took = wait_http(url, proc, name)
                except SystemExit:
                    print(Path(tmp, log).read_text()[-3000:], file=sys.stderr)
                    raise
                print(f"  {name:<23} answered in {took:5.1f}s", flush=True)
        finally:
            stop(prefect)
            stop(mlflow)
    print("smoke check passed")


if __name__ == "__main__":
    main()
