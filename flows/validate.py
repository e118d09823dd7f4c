"""The Prefect flow `validate`: does a sweep's recommended mixture still win when the model grows?

1. The sweep of `ValidateSpec.sweep` runs as a subflow (it resumes, so a finished sweep only redoes
   its report).
2. The mixtures: the recommendation, the baselines (uniform, natural = token-proportional, the best
   proxy trial) and, for the rank agreement, a few more of the sweep's trials (worst first, so the
   ranking spans the range).
3. Each mixture is trained with every seed at the proxy scale (the sweep's own proxy and budget, so
   the sweep's trials are reused) and at the target scale (a larger preset and budget, at least
   `min_scale` times the proxy's parameters and tokens), on Ray Tune through `flows.trials.tune.run_round`,
   one round per scale and seed; target models are then evaluated with LightEval's local tasks. A sweep
   with a proxy ladder (`proxy.scales`) trains them at its largest scale too, the target must outgrow
   that one, and its model of (mixture, scale) predicts every mixture at the target's size.
4. `flows.steps.validate_report` turns the runs into means with error bars, paired differences, Spearman's
   rho of proxy (and scale-aware prediction) vs target ranking and a verdict, written as
   `validation.json`, plots and a self-contained `report.html`, and logged to MLflow (a parent run, one
   child per training).

Every training is keyed (trial key in MLflow, training folder by `trainers.train`), so a rerun trains
nothing that finished.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run as current_flow_run

from flows.steps.ladder import SCALE_STAGE
from flows.steps.spec import EvalSpec, ObjectiveSpec
from flows.steps.validate import (
    Candidate,
    ValidatePlan,
    ValidateSpec,
    choose_mixtures,
    key_of,
    load_validate_spec,
    objective,
    prepare_validation,
    scale_aware_predictions,
    scale_inputs,
)
from flows.steps.validate_report import (
    RunRecord,
    Scale,
    markdown_summary,
    plot_domain_bpb,
    plot_objective,
    plot_rank_agreement,
    plot_scale_aware,
    render_html,
    summarize,
    table_rows,
)
from flows.sweep import cancellation_hook, end_early, sweep
from flows.tracking.tracker import SweepTracker
from flows.trials.result import TrialPlan, TrialResult
from flows.trials.tune import RoundOptions, end_trials, run_round
from mixture_search.files import atomic_write, atomic_write_json

# ------------------------------------------------------------------------------------------------
# tasks


@task(name="check-validate-spec-and-data", retries=0)
def check_validation(spec: ValidateSpec) -> ValidatePlan:
    return prepare_validation(spec)


def _sweep_trials(plan: ValidatePlan) -> list[TrialResult]:
    results_file = plan.sweep_spec.out_dir / "results.json"
    return [TrialResult.from_dict(r) for r in json.loads(results_file.read_text(encoding="utf-8"))]


@task(name="choose-mixtures")
def choose(plan: ValidatePlan, summary: dict[str, Any], compare: dict[str, Any] | None = None) -> list[Candidate]:
    return choose_mixtures(plan, summary, _sweep_trials(plan), compare)


@task(name="predict-at-target")
def predict_at_target(plan: ValidatePlan, candidates: list[Candidate]) -> dict[str, Any] | None:
    """A ladder sweep's scale-aware model, fitted again on its runs (the trials in `results.json`, the larger
    scales' runs from the sweep's MLflow experiment), predicting every mixture at the target's size."""
    if plan.sweep.ladder is None:
        return None
    spec = plan.sweep_spec
    tracker = SweepTracker(
        plan.sweep.tracking_uri, spec.mlflow.experiment, sweep_name=spec.name, sweep_key=plan.sweep.sweep_key
    )
    scale_runs = list(tracker.finished_trials(stage=SCALE_STAGE).values())
    found = scale_aware_predictions(plan, candidates, _sweep_trials(plan), scale_runs)
    if found is not None:
        get_run_logger().info("scale-aware prediction: %s", found.get("text") or found.get("note"))
    return found


@task(name="train-mixtures", retries=1, retry_delay_seconds=5)
def train_mixtures(
    plan: ValidatePlan, candidates: list[Candidate], scale: Scale, seed: int, tracker: SweepTracker
) -> list[RunRecord]:
    """One Ray Tune round: every candidate at `scale` with `seed` (finished ones are taken from MLflow)."""
    logger = get_run_logger()
    spec = plan.spec
    known = tracker.finished_trials()
    keys = {c.name: key_of(plan, c, scale, seed) for c in candidates}
    plans = []
    for c in candidates:
        if keys[c.name] in known:
            continue
        run_id = tracker.start_trial(
            keys[c.name],
            c.mixture,
            round_=spec.seeds.index(seed),
            sampler=c.role,
            params={"scale": scale, "seed": seed, "mixture": c.name, "preset": _preset_of(plan, scale)},
        )
        tracker.set_tags(
            run_id,
            {"mlflow.runName": f"{scale}-{c.name}-s{seed}", "scale": scale, "seed": str(seed), "mixture": c.name},
        )
        plans.append(TrialPlan(keys[c.name], c.mixture, run_id, spec.seeds.index(seed), c.name))
    logger.info("%s scale, seed %d: %d of %d mixtures to train", scale, seed, len(plans), len(candidates))
    proxy, budget, backend, trials_dir = scale_inputs(plan, scale, seed)
    ctx = dataclasses.replace(
        plan.sweep.trial_context(),
        proxy=proxy,
        budget=budget,
        backend=backend,
        trials_dir=trials_dir,
        tracking_uri=plan.tracking_uri,
        objective=ObjectiveSpec(weights={f"val.bpb.{d}": 1.0 / len(plan.target_domains) for d in plan.target_domains}),
        # the target is the run a proxy stands in for: it reads the whole corpus, never a repetition-matched subset
        target_tokens=_repetition_tokens(plan, scale),
        eval=spec.eval if scale == "target" else EvalSpec(tasks=[], max_docs=spec.eval.max_docs),
        resources=spec.resources,
        early_stop_metric=None,
    )
    ended: set[str] = set()

    def done(result: TrialResult) -> None:
        _end(tracker, result)
        ended.add(result.trial_key)
        logger.info("%s %s s%d: %s objective %s", scale, result.sampler, seed, result.status, result.objective)

    opts = RoundOptions(
        cpus=spec.resources.cpus,
        gpus=spec.resources.gpus,
        max_concurrent=spec.max_concurrent,
        max_failures=spec.max_failures,
        ray_address=plan.sweep_spec.ray_address,
        storage=spec.out_dir / "ray",
        name=f"{scale}_seed{seed}",
        on_trial_done=done,
    )
    results = {r.trial_key: r for r in run_round(plans, ctx, opts)} if plans else {}
    for res in results.values():
        if res.trial_key not in ended:
            _end(tracker, res)
    records = []
    for c in candidates:
        r = results.get(keys[c.name]) or known.get(keys[c.name])
        if r is None:
            continue
        records.append(
            RunRecord(
                mixture=c.name,
                scale=scale,
                seed=seed,
                objective=objective(r.metrics, plan.target_domains) if r.status == "finished" else None,
                metrics=dict(r.metrics),
                trial_key=r.trial_key,
                run_id=r.run_id,
                wall_s=r.wall_s,
            )
        )
    return records


def _end(tracker: SweepTracker, result: TrialResult) -> None:
    """Final in MLflow. The converted model stays on disk (its path as the `hf_dir` tag), not copied."""
    hf_dir = result.paths.pop("hf_dir", None)
    tracker.end_trial(result.run_id or "", result)
    if hf_dir:
        tracker.set_tags(result.run_id or "", {"hf_dir": hf_dir})


def _repetition_tokens(plan: ValidatePlan, scale: Scale) -> int | None:
    """The target tokens a training's proxy matches its repetition to: the sweep's at its proxy scales."""
    return None if scale == "target" else plan.sweep.repetition


def _preset_of(plan: ValidatePlan, scale: Scale) -> str:
    if scale == "largest_proxy" and plan.sweep.ladder is not None:
        return plan.sweep.ladder.largest.proxy.name
    return plan.sweep_spec.proxy.preset if scale == "proxy" else plan.spec.target.preset


@task(name="report")
def report(
    plan: ValidatePlan,
    candidates: list[Candidate],
    records: list[RunRecord],
    summary: dict[str, Any],
    tracker: SweepTracker,
    runtime_s: float,
    scale_aware: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec, out = plan.spec, plan.spec.out_dir
    mixtures = [
        {"name": c.name, "role": c.role, "weights": dict(zip(c.mixture.names, c.mixture.normalized))}
        for c in candidates
    ]
    doc = summarize(records, mixtures, plan.target_domains, scale_aware)
    p, t = plan.scale["proxy"], plan.scale["target"]
    ref = plan.scale.get("largest_proxy", p)  # what the target's size is measured against
    doc.update(
        {
            "name": spec.name,
            "sweep": plan.sweep_spec.name,
            "sweep_key": plan.sweep.sweep_key,
            "key": plan.key,
            "target_domains": list(plan.target_domains),
            "seeds": list(spec.seeds),
            "scale": plan.scale,
            "predicted": summary.get("proposal", {}).get("predicted"),
            "runtime_s": round(runtime_s, 1),
        }
    )
    doc["setup"] = {
        "sweep": f"{plan.sweep_spec.name}: {summary.get('finished')} proxy trials, {plan.sweep_spec.search.rounds} rounds",
        "proxy" + (" (the ladder's smallest)" if "largest_proxy" in plan.scale else ""): (
            f"{plan.sweep_spec.proxy.preset} {plan.sweep_spec.proxy.overrides or ''}: "
            f"{p['params'] / 1e6:.2f}M parameters ({p['active'] / 1e6:.2f}M active), {p['tokens']:,.0f} tokens"
        ),
        **(
            {
                "largest proxy (the ladder's)": f"{_preset_of(plan, 'largest_proxy')}: {ref['params'] / 1e6:.2f}M "
                f"parameters ({ref['active'] / 1e6:.2f}M active), {ref['tokens']:,.0f} tokens"
            }
            if "largest_proxy" in plan.scale
            else {}
        ),
        "target": f"{spec.target.preset} {spec.target.overrides or ''}: {t['params'] / 1e6:.2f}M parameters "
        f"({t['active'] / 1e6:.2f}M active), {t['tokens']:,.0f} tokens",
        "scale-up": f"{t['params'] / ref['params']:.2f}x parameters, {t['tokens'] / ref['tokens']:.2f}x tokens"
        + (" (over the largest proxy)" if "largest_proxy" in plan.scale else ""),
        **({"scale-aware prediction": scale_aware.get("text") or scale_aware.get("note")} if scale_aware else {}),
        "seeds": ", ".join(map(str, spec.seeds)),
        "objective": "mean held-out bits per byte over " + ", ".join(plan.target_domains),
        "LightEval tasks": ", ".join(spec.eval.tasks) or "none",
        "surrogate's prediction for the recommendation "
        + ("(at the sweep's target)" if "largest_proxy" in plan.scale else "(proxy scale)"): (
            f"{doc['predicted']:.4f}" if isinstance(doc["predicted"], (int, float)) else "-"
        ),
        "wall time of this run (finished trainings are reused)": f"{runtime_s / 60:.1f} min",
        f"training + evaluation time (sum over trials, {' / '.join(doc['train_wall_s'])})": (
            " / ".join(f"{v / 60:.1f}" for v in doc["train_wall_s"].values()) + " min"
        ),
    }
    plots = out / "plots"
    images = {
        "target objective per mixture": plot_objective(doc, plots / "objective.png"),
        "per-domain bits per byte": plot_domain_bpb(doc, plan.target_domains, plots / "domain_bpb.png"),
        "proxy vs target rank agreement": plot_rank_agreement(doc, plots / "rank_agreement.png"),
    }
    if doc.get("scale_aware", {}).get("rank_agreement"):
        images["scale-aware prediction vs target"] = plot_scale_aware(doc, plots / "scale_aware.png")
    atomic_write_json(out / "validation.json", doc, default=str)
    atomic_write(out / "report.html", render_html(doc, images))
    parent = tracker.parent_run()
    metrics = {f"target.{r['name']}": r["target"]["mean"] for r in doc["mixtures"] if r["target"]}
    metrics.update({f"delta.{c['baseline']}": c["delta"]["mean"] for c in doc["comparisons"] if c["delta"]})
    rho = doc["rank_agreement"]["spearman"]
    if rho is not None and math.isfinite(rho):
        metrics["spearman"] = rho
    for name, ag in (
        ("spearman_largest_proxy", doc.get("rank_agreement_largest_proxy")),
        ("spearman_scale_aware", doc.get("scale_aware", {}).get("rank_agreement")),
    ):
        if ag and ag["spearman"] is not None and math.isfinite(ag["spearman"]):
            metrics[name] = ag["spearman"]
    metrics.update({f"goal.{name}": float(g["met"]) for name, g in doc["goals"].items()})
    tracker.log_metrics(parent, metrics)
    for name in ("validation.json", "report.html"):
        tracker.log_artifact(parent, out / name)
    for path in images.values():
        tracker.log_artifact(parent, path, "plots")
    create_table_artifact(key=_slug(f"{spec.name}-validation"), table=table_rows(doc), description="validation")
    create_markdown_artifact(key=_slug(f"{spec.name}-verdict"), markdown=markdown_summary(doc), description="verdict")
    return doc


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


# ------------------------------------------------------------------------------------------------
# the flow


#: the validation's `on_cancellation` hook: its parent run and the trainings still `RUNNING` end `KILLED`
end_validate_runs_on_cancellation = cancellation_hook(load_validate_spec)


@flow(
    name="validate",
    log_prints=True,
    validate_parameters=False,
    on_cancellation=[end_validate_runs_on_cancellation],
)
def validate(spec: ValidateSpec | str) -> dict[str, Any]:
    """Check a sweep's recommendation at a larger scale: `spec` is a ValidateSpec mapping or YAML path."""
    started = time.perf_counter()
    parsed = load_validate_spec(spec)
    plan = check_validation(parsed)
    summary = sweep(plan.sweep_spec)
    compare = sweep(plan.compare_spec) if plan.compare_spec is not None else None  # run or resumed, as the sweep
    candidates = choose(plan, summary, compare)
    scale_aware = predict_at_target(plan, candidates)
    tracker = SweepTracker(plan.tracking_uri, parsed.mlflow.experiment, sweep_name=parsed.name, sweep_key=plan.key)
    parent = tracker.parent_run({"spec": parsed.model_dump(mode="json"), "sweep_key": plan.sweep.sweep_key})
    tracker.set_tags(parent, {"mixsweep.kind": "validate", "sweep": plan.sweep_spec.name})
    tracker.tag_flow_run(current_flow_run.id)  # what the on_cancellation hook looks for
    records: list[RunRecord] = []
    try:
        for scale in plan.scales:
            for seed in parsed.seeds:
                records += train_mixtures(plan, candidates, scale, seed, tracker)
        doc = report(plan, candidates, records, summary, tracker, time.perf_counter() - started, scale_aware)
    except BaseException as exc:  # cancelled (SIGTERM), interrupted or failed: MLflow says so, finished runs stay
        end_early(tracker, exc, get_run_logger())
        raise
    finally:
        end_trials()  # each node's evaluation worker ends with the trainings
    tracker.finish_parent()
    get_run_logger().info("%s", doc["verdict"])
    return {"verdict": doc["verdict"], "report": str(parsed.out_dir / "report.html"), "runtime_s": doc["runtime_s"]}
