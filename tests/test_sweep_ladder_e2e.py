"""A sweep with a 2-scale ladder of tiny repetition-matched proxies through the real stack as a user runs it
(`mixsweep sweep SPEC`: an in-process Prefect server, local Ray, MLflow on SQLite, Megatron-Core proxies): every
candidate trains at the smallest scale, the design rule's picks at the larger one, the proposal is made for the
target's scale, and MLflow holds each run's scale, epochs and why it climbed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from ruamel.yaml import YAML

from tests.sweep_helpers import smoke_spec

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent


@pytest.mark.timeout(1200)
def test_a_two_scale_ladder_sweeps_end_to_end(sweep_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = smoke_spec(sweep_corpus, out, "ladder-e2e", rounds=1, per_round=4, steps=4)
    spec["search"]["surrogate"] = "auto"
    spec["proxy"]["scales"] = [{}, {"overrides": {"hidden_size": 96}, "budget": {"steps": 8}}]
    spec["space"] = {"target_tokens": 100_000}
    spec["target"] = {"params": "20M"}
    spec["mlflow"] = {"experiment": "ladder-e2e", "tracking_uri": f"sqlite:///{out / 'mlflow.db'}"}
    path = tmp_path / "spec.yaml"
    with path.open("w", encoding="utf-8") as fh:
        YAML(typ="safe").dump(spec, fh)
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    proc = subprocess.run(
        [str(BIN / "mixsweep"), "sweep", str(path)], env=env, capture_output=True, text=True, timeout=1100
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    summary = json.loads((out / "summary.json").read_text())
    ladder = summary["ladder"]
    assert [s["runs"] for s in ladder["scales"]] == [4, 3] and ladder["target"] == {"params": 20e6, "tokens": 1e5}
    assert summary["proposal"]["at"] == {"params": 20e6, "tokens": 1e5} and "surrogate" in summary["proposal"]
    assert summary["best"]["scale"] == 1
    rows = ladder["leaderboard"]
    assert len(rows) == 4 and sum(r["scale1"] is not None for r in rows) == 3
    assert all(r["scale0"] is not None for r in rows)

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("ladder-e2e")
    assert exp is not None
    runs = [r for r in client.search_runs([exp.experiment_id]) if "mixsweep.trial_key" in r.data.tags]
    by_stage: dict[str, list] = {}
    for r in runs:
        by_stage.setdefault(r.data.tags.get("stage", ""), []).append(r)
    assert len(by_stage["trial"]) == 4 and len(by_stage["scale"]) == 3
    for r in by_stage["trial"] + by_stage["scale"]:
        p = r.data.params
        assert "scale.params" in p and "scale.tokens" in p
        assert any(k.startswith("epochs.proxy.") for k in p) and any(k.startswith("epochs.target.") for k in p)
    small = {int(r.data.params["scale.params"]) for r in by_stage["trial"]}
    large = {int(r.data.params["scale.params"]) for r in by_stage["scale"]}
    assert len(small) == len(large) == 1 and large.pop() > small.pop()
    assert sorted(r.data.tags["scale.why"] for r in by_stage["scale"]) == ["best1", "best2", "spread"]
    assert all(r.info.status == "FINISHED" for r in runs)
