"""`mixsweep sweep SPEC.yaml [--dry-run]`: run the Prefect flow `sweep` from the shell."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from flows.cli.common import console, user_errors
from flows.steps.report import rank, share_columns
from flows.steps.spec import SpecError, SweepSpec, load_spec
from flows.tracking.redact import redact_uri
from flows.trials.result import TrialResult
from mixture_search.schedule import split_cell


def _given(budget: dict[str, object]) -> dict[str, object]:
    """The budget fields that say something (None is "not set")."""
    return {k: v for k, v in budget.items() if v is not None}


def _phases_row(spec: SweepSpec) -> str:
    """A phased sweep's schedule in one line: each phase's end (searched or fixed) and its own bounds
    and pins, then how the mixture changes at a boundary."""
    parts = []
    for k, phase in enumerate(spec.space.phases or []):
        until = (
            f"until {phase.until[0]:g}-{phase.until[1]:g} (searched)"
            if isinstance(phase.until, tuple)
            else f"until {phase.until:g}"
        )
        own = [f"{d} [{lo:g}, {hi:g}]" for d, (lo, hi) in phase.bounds.items()]
        own += [f"{d} = {share:g}" for d, share in phase.pinned.items()]
        parts.append(f"p{k} {until}" + (f" ({', '.join(own)})" if own else ""))
    ramp = spec.space.ramp
    change = (
        f"a linear ramp over {ramp:.0%} of the run centred on each boundary"
        if ramp
        else "a step change at each boundary"
    )
    return f"{'; '.join(parts)}; {change}; one mixture per phase, searched together"


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    @user_errors
    def sweep_cmd(
        spec: Annotated[
            Path, typer.Argument(help="Sweep spec (YAML); see deploy/specs/ and the README's SweepSpec reference.")
        ],
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Check the spec against the corpus and print the plan; train nothing.")
        ] = False,
    ) -> None:
        """Run a mixture sweep: rounds of candidate mixtures trained as proxies on Ray Tune, tracked in MLflow.

        Without PREFECT_API_URL the flow runs on a temporary in-process Prefect server; with it (e.g.
        after `mixsweep up`) the run shows in the Prefect UI. A rerun of the same spec resumes and
        retrains nothing that finished.
        """
        from flows.steps.ladder import confirm_runs, describe  # torch, as prepare: not for `--help`
        from flows.steps.prepare import prepare  # torch, Ray and MLflow (corpus, trials): not for `--help`

        parsed = load_spec(spec)
        prepared = prepare(parsed)  # everything that can be wrong, before any training
        out = console()
        table = Table(
            title=f"sweep {parsed.name}  [dim](key {prepared.sweep_key})[/]", title_justify="left", show_header=False
        )
        rows = [
            ("corpus", f"{prepared.corpus_dir}  (data hash {prepared.data_hash})"),
            ("domains", ", ".join(prepared.domains)),
            (
                "search",
                f"{parsed.search.rounds} rounds x {parsed.search.per_round}: "
                + "".join(f"{name}, " for name, _ in prepared.anchors)
                + parsed.search.sampler
                + (f", then {parsed.search.adaptive}" if parsed.search.adaptive and parsed.search.rounds > 1 else "")
                + (
                    f"; the top {parsed.search.replicates} trained again with a new seed (ranked by the mean)"
                    if parsed.search.replicates
                    else ""
                ),
            ),
            *([("phases", _phases_row(parsed))] if prepared.phased else []),
            ("proxy", f"{parsed.proxy.preset} {parsed.proxy.overrides or ''}: {prepared.params:,} parameters"),
            ("budget", f"{prepared.total_steps} steps; " + json.dumps(_given(parsed.budget.to_dict()))),
            ("backend", parsed.backend),
            (
                "objective",
                f"{'max' if parsed.objective.maximize else 'min'} {parsed.objective.weights or parsed.objective.metric}",
            ),
            (
                "trials",
                f"up to {parsed.search.rounds * parsed.search.per_round}, {parsed.max_concurrent} at a time, {parsed.resources.cpus:g} CPU / {parsed.resources.gpus:g} GPU each",
            ),
            *describe(prepared.ladder, prepared.repetition, confirm_runs(parsed), len(prepared.domains)),
            ("mlflow", f"{redact_uri(prepared.tracking_uri)}  experiment {parsed.mlflow.experiment}"),
            ("output", str(parsed.out_dir)),
        ]
        for k, v in rows:
            table.add_row(f"[bold]{k}[/]", v)
        out.print(table)
        if dry_run:
            return
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
        from flows.trials import local_ray  # Ray: only when a sweep runs

        if local_ray.starts_local(parsed.ray_address):
            local_ray.start_in_background()  # while Prefect and MLflow get ready (its ~4 s are not waited for)
        try:
            from flows.sweep import sweep  # Prefect: only when a sweep runs

            sweep(str(spec))
        finally:
            local_ray.stop()  # Ray's processes end before the command does
        print_results(parsed.out_dir)

    @app.command("results")
    @user_errors
    def results_cmd(
        target: Annotated[
            Path,
            typer.Argument(help="A sweep's output folder (runs/sweeps/<name>) or its spec (YAML)."),
        ],
        top: Annotated[int, typer.Option(help="Rows of the leaderboard to show.")] = 15,
    ) -> None:
        """Show a finished sweep: the leaderboard, the recommended mixture and where it was exported."""
        folder = target
        if target.is_file():
            folder = load_spec(target).out_dir
        print_results(folder, top=top)


def print_results(folder: Path, *, top: int = 15) -> None:
    """The leaderboard (best first) and the recommended mixture of the sweep written to `folder`."""
    results_file, summary_file = folder / "results.json", folder / "summary.json"
    if not results_file.is_file() or not summary_file.is_file():
        raise SpecError(
            "no finished sweep here (results.json and summary.json are written at its end)", where=str(folder)
        )
    results = [TrialResult.from_dict(r) for r in json.loads(results_file.read_text(encoding="utf-8"))]
    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    maximize = bool(summary.get("maximize", False))
    replicates = summary.get("replicates")
    seeds: dict[str, int] = {}
    if replicates:  # ranked by each mixture's mean over its seeds, as the sweep ranked them
        seeds = replicates["seeds_per_mixture"]
        means = replicates["means"]
        results = [dataclasses.replace(r, objective=means[r.trial_key]) if r.trial_key in means else r for r in results]
    ranked = rank(results, maximize=maximize)
    out = console()
    domains = list(dict.fromkeys(d for r in results for d in r.mixture.names))
    phases = int(summary.get("phases") or 0)
    if phases:  # a phased sweep: its trials are schedules, shown phase by phase
        domains = list(dict.fromkeys(split_cell(n)[1] for n in domains))
    columns: dict[str, dict[str, float]] | dict[str, dict[str, list[float]]]
    columns = {r.trial_key: share_columns(r.mixture, domains) for r in ranked[:top]}
    if phases:  # one column per domain, its phases in one cell (p0 -> p1 ...): fits a terminal
        columns = {key: _by_domain(cols) for key, cols in columns.items()}
    shown = list(dict.fromkeys(c for cols in columns.values() for c in cols))
    table = Table(
        title=f"leaderboard of {summary['sweep']}: {summary['finished']} of {summary['trials']} trials finished",
        title_justify="left",
        caption=f"each cell: {' → '.join(f'phase {k}' for k in range(phases))}" if phases else None,
        caption_justify="left",
    )
    for col in ("rank", "trial", "round", "objective", *(["seeds"] if replicates else []), *shown):
        # the shares may wrap (a schedule's phases within their cell): nothing is cut off in a narrow terminal
        share = col in shown
        table.add_column(
            col, justify="right" if col != "trial" else "left", no_wrap=not share, min_width=6 if share else None
        )
    for i, r in enumerate(ranked[:top], start=1):
        objective = f"{r.objective:.4f}" if r.objective is not None else f"[red]{r.status}[/]"
        shares = [_cell(columns[r.trial_key].get(c)) for c in shown]
        count = [str(seeds.get(r.trial_key, "-"))] if replicates else []
        table.add_row(str(i) if r.ok else "-", r.trial_key[:8], str(r.round + 1), objective, *count, *shares)
    out.print(table)
    if replicates:
        std = replicates.get("seed_std")
        out.print(
            f"objectives are means over seeds: the top {len(replicates['replicated'])} trained again with seed "
            f"{replicates['seed']}; seed noise (pooled std) {f'{std:.4f}' if std is not None else 'not measured'}"
        )
    proposal = summary.get("proposal", {})
    confirm = summary.get("confirm")
    from_best = bool(confirm) and confirm.get("exported") == "best_trial"
    weights = summary.get("best", {}).get("weights", {}) if from_best else proposal.get("weights", {})
    title = "recommended mixture" + (" (the best trial: it beat the proposal in the confirmation)" if from_best else "")
    rec = Table(title=title, title_justify="left", show_header=False)
    schedule = (summary.get("best", {}) if from_best else proposal).get("schedule")
    if schedule:  # one row per domain, the phases side by side
        rec.add_row("until", *(f"{p['until']:.4f}" for p in schedule["phases"]))
        for d in schedule["phases"][0]["weights"]:
            rec.add_row(d, *(f"{p['weights'][d]:.4f}" for p in schedule["phases"]))
    for d, w in sorted(weights.items(), key=lambda kv: -kv[1]) if not schedule else ():
        rec.add_row(d, f"{w:.4f}")
    out.print(rec)
    if "predicted" in proposal:
        low, high = proposal.get("interval", [None, None])
        interval = f" (interval {low:.4f} to {high:.4f})" if low is not None and high is not None else ""
        best = summary.get("best", {}).get("objective")
        out.print(f"the proposal's predicted objective {proposal['predicted']:.4f}{interval}; best trial {best:.4f}")
    if confirm:
        print_confirmation(confirm)
    separated = summary.get("separation")
    if separated:  # the trials' spread against the seed noise: is the ranking worth reading?
        warn = separated["level"] in ("barely", "top_within_noise")
        out.print(f"{'[yellow]' if warn else ''}{escape(separated['verdict'])}")
    for path in summary.get("exports", []):
        out.print(f"[dim]exported[/] {path}")


def _by_domain(columns: dict[str, float]) -> dict[str, list[float]]:
    """`share_columns` of a schedule (`until@p0`, `code@p0`, `code@p1`, ...) grouped by their name before
    the phase: `until` (the boundaries) and each domain, with one value per phase."""
    grouped: dict[str, list[float]] = {}
    for name, value in columns.items():
        grouped.setdefault(name.split("@")[0], []).append(value)
    return grouped


def _cell(value: float | list[float] | None) -> str:
    """A share, or a schedule's shares phase by phase: `0.120 →0.300` wraps as 0.120 / →0.300 in a
    narrow terminal."""
    if value is None:
        return "-"
    if isinstance(value, list):
        return " →".join(f"{v:.3f}" for v in value)
    return f"{value:.3f}"


def print_confirmation(confirm: dict[str, Any]) -> None:
    """A few lines on the confirmation stage of `summary.json`: the verdict, both means and the paired
    difference with its interval."""
    out = console()
    out.print(f"[bold]confirmation[/]: {escape(confirm['verdict'])}")
    if confirm.get("diff") is None:
        return
    seeds = ", ".join(str(s) for s in confirm["seeds"])
    out.print(
        f"  seeds {seeds}: proposal {confirm['proposal_mean']:.4f}, best trial {confirm['best_mean']:.4f} "
        f"(means over {confirm['pairs']} paired seeds; {'higher' if confirm['maximize'] else 'lower'} is better)"
    )
    interval = (
        f"95% interval [{confirm['lo']:+.4f}, {confirm['hi']:+.4f}]"
        if confirm.get("lo") is not None
        else "no interval from one seed"
    )
    out.print(f"  proposal - best trial {confirm['diff']:+.4f}, {interval}")
