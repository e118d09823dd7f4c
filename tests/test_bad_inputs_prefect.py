"""Bad specs through `prefect deployment run 'sweep/smoke' --params '{"spec": ...}'` on the real local stack:
what the flow's parameter schema refuses (an unknown key, a wrong type, a value out of range) Prefect's API
refuses before a flow run exists, naming the field; every other flow run ends Failed, the one-line
reason is in its state message or logs, and no trial starts."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from flows.stack.local import LocalStack
from tests.sweep_helpers import stack_env
from tests.test_bad_inputs_spec import TRAIN, materialise

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BIN = Path(sys.executable).parent
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

# (spec file, corpus damage, how the spec is passed, substrings of the one-line reason)
CASES: list[tuple[str, str | None, str, list[str]]] = [
    ("invalid_yaml.yaml", None, "text", ["invalid YAML"]),
    ("unknown_nested_key.yaml", None, "mapping", ["search.round: unknown key"]),
    ("rounds_zero.yaml", None, "mapping", ["search.rounds"]),
    ("pinned_negative.yaml", None, "mapping", ["space.pinned", "code: share -0.1"]),
    ("unknown_domain.yaml", None, "mapping", ["space.domains", "'klingon-poetry' is not a domain of the corpus"]),
    ("mlflow_refused.yaml", None, "mapping", ["mlflow.tracking_uri", "cannot reach MLflow"]),
    ("valid.yaml", "missing_idx", "mapping", [f"{TRAIN}.idx", "index file not found"]),
]

# reads the final state, logs and task runs of flow runs (in a subprocess: the test process keeps its
# own Prefect settings)
POLL = """
import asyncio, json, sys, time
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

async def main(ids):
    async with get_client() as client:
        deadline = time.monotonic() + float(sys.argv[1])
        while True:
            runs = [await client.read_flow_run(i) for i in ids]
            if all(r.state and r.state.is_final() for r in runs) or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        out = {}
        for r in runs:
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id])))
            tasks = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id])))
            out[str(r.id)] = {
                "state": r.state.type.value if r.state else None,
                "message": r.state.message if r.state else None,
                "logs": [entry.message for entry in logs],
                "tasks": sorted(t.name for t in tasks),
            }
        print(json.dumps(out))

asyncio.run(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def flow_runs(
    sweep_stack: LocalStack, sweep_corpus: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    """All cases submitted at once (the worker runs them side by side), then read back when final."""
    env = stack_env(sweep_stack)
    ids: dict[str, str] = {}
    outs: dict[str, Path] = {}
    refused: dict[str, str] = {}
    for name, setup, form, _ in CASES:
        tmp = tmp_path_factory.mktemp(name.removesuffix(".yaml"))
        with pytest.MonkeyPatch.context() as mp:
            path = materialise(name, setup, sweep_corpus, tmp, mp, silent_port=0)
        text = path.read_text()
        spec: Any = text
        if form == "mapping":
            spec = YAML(typ="safe").load(text)
            spec.update(output_dir=str(tmp / "out"), mlflow={"experiment": f"bad-{tmp.name}", **spec.get("mlflow", {})})
        cmd = [str(BIN / "prefect"), "deployment", "run", "sweep/smoke", "--params", json.dumps({"spec": spec})]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:  # refused by the API's parameter schema: no flow run
            refused[name] = proc.stdout + proc.stderr
            continue
        found = UUID.search(proc.stdout)
        assert found, proc.stdout
        ids[name] = found.group(0)
        outs[name] = tmp / "out"
    poll = subprocess.run(
        [sys.executable, "-c", POLL, "600", *ids.values()], env=env, capture_output=True, text=True, timeout=700
    )
    assert poll.returncode == 0, poll.stderr[-3000:]
    runs = json.loads(poll.stdout.strip().splitlines()[-1])
    return {
        **{name: {**runs[run_id], "out": outs[name]} for name, run_id in ids.items()},
        **{name: {"refused": text} for name, text in refused.items()},
    }


#: the cases whose spec the flow's parameter schema refuses, and the words of the API's reason
REFUSED_BY_SCHEMA = {
    "unknown_nested_key.yaml": ["field 'spec.search'", "'round' was unexpected"],
    "rounds_zero.yaml": ["field 'spec.search.rounds'", "less than the minimum of 1"],
}


@pytest.mark.parametrize(("name", "setup", "form", "expected"), CASES, ids=[c[0].removesuffix(".yaml") for c in CASES])
def test_deployment_run_fails_before_training(
    name: str, setup: str | None, form: str, expected: list[str], flow_runs: dict[str, dict[str, Any]]
) -> None:
    run = flow_runs[name]
    if name in REFUSED_BY_SCHEMA:
        assert "refused" in run, f"the API started a flow run for {name}: {run}"
        assert all(word in run["refused"] for word in REFUSED_BY_SCHEMA[name]), run["refused"]
        assert "Creating flow run" in run["refused"] and not UUID.search(run["refused"].split("Creating flow run")[1])
        return
    assert run["state"] == "FAILED", run
    lines = [run["message"] or "", *run["logs"]]
    reason = [line for line in lines if all(fragment in line for fragment in expected)]
    assert reason, f"{expected} not in the state message or logs: {lines}"
    assert all(fragment in reason[0].strip().splitlines()[-1] for fragment in expected)  # on one line
    assert "run-trials" not in run["tasks"] and "suggest-candidates" not in run["tasks"], run["tasks"]
    assert not (run["out"] / "trials").exists()
