"""What a sweep shows in the UIs besides numbers: the parallel-coordinates chart (self-contained HTML),
MLflow run links in the Prefect reports, the recommendation's next step, and the MLflow experiment's
description."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.steps.charts import parallel_coordinates_html
from flows.steps.report import next_step, recommended_markdown, round_report
from flows.tracking.tracker import EXPERIMENT_NOTE, NOTE, SweepTracker
from flows.trials.result import TrialResult
from mixture_search.mixture import Mixture

DOMAINS = ["code", "math", "web"]


def _trial(key: str, weights: list[float], objective: float | None, status: str = "finished") -> TrialResult:
    return TrialResult(
        key * 8,
        Mixture(list(zip(DOMAINS, weights, strict=True))),
        status,  # type: ignore[arg-type]
        objective=objective,
        run_id=f"run-{key}",
    )


TRIALS = [
    _trial("a", [0.5, 0.3, 0.2], 3.1),
    _trial("b", [0.2, 0.2, 0.6], 2.9),
    _trial("c", [0.1, 0.8, 0.1], None, status="failed"),
]


def test_parallel_coordinates_is_self_contained_html(tmp_path: Path) -> None:
    path = parallel_coordinates_html(TRIALS, DOMAINS, tmp_path / "pc.html", objective="val.bpb.mean", title="demo")
    assert path is not None
    html = path.read_text()
    assert "parcoords" in html
    assert not re.search(r"<script[^>]+src=", html)  # plotly.js is inline: no server, no internet
    for label in ("w.code", "w.math", "w.web", "val.bpb.mean", "2 trials"):
        assert label in html
    assert parallel_coordinates_html([TRIALS[2]], DOMAINS, tmp_path / "none.html", objective="x") is None
    assert not (tmp_path / "none.html").exists()


def _round_report(run_urls: dict[str, str] | None) -> str:
    return round_report(
        sweep="demo",
        round_=0,
        rounds=2,
        results=TRIALS,
        domains=DOMAINS,
        objective="val.bpb.mean",
        maximize=False,
        cv=None,
        mlflow_url="http://mlflow/#/experiments/1" if run_urls else None,
        run_urls=run_urls,
    )


def test_round_report_links_each_trial_to_its_mlflow_run() -> None:
    urls = {r.trial_key: f"http://mlflow/#/experiments/1/runs/{r.run_id}" for r in TRIALS}
    report = _round_report(urls)
    for r in TRIALS:
        assert f"[{r.trial_key[:8]}]({urls[r.trial_key]})" in report
    assert "](" not in _round_report(None)


def test_recommended_markdown_links_confirmation_runs_and_says_what_next() -> None:
    exports = ["out/recommended/mixture.yaml", "out/recommended/data_path.txt", "out/recommended/openseek_task.yaml"]
    runs = [
        {"role": "proposal", "seed": 101, "run_id": "r1"},
        {"role": "best_trial", "seed": 101, "run_id": "r2"},
        {"role": "proposal", "seed": 102, "run_id": None},  # never started: no link
    ]
    text = recommended_markdown(
        sweep="demo",
        source="the proposal",
        yaml_text="mixture: {}\n",
        exports=exports,
        confirm_runs=runs,
        run_urls={"r1": "http://m/runs/r1", "r2": "http://m/runs/r2"},
    )
    assert "[proposal, seed 101](http://m/runs/r1)" in text
    assert "[best trial, seed 101](http://m/runs/r2)" in text
    assert "seed 102" not in text
    assert "**Next:** paste `out/recommended/data_path.txt` into your Megatron command" in text
    assert "`out/recommended/openseek_task.yaml`" in text
    assert "confirmation runs" not in recommended_markdown(
        sweep="demo", source="the proposal", yaml_text="", exports=exports
    )


def test_next_step_without_a_data_path() -> None:
    assert (
        next_step(["out/mixture.yaml"])
        == "convert `out/mixture.yaml` for your trainer with `mixsweep mixture convert`."
    )
    assert next_step([]) == "nothing exported."
    assert next_step(["o/mixture.yaml", "o/stages.sh"]) == "start from `o/stages.sh`."


@pytest.mark.integration
def test_experiment_description_is_written_and_a_users_note_kept(mlflow_server: str) -> None:
    client = MlflowClient(mlflow_server)
    SweepTracker(mlflow_server, "ui-texts", sweep_name="s", sweep_key="k1")
    exp = client.get_experiment_by_name("ui-texts")
    assert exp is not None and exp.tags[NOTE] == EXPERIMENT_NOTE
    for column in ("`w.<domain>`", "`objective`", "`val.bpb.<domain>`", "`round`", "`rank`", "`stage`"):
        assert column in EXPERIMENT_NOTE
    client.set_experiment_tag(exp.experiment_id, NOTE, "my own notes")
    SweepTracker(mlflow_server, "ui-texts", sweep_name="s", sweep_key="k2")
    exp = client.get_experiment_by_name("ui-texts")
    assert exp is not None and exp.tags[NOTE] == "my own notes"
