"""Trials on Ray Tune: one trial per mixture (train -> evaluate -> report).

Weights cross the Ray boundary as flat config keys `w.<domain>` (what Ray's result tables show) and
become a `Mixture` again inside the trial. Each trial trains into a folder derived from its inputs, so
a retried trial (`FailureConfig`) or a rerun of the sweep resumes from the last checkpoint. Trials
report validation metrics at every evaluation (ASHA can stop a bad mixture early) and log them to the
trial's MLflow child run, which the driver created before launching it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray  # this module is the Ray side of the sweep: every caller runs trials
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator

from eval.isolated import EvaluationFailed
from flows.steps.spec import ObjectiveSpec, SpecError
from flows.trials.eval_service import evaluate_on_node, stop_node_services
from flows.trials.faults import NO_FAULT, TrialHook, disk_full
from flows.trials.local_ray import ray_init
from flows.trials.result import TrialContext, TrialPlan, TrialReport, TrialResult
from mixture_search.keys import metric_key
from mixture_search.mixture import Mixture
from trainers.budget import TrainBudget
from trainers.errors import TrainingDiverged
from trainers.result import TrainResult

#: the key of a trial's last report to Ray Tune that holds its `TrialReport` (JSON)
REPORT_KEY = "trial_report"


def weight_key(domain: str) -> str:
    return f"w.{metric_key(domain)}"


@dataclass
class RoundOptions:
    cpus: float = 1.0
    gpus: float = 0.0
    max_concurrent: int = 1
    max_failures: int = 2
    asha: dict[str, Any] | None = None  # {"grace_period": .., "reduction_factor": ..}
    ray_address: str | None = None
    storage: Path = field(default_factory=lambda: Path("runs/ray"))
    name: str = "round"
    on_trial_done: Callable[[TrialResult], None] | None = None
    #: trial key -> a hook the trial calls (the fault tests pass one in; none for a real sweep)
    hooks: Mapping[str, TrialHook] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------
# metrics and objective


def eval_metrics(point: Any) -> dict[str, float]:
    """A trainers `EvalPoint` as flat metrics: val.loss.<domain>, val.bpb.<domain> and their means."""
    out = {f"val.loss.{d}": float(v) for d, v in point.loss.items()}
    out.update({f"val.bpb.{d}": float(v) for d, v in point.bpb.items()})
    out["val.loss.mean"] = float(point.mean_loss)
    out["val.bpb.mean"] = float(point.mean_bpb)
    return out


def objective_of(metrics: dict[str, float], objective: ObjectiveSpec) -> float | None:
    """The objective: one metric, or a weighted sum of metrics. None when a needed metric is missing."""
    if objective.weights:
        weights = objective.weights
        missing = [k for k in weights if k not in metrics]
        return None if missing else float(sum(w * metrics[k] for k, w in weights.items()))
    value = metrics.get(objective.metric)
    return None if value is None else float(value)


# ------------------------------------------------------------------------------------------------
# inside the trial (a Ray worker process)


def run_trial(config: dict[str, Any], ctx: TrialContext, hooks: Mapping[str, TrialHook]) -> None:
    """Ray Tune function trainable: train the mixture in `config`, evaluate, report a `TrialReport`."""
    from trainers.train import train  # torch and megatron: imported in the trial process only

    mixture = Mixture([(d, float(config[weight_key(d)])) for d in ctx.domains])
    run_id, key = str(config["run_id"]), str(config["trial_key"])
    client = MlflowClient(ctx.tracking_uri)
    hook = hooks.get(key, NO_FAULT)
    budget = hook.budget(dataclasses.replace(ctx.budget, seed=int(config.get("seed", ctx.budget.seed))))
    node = ray.get_runtime_context().get_node_id()
    trained: list[int] = []  # first and last step trained in this attempt (the first tells whether it resumed)
    started = time.perf_counter()

    def report(metrics: dict[str, float], step: int, final: TrialReport | None = None) -> None:
        payload: dict[str, Any] = {"step": step, "metrics": metrics}
        if ctx.early_stop_metric is not None:
            value = metrics.get(ctx.early_stop_metric)
            payload["es_metric"] = value if value is not None and math.isfinite(value) else float("inf")
        if final is not None:
            payload[REPORT_KEY] = json.dumps(final.to_dict())
        tune.report(payload)

    def fail(metrics: dict[str, float], step: int, error: str, **paths: str) -> None:
        wall_s = time.perf_counter() - started
        report(metrics, step, TrialReport("failed", step, metrics, error=error, paths=paths, wall_s=wall_s, node=node))

    def on_progress(p: Any) -> None:
        if not trained:
            trained.append(p.step)
        trained[1:] = [p.step]
        hook.after_step(p.step, resumed=trained[0] != 1)
        if p.eval is None:
            return
        metrics = eval_metrics(p.eval)
        now = int(time.time() * 1000)
        client.log_batch(
            run_id, metrics=[Metric(metric_key(k), v, now, p.step) for k, v in metrics.items() if math.isfinite(v)]
        )
        if p.step < p.total_steps:  # the final evaluation is reported once, with everything else, below
            report(metrics, p.step)

    try:
        start, schedule = ctx.train_inputs(mixture, budget)  # a phased sweep's trial trains a schedule
        if ctx.resources.workers > 1:
            result = train_on_ray_train(start, ctx, budget, run_id, key, schedule)
        else:
            result = train(
                start,
                ctx.corpus,
                ctx.proxy,
                budget,
                ctx.backend,
                out_dir=ctx.trials_dir,
                progress=on_progress,
                schedule=schedule,
                target_tokens=ctx.target_tokens,
            )
    except TrainingDiverged as exc:
        fail({}, exc.step, str(exc))
        return
    except BaseException as exc:  # a full checkpoint disk fails this trial in one line; anything else goes to Ray
        # (BaseException: torch's CheckpointException, which wraps a failed checkpoint write, is one)
        full = None if isinstance(exc, (KeyboardInterrupt, SystemExit)) else disk_full(exc, ctx.trials_dir)
        if full is None:
            raise
        fail({}, trained[-1] if trained else 0, full)
        return
    metrics = eval_metrics(result.final) if result.final else {}
    if ctx.resources.workers == 1:  # where this attempt started: > 0 when it resumed from a checkpoint
        metrics["train.resumed_from_step"] = float(trained[0] - 1 if trained else result.steps)
    metrics["train.tokens_per_s"] = float(result.tokens_per_s)
    metrics["train.loss.final"] = float(result.loss_curve[-1]) if result.loss_curve else float("nan")
    paths = {"run_dir": result.run_dir, "checkpoint": result.checkpoint or ""}
    if ctx.eval.tasks and result.checkpoint:
        try:  # in the node's long-lived evaluation worker: LightEval is imported once per node
            scores, eval_paths = evaluate_on_node(
                Path(result.checkpoint), ctx.corpus, ctx.eval.tasks, max_docs=ctx.eval.max_docs
            )
        except EvaluationFailed as exc:  # trained fine, evaluation did not: failed, with the training kept
            fail(metrics, result.steps, f"evaluation: {exc}", **paths)
            return
        metrics.update(scores)
        paths.update(eval_paths)
    objective = objective_of(metrics, ctx.objective)
    final = TrialReport(
        "finished",
        result.steps,
        metrics,
        objective=objective if objective is not None and math.isfinite(objective) else None,
        paths=paths,
        backend=result.backend,
        wall_s=time.perf_counter() - started,
        node=node,
    )
    report(metrics, result.steps, final)


def train_on_ray_train(
    mixture: Mixture, ctx: TrialContext, budget: TrainBudget, run_id: str, trial_key: str, schedule: Any = None
) -> Any:
    """Train one mixture on `ctx.resources.workers` Ray Train workers (TorchTrainer: gloo on CPU, NCCL on
    GPUs), each running the trainers' distributed entry point inside the process group Ray Train set up.
    Rank 0 logs every evaluation to the trial's MLflow run and leaves a pointer to its `TrainResult`;
    the trial reports the final result to Tune (only rank 0 sees progress, so no intermediate reports)."""
    from ray.train import RunConfig as TrainRunConfig  # Ray Train: only multi-worker trials need it
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    res = ctx.resources
    storage = Path(ctx.trials_dir).resolve() / "ray_train"
    pointer = storage / f"train_{trial_key[:8]}.json"
    pointer.unlink(missing_ok=True)
    per_worker = {"CPU": res.cpus, **({"GPU": res.gpus} if res.gpus else {})}
    trainer = TorchTrainer(
        _ray_train_worker,
        train_loop_config={
            "mixture": mixture.to_dict(),
            "ctx": ctx,
            "budget": budget,
            "run_id": run_id,
            "pointer": str(pointer),
            "schedule": schedule,
        },
        torch_config=TorchConfig(backend="nccl" if res.gpus else "gloo"),
        scaling_config=ScalingConfig(num_workers=res.workers, use_gpu=bool(res.gpus), resources_per_worker=per_worker),
        run_config=TrainRunConfig(name=f"train_{trial_key[:8]}", storage_path=str(storage)),
    )
    trainer.fit()
    reported = json.loads(pointer.read_text(encoding="utf-8"))
    result = TrainResult.load(Path(reported["result_file"]))
    if reported["diverged"]:
        raise TrainingDiverged(str(reported["diverged"]), step=result.steps, result=result)
    return result


def _ray_train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: `train()` in the initialised process group; rank 0 writes the pointer."""
    import torch.distributed as dist  # torch: imported in the worker process only

    from trainers.train import RESULT_FILE, train  # torch, as above

    ctx: TrialContext = config["ctx"]
    client = MlflowClient(ctx.tracking_uri)

    def on_progress(p: Any) -> None:  # rank 0 only (the trainers call it there)
        if p.eval is not None:
            now = int(time.time() * 1000)
            metrics = [
                Metric(metric_key(k), v, now, p.step) for k, v in eval_metrics(p.eval).items() if math.isfinite(v)
            ]
            client.log_batch(str(config["run_id"]), metrics=metrics)

    diverged = ""
    try:
        result = train(
            Mixture.from_dict(config["mixture"]),
            ctx.corpus,
            ctx.proxy,
            config["budget"],
            ctx.backend,
            out_dir=ctx.trials_dir,
            progress=on_progress,
            schedule=config.get("schedule"),
            target_tokens=ctx.target_tokens,
        )
        run_dir = result.run_dir
    except TrainingDiverged as exc:
        diverged, run_dir = str(exc), str(exc.where)
    if not dist.is_initialized() or dist.get_rank() == 0:
        pointer = Path(config["pointer"])
        pointer.parent.mkdir(parents=True, exist_ok=True)
        pointer.write_text(json.dumps({"result_file": str(Path(run_dir) / RESULT_FILE), "diverged": diverged}))


# ------------------------------------------------------------------------------------------------
# the driver side


def run_round(plans: Sequence[TrialPlan], ctx: TrialContext, opts: RoundOptions) -> list[TrialResult]:
    """Run one Ray Tune experiment with one trial per plan; results in plan order."""
    if not plans:
        return []
    ray_init(opts.ray_address)
    if ctx.resources.workers > 1 and opts.ray_address is None:
        _check_fits(ctx, ray.cluster_resources())
    points = [
        {
            **{weight_key(d): p.mixture.share(d) for d in ctx.domains},
            "trial_key": p.key,
            "run_id": p.run_id,
            "seed": ctx.budget.seed if p.seed is None else p.seed,
        }
        for p in plans
    ]
    space: dict[str, Any] = {weight_key(d): tune.uniform(0.0, 1.0) for d in ctx.domains}
    space["trial_key"] = tune.choice([p.key for p in plans])
    space["run_id"] = tune.choice([p.run_id for p in plans])
    space["seed"] = tune.choice([point["seed"] for point in points])
    # a multi-worker trial is a light driver; its Ray Train workers ask for the CPUs/GPUs themselves
    resources: dict[str, float] = {"cpu": 0.01} if ctx.resources.workers > 1 else {"cpu": opts.cpus, "gpu": opts.gpus}
    hooks = {p.key: opts.hooks[p.key] for p in plans if p.key in opts.hooks}
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx, hooks=hooks), resources)
    scheduler = (
        ASHAScheduler(
            max_t=10**9,
            time_attr="step",
            grace_period=opts.asha.get("grace_period", 1),
            reduction_factor=opts.asha.get("reduction_factor", 2),
        )
        if opts.asha
        else FIFOScheduler()
    )
    tune_config = TuneConfig(
        search_alg=BasicVariantGenerator(points_to_evaluate=points, max_concurrent=opts.max_concurrent),
        num_samples=len(points),
        scheduler=scheduler,
        metric="es_metric" if opts.asha else None,
        mode="min" if opts.asha else None,
        reuse_actors=True,
        trial_name_creator=lambda t: f"trial_{t.config['trial_key'][:8]}",
        trial_dirname_creator=lambda t: f"trial_{t.config['trial_key'][:8]}",
    )
    # Under Ray Client (`ray://`) `Tuner.fit` runs on the cluster's head, and so would a Tune callback:
    # away from this process's Prefect and MLflow clients. There each trial is reported when the round ends.
    client = ray.util.client.ray.is_connected()
    run_config = RunConfig(
        name=_fresh_name(Path(opts.storage).resolve(), opts.name),
        storage_path=str(Path(opts.storage).resolve()),
        failure_config=FailureConfig(max_failures=opts.max_failures),
        checkpoint_config=CheckpointConfig(num_to_keep=1),
        verbose=0,
        callbacks=[
            *([_done_callback(plans, opts.on_trial_done)] if opts.on_trial_done and not client else []),
            *trial_loggers(),
        ],
    )
    # A rerun starts a new experiment (Tuner.restore would bring back the old trial list and callbacks);
    # what was computed is kept anyway: finished trials are skipped by the caller and each unfinished
    # one resumes from the last checkpoint in its keyed training folder.
    tuner = Tuner(trainable, param_space=space, tune_config=tune_config, run_config=run_config)
    # Tune adds no loggers of its own (it reads this in fit()): its JSON and CSV ones are trial_loggers()
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    grid = tuner.fit()
    by_plan = {p.key: p for p in plans}
    by_key: dict[str, TrialResult] = {}
    for i in range(len(grid)):
        res = grid[i]
        plan = by_plan.get(str((res.config or {}).get("trial_key")))
        if plan is not None:
            by_key[plan.key] = to_trial_result(plan, res.metrics or {}, res.error)
            if client and opts.on_trial_done:
                opts.on_trial_done(by_key[plan.key])
    return [
        by_key.get(p.key)
        or TrialResult(
            p.key, p.mixture, "failed", error="trial did not run", run_id=p.run_id, round=p.round, sampler=p.sampler
        )
        for p in plans
    ]


def trial_loggers() -> list[Any]:
    """Tune's per-trial `result.json` and `progress.csv`, without its default TensorBoard logger: that one
    imports tensorboardX, which imports torch (~2 s of the driver's CPU before the first trial, on the
    cores the trials need), and writes event files nobody reads: the sweep's metrics are in MLflow."""
    return [JsonLoggerCallback(), CSVLoggerCallback()]


def end_trials() -> None:
    """What the trials of a sweep leave running on the cluster (each node's evaluation worker) ends
    with the sweep: its driver calls this once its last round is done."""
    if ray.is_initialized():
        stop_node_services()


def _check_fits(ctx: TrialContext, cluster: dict[str, float]) -> None:
    """A multi-worker trial on the local Ray would wait forever for resources it can never get."""
    res = ctx.resources
    need = {"CPU": res.workers * res.cpus + 0.01, "GPU": res.workers * res.gpus}
    for kind, amount in need.items():
        if amount > cluster.get(kind, 0.0) + 1e-9:
            raise SpecError(
                f"a trial of {res.workers} workers needs {amount:g} {kind}s, the local Ray cluster has "
                f"{cluster.get(kind, 0.0):g}",
                where="resources",
            )


def _fresh_name(storage: Path, name: str) -> str:
    """`name`, or `name-2`, `name-3`, ... when an earlier attempt of the round left its experiment folder."""
    attempt = 1
    while (storage / (name if attempt == 1 else f"{name}-{attempt}")).exists():
        attempt += 1
    return name if attempt == 1 else f"{name}-{attempt}"


def to_trial_result(
    plan: TrialPlan, last: dict[str, Any], error: BaseException | None, *, retries: int | None = None
) -> TrialResult:
    """A trial's last report to Tune as a `TrialResult`: its `TrialReport` when it ended by itself,
    failed (with why) when Ray gave up on it, stopped when the scheduler ended it early."""
    extra = {"train.retries": float(retries)} if retries is not None else {}
    common: dict[str, Any] = {"run_id": plan.run_id, "round": plan.round, "sampler": plan.sampler}
    if error is not None:
        metrics = {**dict(last.get("metrics") or {}), **extra}
        return TrialResult(plan.key, plan.mixture, "failed", metrics=metrics, error=_one_line(error), **common)
    if REPORT_KEY in last:
        r = TrialReport.from_dict(json.loads(last[REPORT_KEY]))
        return TrialResult(
            plan.key,
            plan.mixture,
            r.status,
            objective=r.objective,
            metrics={**r.metrics, **extra},
            error=r.error,
            paths=dict(r.paths),
            backend=r.backend,
            wall_s=r.wall_s,
            step=r.step,
            node=r.node,
            **common,
        )
    step = int(last.get("step", 0))
    return TrialResult(
        plan.key,
        plan.mixture,
        "stopped",
        metrics={**dict(last.get("metrics") or {}), **extra},
        error=f"stopped early by the scheduler at step {step}",
        step=step,
        **common,
    )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[-500:] if len(text) > 500 else text


def _done_callback(plans: Sequence[TrialPlan], fn: Callable[[TrialResult], None]) -> Any:
    """A Ray Tune callback telling the driver (e.g. a Prefect progress artifact) about each trial as it ends."""
    by_key = {p.key: p for p in plans}

    class Done(tune.Callback):
        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            plan = by_key.get(trial.config.get("trial_key"))
            if plan is not None:  # train.retries: how often Ray restarted the trial after its worker died
                fn(to_trial_result(plan, trial.last_result or {}, None, retries=trial.num_failures))

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
            plan = by_key.get(trial.config.get("trial_key"))
            if plan is not None:  # the trial's last error (its last line ends the one-line message)
                error = trial.get_pickled_error() or trial.get_error() or RuntimeError("trial errored")
                fn(to_trial_result(plan, trial.last_result or {}, error))

    return Done()
