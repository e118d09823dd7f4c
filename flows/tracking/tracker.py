"""MLflow bookkeeping of a sweep: one parent run per sweep, one nested child run per trial.

Children carry the mixture as params `w.<domain>` (so MLflow's compare view and parallel-coordinates
chart show weights), the proxy/budget/backend/data hash/trial key, metrics with step history, and tags
(round, sampler, status, rank, stage: `trial`, or `replicate` / `confirm` for the runs that train
chosen mixtures again with new seeds after the last round, which are not trials). A child is found again by its trial key, so a rerun reuses it: there is
exactly one child run per trial, and a finished one is never trained again.

Params, tags and text artifacts pass through `flows.tracking.redact` first (no passwords or tokens in MLflow).
Everything goes through `MlflowClient.log_batch` (<= 1000 metrics / 100 params / 100 tags per call);
the HTTP client retries transient failures (a restarting server) with backoff.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from flows.tracking.redact import redact_params, redact_text, redact_uri
from flows.trials.result import TrialResult
from mixture_search.errors import MixSweepError
from mixture_search.formats import MixtureDoc, render
from mixture_search.keys import metric_key
from mixture_search.mixture import Mixture

TAG_ROLE = "mixsweep.role"
TAG_SWEEP = "mixsweep.sweep_key"
TAG_TRIAL = "mixsweep.trial_key"
TAG_STATUS = "mixsweep.status"
TAG_END_REASON = "mixsweep.end_reason"  # why a sweep and its running children ended early
TAG_FLOW_RUN = "mixsweep.flow_run_id"  # on the parent: the Prefect flow run that last ran the sweep
PARENT = "mlflow.parentRunId"
TRIAL_STAGE = "trial"  # a child run's `stage` (and role): a sweep trial, unless another stage says so
HF_ARTIFACT_LIMIT = 64 * 2**20  # a converted proxy up to this size is stored in MLflow, a bigger one by path
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
NOTE = "mlflow.note.content"  # the experiment's description in MLflow's UI
EXPERIMENT_NOTE_HEADING = "### MixSweep mixture sweeps"
EXPERIMENT_NOTE = f"""{EXPERIMENT_NOTE_HEADING}

Each **sweep** is a parent run (tag `mixsweep.role = sweep`); expand it to see its **trials**, one child
run per candidate mixture. Every child run holds:

- params `w.<domain>`: the mixture, as shares that sum to 1 (`raw.<domain>`: the weights as given);
- metric `objective`: what the sweep ranks by (the spec's objective; its direction is in the parent's
  `spec.objective.maximize` param), and `val.bpb.<domain>` / `val.loss.<domain>`: held-out bits per
  byte and loss per domain, with their history over training steps; `eval.*`: LightEval scores;
- tags `round`, `sampler`, `rank` (1 is the best trial of its sweep), `stage` (`trial`; `replicate`
  and `confirm` are the same mixtures trained again with new seeds after the last round, not trials)
  and `mixsweep.status`.

**To compare mixtures:** in the runs table, *Columns* -> tick `objective`, the `w.` params and the
`val.bpb.` metrics; sort by `objective`; filter `tags.stage = 'trial'`. Select two or more trials and
*Compare*: the parallel-coordinates chart plots the `w.` weights against `objective`. The parent run's
artifacts hold the leaderboard, plots, `plots/parallel_coordinates.html` (every trial, interactive)
and `recommended/` (the exported mixture: our YAML, a Megatron `data_path`, an OpenSeek config).
"""


class TrackingError(MixSweepError):
    """MLflow cannot be reached or refuses what we log."""


def weight_params(mixture: Mixture) -> dict[str, str]:
    """`w.<domain>` = normalised share (what the charts should show) and `raw.<domain>` = exact raw weight."""
    out: dict[str, str] = {}
    for name, raw in mixture.pairs:
        out[f"w.{metric_key(name)}"] = f"{mixture.share(name):.6f}"
        out[f"raw.{metric_key(name)}"] = repr(raw)
    return out


class SweepTracker:
    """The MLflow side of one sweep (identified by `sweep_key`) in one experiment."""

    def __init__(self, tracking_uri: str, experiment: str, *, sweep_name: str, sweep_key: str) -> None:
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.sweep_name = sweep_name
        self.sweep_key = sweep_key
        try:
            exp = self.client.get_experiment_by_name(experiment)
            # the experiment kind makes MLflow's UI open the runs table (not its GenAI traces view)
            self.experiment_id = (
                exp.experiment_id
                if exp
                else self.client.create_experiment(
                    experiment, tags={"mlflow.experimentKind": "custom_model_development"}
                )
            )
        except Exception as exc:  # connection refused, bad URI, server error: all one message for the user
            raise TrackingError(
                f"cannot reach MLflow: {redact_text(' '.join(str(exc).split()))[:300]}", where=redact_uri(tracking_uri)
            ) from None
        self._parent: str | None = None
        self._describe_experiment(exp.tags.get(NOTE) if exp else None)

    def _describe_experiment(self, note: str | None) -> None:
        """The experiment's description (its note in MLflow's UI) says what the runs hold and what to
        compare; a note a user wrote is left as it is."""
        if (note is None or note.startswith(EXPERIMENT_NOTE_HEADING)) and note != EXPERIMENT_NOTE:
            self.client.set_experiment_tag(self.experiment_id, NOTE, EXPERIMENT_NOTE)

    # -- parent ------------------------------------------------------------------------------------
    def parent_run(self, params: dict[str, Any] | None = None) -> str:
        """The sweep's parent run: found again by sweep key (resume) or created."""
        if self._parent:
            return self._parent
        found = self.client.search_runs(
            [self.experiment_id],
            f"tags.`{TAG_SWEEP}` = '{self.sweep_key}' and tags.`{TAG_ROLE}` = 'sweep'",
            max_results=1,
        )
        if found:
            self._parent = found[0].info.run_id
            if found[0].info.status != "RUNNING":
                self.client.update_run(self._parent, status="RUNNING")
        else:
            run = self.client.create_run(
                self.experiment_id, run_name=self.sweep_name, tags={TAG_SWEEP: self.sweep_key, TAG_ROLE: "sweep"}
            )
            self._parent = run.info.run_id
            if params:
                self._log(self._parent, params=_flat_params(params))
        return self._parent

    def tag_flow_run(self, flow_run_id: str | None) -> None:
        """Record on the parent run the Prefect flow run now running the sweep (found again by `of_flow_run`)."""
        if flow_run_id:
            self._log(self.parent_run(), tags={TAG_FLOW_RUN: str(flow_run_id)})

    @classmethod
    def of_flow_run(cls, tracking_uri: str, experiment: str, flow_run_id: str) -> SweepTracker | None:
        """The tracker of the sweep that the Prefect flow run `flow_run_id` ran last (its parent run carries
        the flow run's id), or None when there is no such run. Creates no experiment."""
        client = MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            return None
        found = client.search_runs(
            [exp.experiment_id],
            f"tags.`{TAG_FLOW_RUN}` = '{flow_run_id}' and tags.`{TAG_ROLE}` = 'sweep'",
            max_results=1,
        )
        if not found:
            return None
        run = found[0]
        tracker = cls(tracking_uri, experiment, sweep_name=run.info.run_name, sweep_key=run.data.tags[TAG_SWEEP])
        tracker._parent = run.info.run_id
        return tracker

    def parent_status(self) -> str:
        """The parent run's MLflow status (`RUNNING`, `FINISHED`, `KILLED`, `FAILED`)."""
        return str(self.client.get_run(self.parent_run()).info.status)

    def finish_parent(self, status: str = "FINISHED") -> None:
        if self._parent:
            self.client.set_terminated(self._parent, status=status)

    def abort(self, status: str, reason: str) -> list[str]:
        """A sweep that ends early (cancelled, interrupted, failed): the parent run and every child run still
        `RUNNING` end with `status` (`KILLED` or `FAILED`) and the tag `mixsweep.end_reason`; finished
        children keep theirs, so a rerun reuses them. Returns the child runs it ended."""
        if not self._parent:
            return []
        ended = [r.info.run_id for r in self.children() if r.info.status == "RUNNING"]
        for run_id in ended:
            self._log(run_id, tags={TAG_END_REASON: reason, TAG_STATUS: status.lower()})
            self.client.set_terminated(run_id, status=status)
        self._log(self._parent, tags={TAG_END_REASON: reason})
        self.client.set_terminated(self._parent, status=status)
        return ended

    # -- children ----------------------------------------------------------------------------------
    def children(self) -> list[Any]:
        parent = self.parent_run()
        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], f"tags.`{PARENT}` = '{parent}'", max_results=1000, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def finished_trials(self, stage: str = TRIAL_STAGE) -> dict[str, TrialResult]:
        """Trainings of this sweep's `stage` that finished (or failed for a reason that a rerun would
        repeat), by key: the sweep's trials, or (`stage="replicate"`, `"confirm"`) its replicate or
        confirmation runs, which are never counted as trials (nothing ranks them or feeds them to a
        sampler; replicates enter only through their mixture's mean over seeds).

        Results come back exactly (mixture, objective, metrics, paths) without their step history, which
        stays in MLflow's metric history."""
        out: dict[str, TrialResult] = {}
        for run in self.children():
            if run.data.tags.get(TAG_ROLE, TRIAL_STAGE) != stage:
                continue
            # final = everything was stored; a failed trial is final too (its cause would repeat)
            if run.data.tags.get("mixsweep.final") == "1" and run.info.status in ("FINISHED", "FAILED"):
                result_json = run.data.tags.get("mixsweep.result")
                if result_json:
                    result = TrialResult.from_dict(json.loads(result_json))
                else:
                    result = self._download_result(run.info.run_id)
                result.history = {}
                result.run_id = run.info.run_id
                out[result.trial_key] = result
        return out

    def start_trial(
        self,
        key: str,
        mixture: Mixture,
        *,
        round_: int,
        sampler: str,
        params: dict[str, Any],
        stage: str = TRIAL_STAGE,
        weights: dict[str, str] | None = None,
    ) -> str:
        """The child run of a training: the same run again if this key was started before. `stage`
        (`trial`, or `replicate` / `confirm` for a replicate or confirmation run) is its `stage` tag and
        its role. `weights`: the params that show the mixture (default `weight_params(mixture)`; a
        schedule's are `w.p<k>.<domain>` and `phase.p<k>.until`)."""
        parent = self.parent_run()
        existing = self.client.search_runs(
            [self.experiment_id], f"tags.`{PARENT}` = '{parent}' and tags.`{TAG_TRIAL}` = '{key}'", max_results=1
        )
        tags = {
            TAG_TRIAL: key,
            TAG_STATUS: "running",
            "round": str(round_),
            "sampler": sampler,
            "stage": stage,
            TAG_ROLE: stage,
            "mixsweep.final": "0",
        }
        if existing:
            run_id = existing[0].info.run_id
            self.client.update_run(run_id, status="RUNNING")
            self._log(run_id, tags=tags)
            return str(run_id)
        name = f"r{round_}-{key[:8]}" if stage == TRIAL_STAGE else f"{stage}-{sampler}-{key[:8]}"
        run = self.client.create_run(self.experiment_id, run_name=name, tags={PARENT: parent, **tags})
        self._log(
            run.info.run_id,
            params={
                **(weight_params(mixture) if weights is None else weights),
                **_flat_params(params),
                "trial_key": key,
            },
        )
        return str(run.info.run_id)

    def log_history(self, run_id: str, history: dict[str, Sequence[tuple[int, float]]]) -> None:
        now = int(time.time() * 1000)
        metrics = [
            Metric(metric_key(k), float(v), now, int(step))
            for k, pts in history.items()
            for step, v in pts
            if math.isfinite(v)
        ]
        self._log(run_id, metrics=metrics)

    def end_trial(self, run_id: str, result: TrialResult) -> None:
        now = int(time.time() * 1000)
        # final values go at the last step, and only for keys the trial has not logged itself
        step = max((s for pts in result.history.values() for s, _ in pts), default=result.step)
        logged = set(self.client.get_run(run_id).data.metrics)
        metrics = [
            Metric(metric_key(k), float(v), now, step)
            for k, v in result.metrics.items()
            if math.isfinite(v) and metric_key(k) not in logged
        ]
        if result.objective is not None and math.isfinite(result.objective):
            metrics.append(Metric("objective", float(result.objective), now, step))
        tags = {TAG_STATUS: result.status, "backend": result.backend or ""}
        if result.node:
            tags["ray.node_id"] = result.node
        compact = _result_tag(result)
        if len(compact) <= 7500:  # MLflow tags hold 8000 characters; bigger results are read from trial.json
            tags["mixsweep.result"] = compact
        if result.error:
            tags["error"] = result.error[:5000]
        self._log(run_id, metrics=metrics, tags=tags)
        self._log_trial_files(run_id, result)
        self.log_artifact_text(run_id, "trial.json", json.dumps(result.to_dict(), indent=1))
        self.client.set_terminated(run_id, status="FAILED" if result.status == "failed" else "FINISHED")
        # the final tag is written last: a run is final only once everything above (its end too) is stored
        self._log(run_id, tags={"mixsweep.final": "1"})

    def _log_trial_files(self, run_id: str, result: TrialResult) -> None:
        """The trial's mixture as our YAML, LightEval's JSON, and the Hugging Face model folder (or,
        above `HF_ARTIFACT_LIMIT` bytes, its path as the `hf_dir` tag)."""
        doc = MixtureDoc(result.mixture, "yaml", name=f"trial-{result.trial_key}")
        self.log_artifact_text(run_id, "mixture.yaml", render(doc, "yaml"))
        eval_json = Path(result.paths.get("eval_json", ""))
        if result.paths.get("eval_json") and eval_json.is_file():
            self.log_artifact(run_id, eval_json, "eval")
        hf_dir = Path(result.paths.get("hf_dir", ""))
        if result.paths.get("hf_dir") and hf_dir.is_dir():
            size = sum(f.stat().st_size for f in hf_dir.rglob("*") if f.is_file())
            self._log(run_id, tags={"hf_dir": str(hf_dir)})
            if size <= HF_ARTIFACT_LIMIT:
                self.log_artifact(run_id, hf_dir, "hf_model")

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        self._log(run_id, tags=tags)

    def log_artifact_text(self, run_id: str, name: str, text: str) -> None:
        folder, _, filename = name.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            path.write_text(redact_text(text))
            self.client.log_artifact(run_id, str(path), folder or None)

    def log_artifact(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        if Path(path).is_dir():
            self.client.log_artifacts(run_id, str(path), artifact_path)
        else:
            self.client.log_artifact(run_id, str(path), artifact_path)

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._log(
            run_id, metrics=[Metric(metric_key(k), float(v), now, step) for k, v in metrics.items() if math.isfinite(v)]
        )

    # -- plumbing ----------------------------------------------------------------------------------
    def _log(
        self,
        run_id: str,
        *,
        metrics: Sequence[Metric] = (),
        params: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        # nothing secret reaches MLflow: secret-named keys, URI passwords and secret env values are masked
        p = [Param(k, v[:6000]) for k, v in redact_params(params or {}).items()]
        t = [RunTag(k, v[:8000]) for k, v in redact_params(tags or {}).items()]
        for chunk in _chunks(list(metrics), MAX_METRICS):
            self.client.log_batch(run_id, metrics=chunk)
        for chunk in _chunks(p, MAX_PARAMS):
            self.client.log_batch(run_id, params=chunk)
        for chunk in _chunks(t, MAX_TAGS):
            self.client.log_batch(run_id, tags=chunk)

    def _download_result(self, run_id: str) -> TrialResult:
        with tempfile.TemporaryDirectory() as tmp:
            path = self.client.download_artifacts(run_id, "trial.json", tmp)
            return TrialResult.from_dict(json.loads(Path(path).read_text()))


def _result_tag(result: TrialResult) -> str:
    """The result without its history (kept in metrics), as a tag for one-query resume."""
    data = result.to_dict()
    data["history"] = {}
    return json.dumps(data)


def _flat_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat_params(v, f"{key}."))
        else:
            out[metric_key(key)] = json.dumps(v) if isinstance(v, (list, tuple)) else str(v)
    return out


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


__all__ = ["RunStatus", "SweepTracker", "TrackingError", "weight_params"]
