"""The Prefect flow `sweep`: rounds of suggest -> train/evaluate on Ray Tune -> observe + fit, then
replicate (with `search.replicates`, the top trials trained again with a new seed: each mixture is
judged by its mean over seeds), propose, confirm (the proposal and the best trial trained again with
new seeds), rank, report and export the better of the two.

The flow is wiring: Prefect tasks around plain steps. The steps are in `flows.steps` (prepare and
check, search state, export), the trials run on Ray Tune through `flows.trials.tune`, and
`flows.tracking.tracker` keeps MLflow's books. A rerun of the same spec resumes: finished trials are found in
MLflow by their trial key and never retrained (replicate and confirmation runs likewise, by their own
keys, and never counted as trials), candidate lists and sampler states are read back from
`<output_dir>/search_state.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.exceptions import TerminationSignal
from prefect.flows import FlowStateHook
from prefect.logging import get_logger
from prefect.runtime import flow_run as current_flow_run

from flows.steps.charts import parallel_coordinates_html
from flows.steps.confirm import (
    CONFIRM_STAGE,
    Confirmation,
    confirmation,
    confirmation_markdown,
    plan_confirmation,
)
from flows.steps.export import export, recommend
from flows.steps.ladder import SCALE_STAGE, LadderResults, choose, thin_largest_scale
from flows.steps.noise import separation
from flows.steps.prepare import Prepared, prepare, tracking_uri_of
from flows.steps.replicates import REPLICATE_STAGE, SeedMeans, plan_replicates, replicate_seed, seed_means
from flows.steps.report import (
    leaderboard_rows,
    plot_leaderboard,
    plot_loss_curves,
    plot_objective_vs_weights,
    plot_predicted_vs_actual,
    plot_simplex,
    recommended_markdown,
    round_report,
)
from flows.steps.search import (
    CrossValidation,
    SearchState,
    candidate_label,
    cross_validate_cached,
    suggest_candidates,
)
from flows.steps.spec import SweepSpec, load_spec
from flows.steps.threads import one_blas_thread
from flows.steps.timing import Timings
from flows.tracking.redact import redact_uri
from flows.tracking.tracker import TRIAL_STAGE, SweepTracker
from flows.trials.faults import faults_for_round
from flows.trials.local_ray import START_SECONDS
from flows.trials.result import TrialPlan, TrialResult
from flows.trials.tune import RoundOptions, end_trials, run_round
from mixture_search.files import atomic_write_json
from mixture_search.mixture import Mixture

_STAGE_NAMES = {
    CONFIRM_STAGE: "confirmation",
    REPLICATE_STAGE: "replicates",
    SCALE_STAGE: "larger scales",
}  # progress bars' words

# ------------------------------------------------------------------------------------------------
# tasks


@task(name="check-spec-and-data", retries=0)
def check_inputs(spec: SweepSpec) -> Prepared:
    return prepare(spec)


@task(name="suggest-candidates")
def suggest(
    prepared: Prepared, state: SearchState, round_: int, results: dict[str, TrialResult]
) -> tuple[str, list[Mixture]]:
    return suggest_candidates(prepared, state, round_, results)


@task(name="run-trials", retries=1, retry_delay_seconds=5)
def run_trials(
    prepared: Prepared,
    plans: list[TrialPlan],
    round_: int,
    tracker: SweepTracker,
    stage: str = TRIAL_STAGE,
    scale: int | None = None,
) -> list[TrialResult]:
    """A round of trainings on Ray Tune: the trials of round `round_`, or (`stage="replicate"`,
    `"confirm"` or `"scale"`) the replicate, confirmation or larger-scale runs, with the same resources
    and MLflow books but never stopped early. `scale`: the ladder's scale they train at (default the
    smallest; a confirmation: the largest)."""
    spec = prepared.spec
    logger = get_run_logger()
    searching = stage == TRIAL_STAGE
    progress_id = create_progress_artifact(
        progress=0.0,
        key=f"{_slug(spec.name)}-progress",
        description=f"round {round_ + 1}: trials finished" if searching else f"{_STAGE_NAMES[stage]}: runs finished",
    )
    ended: dict[str, TrialResult] = {}

    def on_done(result: TrialResult) -> None:
        # each trial is made final in MLflow as soon as it ends, so a killed sweep loses no finished trial
        tracker.end_trial(result.run_id or "", result)
        ended[result.trial_key] = result
        logger.info(
            "%s %s %s: objective %s %s",
            stage,
            result.trial_key[:8],
            result.status,
            result.objective,
            result.error or "",
        )
        update_progress_artifact(artifact_id=progress_id, progress=100.0 * len(ended) / len(plans))  # type: ignore[arg-type]

    faults = faults_for_round(round_)  # the fault tests' hooks; empty unless MIXSWEEP_FAULT_INJECT is set
    opts = RoundOptions(
        cpus=spec.resources.cpus,
        gpus=spec.resources.gpus,
        max_concurrent=spec.max_concurrent,
        max_failures=spec.max_failures,
        asha={  # a replicate or confirmation run always trains its whole budget: it is compared, not searched
            "grace_period": spec.early_stopping.grace_period,
            "reduction_factor": spec.early_stopping.reduction_factor,
        }
        if spec.early_stopping.enabled and searching
        else None,
        ray_address=spec.ray_address,
        storage=spec.out_dir / "ray",
        name=f"round_{round_}" if searching else stage,
        on_trial_done=on_done,
        hooks={plans[i].key: hook for i, hook in faults.items() if i < len(plans)},
    )
    results = run_round(plans, prepared.trial_context(scale, stage), opts)
    for r in results:
        if r.trial_key not in ended:
            tracker.end_trial(r.run_id or "", r)
    update_progress_artifact(artifact_id=progress_id, progress=100.0)  # type: ignore[arg-type]
    return results


@task(name="cross-validate-surrogate")
def cross_validate(prepared: Prepared, results: list[TrialResult]) -> CrossValidation | None:
    """The surrogate's CV on the finished trials: a figure of the round's report, which nothing else
    waits for, so the flow runs it beside the next step (`.submit`)."""
    return cross_validate_cached(prepared, results)


def log_cv(prepared: Prepared, cv: CrossValidation | None, round_: int, tracker: SweepTracker) -> dict[str, Any] | None:
    """The CV's figures and predicted-vs-actual plot to the sweep's MLflow run (in the flow's thread:
    pyplot is not thread-safe)."""
    if cv is None:
        return None
    parent = tracker.parent_run()
    tracker.log_metrics(
        parent,
        {f"cv.{k}": float(v) for k, v in cv.table.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        step=round_,
    )
    plot = plot_predicted_vs_actual(
        cv.y, cv.oof, str(cv.table.get("surrogate")), prepared.spec.out_dir / "plots" / "predicted_vs_actual.png"
    )
    tracker.log_artifact(parent, plot, "plots")
    return cv.table


@task(name="propose")
def propose(
    prepared: Prepared,
    results: list[TrialResult],
    noise_std: float | None = None,
    ladder: LadderResults | None = None,
) -> tuple[list[TrialResult], Mixture, dict[str, Any]]:
    return recommend(prepared, results, noise_std=noise_std, ladder=ladder)


def climb(prepared: Prepared, tracker: SweepTracker, trials: list[TrialResult]) -> LadderResults:
    """The ladder after the last round: at each larger scale, train the mixtures the design rule picks
    among the previous scale's runs (`flows.steps.ladder.choose`; tags `scale.why`). A rerun finds the
    runs final in MLflow by key and trains none twice."""
    spec = prepared.spec
    ladder = prepared.ladder
    assert ladder is not None
    logger = get_run_logger()
    advice = thin_largest_scale(ladder, len(prepared.domains))
    if advice is not None:
        logger.warning("%s", advice)
    out = LadderResults(ladder, [list(trials)])
    found = tracker.finished_trials(stage=SCALE_STAGE)
    for rung in ladder.rungs[1:]:
        picks = choose(out.by_scale[-1], ladder.counts[rung.index], prepared.domains, maximize=spec.objective.maximize)
        done, plans = [], []
        for pick in picks:
            mixture = pick.trial.mixture
            key = prepared.trial_key(mixture, scale=rung.index)
            out.why[key] = pick.why
            if key in found:
                done.append(found[key])
                continue
            run_id = tracker.start_trial(
                key,
                mixture,
                round_=spec.search.rounds,
                sampler=pick.why,
                params={
                    "proxy": rung.proxy.name,
                    "backend": spec.backend,
                    "data_hash": prepared.data_hash,
                    "budget": rung.budget.to_dict(),
                    **prepared.scale_params(mixture, scale=rung.index),
                },
                stage=SCALE_STAGE,
            )
            tracker.set_tags(run_id, {"scale.why": pick.why, "scale.index": str(rung.index)})
            plans.append(TrialPlan(key, mixture, run_id, spec.search.rounds, pick.why))
        logger.info(
            "scale %d (%d params, %d tokens): %d mixtures (%s), %d to train",
            rung.index,
            rung.params,
            rung.tokens,
            len(picks),
            ", ".join(p.why for p in picks),
            len(plans),
        )
        trained = run_trials(prepared, plans, spec.search.rounds, tracker, SCALE_STAGE, rung.index) if plans else []
        out.by_scale.append(done + trained)
    return out


def replicate(prepared: Prepared, tracker: SweepTracker, trials: list[TrialResult]) -> SeedMeans:
    """Train the top `search.replicates` trials again with the replicate seed (what a rerun finds final
    in MLflow is not trained again) and average each mixture over its seeds."""
    spec = prepared.spec
    logger = get_run_logger()
    runs = plan_replicates(prepared, trials)
    results, plans = _plan_again(prepared, tracker, REPLICATE_STAGE, runs)
    logger.info(
        "replicates: the top %d trials with seed %d, %d runs to train",
        len(runs),
        replicate_seed(prepared),
        len(plans),
    )
    for res in run_trials(prepared, plans, spec.search.rounds, tracker, REPLICATE_STAGE) if plans else []:
        results[res.trial_key] = res
    return seed_means(trials, [results[run.key] for run in runs if run.key in results])


def confirm(prepared: Prepared, tracker: SweepTracker, ranked: list[TrialResult], proposal: Mixture) -> Confirmation:
    """Train the proposal and the best trial with new seeds (what a rerun finds final in MLflow is not
    trained again) and compare them."""
    spec = prepared.spec
    logger = get_run_logger()
    plan = plan_confirmation(prepared, ranked, proposal)
    results: dict[str, TrialResult] = {}
    if plan.runs:
        results, plans = _plan_again(prepared, tracker, CONFIRM_STAGE, plan.runs)
        logger.info(
            "confirmation: the proposal and the best trial with seeds %s, %d runs to train",
            list(plan.seeds),
            len(plans),
        )
        for res in run_trials(prepared, plans, spec.search.rounds, tracker, CONFIRM_STAGE) if plans else []:
            results[res.trial_key] = res
    return confirmation(plan, results, maximize=spec.objective.maximize)


@task(name="rank-report-export")
def finish(
    prepared: Prepared,
    results: list[TrialResult],
    tracker: SweepTracker,
    proposed: tuple[list[TrialResult], Mixture, dict[str, Any]],
    confirmed: Confirmation | None,
    means: SeedMeans | None = None,
    ladder: LadderResults | None = None,
) -> dict[str, Any]:
    """Rank (by the mean over seeds when the top trials were replicated: `means`), plot, report and
    export; `results` (the trials as trained) go to results.json."""
    spec = prepared.spec
    out = spec.out_dir
    parent = tracker.parent_run()
    ranked, recommended, summary = proposed
    observed = means.results if means is not None else results
    for i, r in enumerate(ranked, start=1):
        if r.run_id:
            tracker.set_tags(r.run_id, {"rank": str(i)})
    if means is not None:
        summary["replicates"] = {
            "requested": spec.search.replicates,
            "seed": replicate_seed(prepared),
            **means.to_dict(),
        }
        if means.seed_std is not None:
            tracker.log_metrics(parent, {"replicates.seed_std": means.seed_std})
    exported, source = recommended, "the proposal"
    if confirmed is not None:
        summary["confirm"] = confirmed.to_dict()
        _log_confirmation(prepared, tracker, parent, confirmed)
        if confirmed.exported == "best_trial":
            exported, source = ranked[0].mixture, f"the best trial (confirmation: {confirmed.verdict})"
    separated = separation(results, confirmed, means, maximize=spec.objective.maximize)
    if separated is not None:  # does the proxy tell the mixtures apart? (the trials' spread vs seed noise)
        summary["separation"] = separated.to_dict()
        figures = {
            "noise.trial_std": separated.trial_std,
            "noise.seed_std": separated.seed_std,
            "noise.signal_to_noise": separated.ratio,
        }
        tracker.log_metrics(parent, {k: v for k, v in figures.items() if v is not None})
        tracker.set_tags(parent, {"noise.separation": separated.level, "noise.verdict": separated.verdict})
    summary["exports"] = [str(p) for p in export(prepared, exported, out / "recommended")]
    for p in summary["exports"]:
        tracker.log_artifact(parent, Path(p), "recommended")
    plots = out / "plots"
    for path in (
        plot_objective_vs_weights(observed, prepared.cells, spec.objective.metric, plots / "objective_vs_weights.png")
        if ranked
        else None,
        plot_loss_curves(observed, plots / "loss_curves.png"),
        plot_leaderboard(observed, plots / "leaderboard.png", maximize=spec.objective.maximize),
        plot_simplex(observed, prepared.cells, plots / "simplex.png", proposal=recommended),
        parallel_coordinates_html(
            observed,
            prepared.cells,
            plots / "parallel_coordinates.html",
            objective=str(spec.objective.weights or spec.objective.metric),
            maximize=spec.objective.maximize,
            title=spec.name,
        ),
    ):
        if path is not None:
            tracker.log_artifact(parent, path, "plots")
    rows = leaderboard_rows(
        observed,
        prepared.domains,
        maximize=spec.objective.maximize,
        seeds=means.objectives if means is not None else None,
    )
    tracker.log_artifact_text(parent, "leaderboard.json", json.dumps(rows, indent=1))
    if ladder is not None:  # one row per mixture, its objective at each scale
        ladder_rows = ladder.rows(prepared.domains, maximize=spec.objective.maximize)
        summary["ladder"]["leaderboard"] = ladder_rows
        tracker.log_artifact_text(parent, "ladder.json", json.dumps(ladder_rows, indent=1))
        create_table_artifact(
            key=f"{_slug(spec.name)}-ladder", table=ladder_rows, description=f"{spec.name}: each mixture at each scale"
        )
    create_table_artifact(
        key=f"{_slug(spec.name)}-leaderboard", table=rows, description=f"final leaderboard of {spec.name}"
    )
    confirm_runs = confirmed.runs if confirmed is not None else []
    markdown = recommended_markdown(
        sweep=spec.name,
        source=source,
        yaml_text=Path(summary["exports"][0]).read_text(),
        exports=summary["exports"],
        confirm_runs=confirm_runs,
        run_urls={r["run_id"]: url for r in confirm_runs if (url := _run_url(prepared, tracker, r.get("run_id")))},
    )
    create_markdown_artifact(
        key=f"{_slug(spec.name)}-recommended", markdown=markdown, description="recommended mixture"
    )
    atomic_write_json(out / "results.json", [r.to_dict() for r in results], default=str)
    atomic_write_json(out / "summary.json", summary, default=str)
    tracker.log_artifact(parent, out / "summary.json")
    return summary


# ------------------------------------------------------------------------------------------------
# the flow


def end_runs_of_flow_run(tracking_uri: str, experiment: str, flow_run_id: str) -> None:
    """What a flow's `on_cancellation` hook does: the MLflow parent run that the Prefect flow run `flow_run_id`
    last ran (tag `mixsweep.flow_run_id`) and any child still `RUNNING` end `KILLED`, tagged why; ended runs
    (finished trials) are left as they are, and so is a parent already ended.

    A cancelled sweep does this itself (`end_early`), but its process may die first: a local Ray cluster
    started by the sweep is in the flow run's process group, so it gets the same SIGTERM, and Ray's core
    worker then aborts the driver within seconds. The worker runs the hook after the flow run's process
    has ended and before the flow run shows Cancelled, so the runs end in every case (in the flow's own
    process, where Prefect may run it too, it finds the runs still `RUNNING` and does the same)."""
    logger = get_logger("mixsweep.cancel")  # the worker's log
    try:
        tracker = SweepTracker.of_flow_run(tracking_uri, experiment, flow_run_id)
        if tracker is None or tracker.parent_status() != "RUNNING":
            return
        ended = tracker.abort("KILLED", "cancelled (the flow run was cancelled; runs ended by the worker)")
        logger.warning("cancelled: MLflow runs marked KILLED: the parent and %d running", len(ended))
    except Exception as exc:  # MLflow down: say so, in one line
        logger.warning("could not mark the MLflow runs KILLED: %s", " ".join(str(exc).split())[:300])


def cancellation_hook(load: Callable[[Any], Any]) -> FlowStateHook[..., Any]:
    """A flow's `on_cancellation` hook (`end_runs_of_flow_run`): `load` reads the flow run's `spec` parameter
    (a SweepSpec or ValidateSpec: both say where their runs are tracked the same way)."""

    def hook(flow: Any, flow_run: Any, state: Any) -> None:
        try:
            spec = load(flow_run.parameters["spec"])
        except Exception as exc:  # a spec path the worker cannot read: say so, in one line
            get_logger("mixsweep.cancel").warning("could not read the spec: %s", " ".join(str(exc).split())[:300])
            return
        end_runs_of_flow_run(tracking_uri_of(spec.mlflow, spec.out_dir), spec.mlflow.experiment, str(flow_run.id))

    hook.__name__ = hook.__qualname__ = "end_mlflow_runs_on_cancellation"  # the name Prefect logs
    return hook


#: the sweep's `on_cancellation` hook
end_mlflow_runs_on_cancellation = cancellation_hook(load_spec)


@flow(
    name="sweep",
    log_prints=True,
    validate_parameters=False,
    on_cancellation=[end_mlflow_runs_on_cancellation],
)
def sweep(spec: SweepSpec | str) -> dict[str, Any]:
    """Search the data mixture: `spec` is a SweepSpec (a mapping: the Prefect run form's fields), a YAML
    file path, or YAML text. The type gives Prefect's UI its form and the API its parameter schema,
    which refuses a wrong type, an unknown key or a value out of range before a flow run starts; the
    rest (unknown domains, corpus files, ...) `load_spec` and the check step refuse in one line before
    anything trains. (Prefect's own validation stays off: it would replace those one-line errors.)"""
    timings = Timings()
    one_blas_thread()  # this process's fits are small; the cores train the trials
    parsed = load_spec(spec)
    with timings.stage("check"):
        prepared = check_inputs(parsed)
    logger = get_run_logger()
    tracker = SweepTracker(
        prepared.tracking_uri, parsed.mlflow.experiment, sweep_name=parsed.name, sweep_key=prepared.sweep_key
    )
    parent = tracker.parent_run(
        {
            "spec": parsed.model_dump(mode="json", exclude={"budget"}),
            "budget": prepared.budget.to_dict(),
            "data_hash": prepared.data_hash,
            "params": prepared.params,
        }
    )
    tracker.tag_flow_run(current_flow_run.id)  # what the on_cancellation hook looks for
    tracker.log_artifact_text(parent, "spec.yaml", parsed.to_yaml())
    with timings.stage("resume"):
        known = tracker.finished_trials()
    if known:
        logger.info("resuming: %d trials already final in MLflow", len(known))
    state = SearchState.load(parsed.out_dir / "search_state.json")
    results: dict[str, TrialResult] = dict(known)
    try:
        for r in range(parsed.search.rounds):
            with timings.stage("suggest"):
                sampler_name, candidates = suggest(prepared, state, r, results)
                plans = [
                    plan
                    for m in candidates
                    if (plan := _plan(prepared, tracker, m, r, candidate_label(prepared, m, sampler_name), results))
                ]
            anchored = [name for name, _ in prepared.anchors] if r == 0 else []
            logger.info(
                "round %d/%d: %d candidates from %s, %d to train",
                r + 1,
                parsed.search.rounds,
                len(candidates),
                " + ".join([*(f"anchor {a}" for a in anchored), sampler_name]),
                len(plans),
            )
            with timings.stage("trials"):
                for res in run_trials(prepared, plans, r, tracker) if plans else []:
                    results[res.trial_key] = res
            round_results = list(results.values())
            last = r == parsed.search.rounds - 1
            means = None
            if last and parsed.search.replicates:
                with timings.stage("replicate"):
                    means = replicate(prepared, tracker, round_results)
                logger.info(
                    "seed noise (pooled std over %d replicated mixtures): %s",
                    len(means.replicated),
                    means.seed_std,
                )
            observed = means.results if means is not None else round_results  # one observation per mixture
            cv_future = cross_validate.submit(prepared, observed)
            ladder = None
            if last and prepared.ladder is not None:  # the chosen mixtures again at each larger scale
                with timings.stage("ladder"):
                    ladder = climb(prepared, tracker, observed)
            if last:  # the proposal and its confirmation do not need the CV: they run beside it
                with timings.stage("finish"):
                    proposed = propose(prepared, observed, means.seed_std if means is not None else None, ladder)
                confirmed = None
                if parsed.confirm.enabled:
                    with timings.stage("confirm"):
                        confirmed = confirm(prepared, tracker, proposed[0], proposed[1])
                    if confirmed.exported == "best_trial":
                        logger.warning("%s", confirmed.verdict)  # the export is not the proposal: say so
                    else:
                        logger.info("%s", confirmed.verdict)
                with timings.stage("finish"):
                    summary = finish(prepared, round_results, tracker, proposed, confirmed, means, ladder)
                if "separation" in summary:  # a proxy that cannot tell the mixtures apart is said loudly
                    unsure = summary["separation"]["level"] in ("barely", "top_within_noise")
                    (logger.warning if unsure else logger.info)("%s", summary["separation"]["verdict"])
            with timings.stage("cv"):
                cv = log_cv(prepared, cv_future.result(), r, tracker)
            with timings.stage("report"):
                _round_report(prepared, tracker, parent, r, observed, cv, means)
    except BaseException as exc:  # a cancellation from Prefect arrives as TerminationSignal (a BaseException)
        end_early(tracker, exc, logger)
        raise
    finally:
        end_trials()  # each node's evaluation worker ends with the sweep
    tracker.finish_parent()
    summary["mlflow"] = _mlflow_url(prepared.tracking_uri, tracker)
    summary["timings_s"] = timings.rounded()
    summary["cpu_s"] = timings.cpu_rounded()
    summary["ray_start_s"] = round(START_SECONDS[-1], 2) if START_SECONDS else None
    atomic_write_json(parsed.out_dir / "summary.json", summary, default=str)
    exported = summary.get("confirm", {}).get("exported", "proposal")
    weights = summary["best"]["weights"] if exported == "best_trial" else summary["proposal"]["weights"]
    logger.info("recommended mixture (the %s): %s", exported.replace("_", " "), weights)
    return summary


def end_early(tracker: SweepTracker, exc: BaseException, logger: Any) -> None:
    """Leave MLflow as the sweep left off: a cancellation (from the Prefect UI or CLI: SIGTERM) or an
    interrupt marks the parent and its running children `KILLED`, an error `FAILED`, each with a tag
    saying why. Finished trials are untouched, so a rerun continues. Never masks `exc`."""
    cause = _cancellation(exc)
    if cause is not None:
        status, reason = "KILLED", f"cancelled ({cause})"
    else:
        status, reason = "FAILED", f"error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    try:
        ended = tracker.abort(status, reason)
        logger.warning(
            "sweep ended early (%s): MLflow runs marked %s: the parent and %d running", reason, status, len(ended)
        )
    except Exception as err:  # MLflow down as well: the original exception is the one to see
        logger.warning("could not mark the MLflow runs %s: %s", status, " ".join(str(err).split())[:300])


def _cancellation(exc: BaseException) -> str | None:
    """What cancelled the sweep, or None when it failed. Prefect's SIGTERM arrives as `TerminationSignal`,
    but Ray Tune (which the flow's thread may be running) can wrap it in an error of its own: so the
    exception chain is searched, and the flow run's state (Cancelling) asked of the Prefect API."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (TerminationSignal, KeyboardInterrupt)):
            return type(seen).__name__
        seen = seen.__cause__ or seen.__context__
    try:
        from prefect.client.orchestration import get_client  # only when a sweep ends early

        if not current_flow_run.id:
            return None
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(current_flow_run.id).state
        return (
            "the flow run is Cancelling"
            if state is not None and (state.is_cancelling() or state.is_cancelled())
            else None
        )
    except Exception:  # no Prefect API (a local run): a failure, as the exception says
        return None


def _plan(
    prepared: Prepared,
    tracker: SweepTracker,
    mixture: Mixture,
    round_: int,
    sampler: str,
    results: dict[str, TrialResult],
) -> TrialPlan | None:
    """The plan of a candidate (its MLflow child run started), or None when its trial is final already."""
    spec = prepared.spec
    key = prepared.trial_key(mixture)
    if key in results:
        return None
    run_id = tracker.start_trial(
        key,
        mixture,
        round_=round_,
        sampler=sampler,
        params={
            "proxy": spec.proxy.preset,
            "backend": spec.backend,
            "data_hash": prepared.data_hash,
            "budget": prepared.budget.to_dict(),
            **prepared.scale_params(mixture),
        },
        weights=prepared.weight_params(mixture),
    )
    return TrialPlan(key, mixture, run_id, round_, sampler)


class StageRun(Protocol):
    """A training after the last round (`ConfirmRun`, `ReplicateRun`): a mixture with its own seed."""

    @property
    def role(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def key(self) -> str: ...
    @property
    def mixture(self) -> Mixture: ...


def _plan_again(
    prepared: Prepared, tracker: SweepTracker, stage: str, runs: Sequence[StageRun]
) -> tuple[dict[str, TrialResult], list[TrialPlan]]:
    """(the runs of `stage` already final in MLflow by key, the plans of the rest with their child runs
    started): a rerun trains none of them twice."""
    spec = prepared.spec
    found = tracker.finished_trials(stage=stage)
    plans = [
        TrialPlan(
            run.key,
            run.mixture,
            _start_stage_run(prepared, tracker, run, stage),
            spec.search.rounds,
            run.role,
            run.seed,
        )
        for run in runs
        if run.key not in found
    ]
    return found, plans


def _start_stage_run(prepared: Prepared, tracker: SweepTracker, run: StageRun, stage: str) -> str:
    """The MLflow child run of a replicate or confirmation run (tagged `stage=<stage>`; not a trial)."""
    spec = prepared.spec
    return tracker.start_trial(
        run.key,
        run.mixture,
        round_=spec.search.rounds,
        sampler=run.role,
        params={
            "proxy": spec.proxy.preset,
            "backend": spec.backend,
            "data_hash": prepared.data_hash,
            "budget": {**prepared.trial_context(stage=stage).budget.to_dict(), "seed": run.seed},
            "seed": run.seed,
            **prepared.scale_params(run.mixture, stage=stage),
        },
        stage=stage,
        weights=prepared.weight_params(run.mixture),
    )


def _log_confirmation(prepared: Prepared, tracker: SweepTracker, parent: str, c: Confirmation) -> None:
    """The confirmation's figures (`confirm.*`) and verdict on the sweep's MLflow run, and its report
    as a Prefect artifact."""
    spec = prepared.spec
    figures = {
        "confirm.diff": c.diff,
        "confirm.lo": c.lo,
        "confirm.hi": c.hi,
        "confirm.proposal_mean": c.proposal_mean,
        "confirm.best_mean": c.best_mean,
        "confirm.seeds": float(len(c.seeds)),
        "confirm.pairs": float(c.pairs),
    }
    tracker.log_metrics(parent, {k: v for k, v in figures.items() if v is not None})
    tracker.set_tags(
        parent, {"confirm.verdict": c.verdict, "confirm.outcome": c.outcome, "confirm.exported": c.exported}
    )
    report = confirmation_markdown(c, sweep=spec.name, objective=str(spec.objective.weights or spec.objective.metric))
    tracker.log_artifact_text(parent, "reports/confirmation.md", report)
    create_markdown_artifact(key=f"{_slug(spec.name)}-confirmation", markdown=report, description="confirmation")


def _round_report(
    prepared: Prepared,
    tracker: SweepTracker,
    parent: str,
    round_: int,
    results: list[TrialResult],
    cv: dict[str, Any] | None,
    means: SeedMeans | None = None,
) -> None:
    """The round's leaderboard and markdown report, as Prefect artifacts and in MLflow (`results` with
    the means over seeds and `means` after the last round of a sweep that replicates)."""
    spec = prepared.spec
    seeds = means.objectives if means is not None else None
    rows = leaderboard_rows(results, prepared.domains, maximize=spec.objective.maximize, seeds=seeds)
    create_table_artifact(
        key=f"{_slug(spec.name)}-leaderboard-round-{round_ + 1}",
        table=rows,
        description=f"leaderboard after round {round_ + 1}",
    )
    report = round_report(
        sweep=spec.name,
        round_=round_,
        rounds=spec.search.rounds,
        results=results,
        domains=prepared.domains,
        objective=spec.objective.metric,
        maximize=spec.objective.maximize,
        cv=cv,
        mlflow_url=_mlflow_url(prepared.tracking_uri, tracker),
        seeds=seeds,
        run_urls={r.trial_key: url for r in results if (url := _run_url(prepared, tracker, r.run_id))},
    )
    create_markdown_artifact(
        key=f"{_slug(spec.name)}-round-{round_ + 1}", markdown=report, description=f"round {round_ + 1} report"
    )
    tracker.log_artifact_text(parent, f"reports/round_{round_ + 1}.md", report)


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "sweep"


def _mlflow_url(uri: str, tracker: SweepTracker) -> str | None:
    if not uri.startswith("http"):
        return None
    return f"{redact_uri(uri).rstrip('/')}/#/experiments/{tracker.experiment_id}"


def _run_url(prepared: Prepared, tracker: SweepTracker, run_id: str | None) -> str | None:
    """The MLflow UI's page of run `run_id` (None without a run or an HTTP tracking server)."""
    experiment = _mlflow_url(prepared.tracking_uri, tracker)
    return f"{experiment}/runs/{run_id}" if experiment and run_id else None
