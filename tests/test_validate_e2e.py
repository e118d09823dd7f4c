"""`mixsweep validate` end to end on the tiny corpus with tiny budgets: the sweep, proxy- and
target-scale trainings with 2 seeds on Ray Tune, LightEval, the report in HTML/JSON/MLflow; a second
run trains nothing and ends with the same MLflow runs."""

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

TWICE = """
import json, sys, time
from flows.validate import validate
times = []
for _ in range(2):
    t = time.perf_counter()
    out = validate(sys.argv[1])
    times.append(time.perf_counter() - t)
print(json.dumps({"times": times, **out}))
"""


@pytest.mark.timeout(1200)  # ~6 min on 2 idle cores; much more when other jobs share them
def test_validate_end_to_end_and_rerun(sweep_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "validate"
    spec = {
        "name": "tiny-validate",
        "sweep": smoke_spec(sweep_corpus, tmp_path / "sweep", "tiny-validate-sweep", steps=4),
        "target": {"preset": "tiny_cpu", "overrides": {"seq_len": 32, "hidden_size": 160, "ffn_hidden_size": 480}},
        "budget": {"steps": 8, "micro_batch": 2, "global_batch": 4, "eval_interval": 8, "eval_windows_per_domain": 2},
        "seeds": [0, 1],
        "baselines": ["uniform", "best"],
        "rank_mixtures": 3,
        "eval": {"tasks": ["cloze"], "max_docs": 2},
        "output_dir": str(out),
    }
    spec["sweep"]["mlflow"]["tracking_uri"] = f"sqlite:///{tmp_path / 'sweep-mlflow.db'}"
    path = tmp_path / "validate.yaml"
    YAML(typ="safe").dump(spec, path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_API", "MLFLOW_TRACKING"))}
    env.update({"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90"})

    dry = subprocess.run(
        [str(BIN / "mixsweep"), "validate", str(path), "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "trainings" in dry.stdout and "x)" in dry.stdout and not (out / "validation.json").exists()

    proc = subprocess.run(
        [sys.executable, "-c", TWICE, str(path)], env=env, capture_output=True, text=True, timeout=1100
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])

    doc = json.loads((out / "validation.json").read_text())
    assert [m["name"] for m in doc["mixtures"]] == ["recommended", "uniform", "best"]
    for m in doc["mixtures"]:
        assert m["target"]["n"] == 2 and m["proxy"]["n"] == 2, m
        assert m["lighteval"]["cloze"] is not None and set(m["domains"]) == {"prose", "code", "zh", "digits"}
    assert {c["baseline"] for c in doc["comparisons"]} == {"uniform", "best"}
    assert doc["rank_agreement"]["n"] == 3
    assert doc["scale"]["target"]["params"] >= 4 * doc["scale"]["proxy"]["params"]
    assert doc["verdict"] == result["verdict"]
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<script" not in page

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("mixsweep-validate")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("mixsweep.kind") == "validate"]
    trials = [r for r in runs if r.data.tags.get("mixsweep.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == 12  # 3 mixtures x 2 seeds x 2 scales, each once although the flow ran twice
    assert {t.data.tags["mlflow.runName"] for t in trials} >= {"target-recommended-s0", "proxy-uniform-s1"}
    assert all(t.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for t in trials)
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"report.html", "validation.json", "plots"} <= artifacts
    # the second run found everything final: no training, only the sweep's and this report's bookkeeping
    first, second = result["times"]
    assert second < first
