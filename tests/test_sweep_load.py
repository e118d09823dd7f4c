"""Load, scaled down: 50 candidate mixtures through the real flow, Ray Tune and MLflow with a tiny
trainable (`benchmarks/load.py` runs the same with 500 and writes benchmarks/results/load.json)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from benchmarks import load
from flows.stack.local import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_sweep_of_50_mixtures_completes_with_flat_memory_and_batched_logging(
    sweep_stack: LocalStack, sweep_corpus: Path, tmp_path: Path
) -> None:
    figures = load.run(sweep_stack, sweep_corpus, tmp_path, mixtures=50, rounds=1, name="load50")
    print({k: v for k, v in figures.items() if k != "samples"})
    assert figures["trials"] == figures["finished"] == 50
    client = MlflowClient(sweep_stack.cfg.mlflow_uri)
    exp = client.get_experiment_by_name("load-load50")
    trials = [
        r
        for r in client.search_runs([exp.experiment_id], max_results=1000)
        if r.data.tags.get("mixsweep.role") == "trial"
    ]
    assert len(trials) == 50 and all(t.info.status == "FINISHED" for t in trials)
    assert len({t.data.tags["mixsweep.trial_key"] for t in trials}) == 50
    # batched: a trial's params, metrics and tags travel in a handful of requests, not one per value
    assert figures["mlflow_requests"] > 0, "no request in the MLflow access log"
    assert figures["mlflow_requests_per_trial"] < 25
    # flat: the driver does not grow with the trials it has run
    rss = figures["driver_rss_mb"]
    assert rss["final"] < rss["at_half_of_trials"] + 150, rss
