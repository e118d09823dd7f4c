"""Session fixtures for tests of the product as users meet it: the real local stack (`sweep_stack`:
Prefect server + process worker + MLflow server on free loopback ports, deployments registered) and a
tiny prepared corpus (`sweep_corpus`), each started or built once per test session; `smoke_spec`
builds a small inline SweepSpec over that corpus."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flows.stack.local import LocalStack, StackConfig, free_port
from tests.data_support import build_tiny_corpus


@pytest.fixture(scope="session")
def sweep_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    home = tmp_path_factory.mktemp("stack")
    cfg = StackConfig(home=home, prefect_port=free_port(), mlflow_port=free_port())
    stack = LocalStack(cfg, log=lambda m: None)
    try:
        stack.up()
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="session")
def sweep_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_corpus(tmp_path_factory.mktemp("sweep-corpus") / "tiny")


def stack_env(stack: LocalStack) -> dict[str, str]:
    """The environment of a shell that talks to `stack` (PREFECT_API_URL, MLFLOW_TRACKING_URI)."""
    return {**os.environ, **stack.cfg.client_env()}


def smoke_spec(
    corpus: Path,
    out: Path,
    name: str,
    *,
    rounds: int = 2,
    per_round: int = 2,
    steps: int = 4,
    confirm: bool = False,
) -> dict[str, Any]:
    """A SweepSpec (as the dict `prefect deployment run --params` takes) that finishes in a minute or two.
    The confirmation stage is off unless asked for (`confirm=True`): it trains 2 x `seeds` more proxies."""
    return {
        "name": name,
        "corpus": str(corpus),
        "search": {
            "sampler": "dirichlet",
            "adaptive": "adaptive",
            "rounds": rounds,
            "per_round": per_round,
            "proposal_samples": 2000,
        },
        "proxy": {"preset": "tiny_cpu", "overrides": {"seq_len": 32}},
        "budget": {
            "steps": steps,
            "micro_batch": 2,
            "global_batch": 2,
            "eval_interval": 2,
            "eval_windows_per_domain": 2,
        },
        "backend": "megatron",
        "max_concurrent": 2,
        "confirm": {"enabled": confirm},
        "mlflow": {"experiment": f"e2e-{name}"},
        "output_dir": str(out),
    }
