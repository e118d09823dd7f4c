"""`mixsweep sweep SPEC.yaml [--dry-run]`: run the Prefect flow `sweep` from the shell."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.common import console, user_errors


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
        from flows.checks import check_before_training
        from flows.redact import redact_uri
        from flows.spec import load_spec
        from flows.sweep import prepare

        parsed = load_spec(spec)
        prepared = check_before_training(parsed, prepare)  # everything that can be wrong, before any training
        out = console()
        table = Table(
            title=f"sweep {parsed.name}  [dim](key {prepared.sweep_key})[/]", title_justify="left", show_header=False
        )
        rows = [
            ("corpus", f"{prepared.corpus_dir}  (data hash {prepared.data_hash})"),
            ("domains", ", ".join(prepared.domains)),
            (
                "search",
                f"{parsed.search.rounds} rounds x {parsed.search.per_round}: {parsed.search.sampler}"
                + (f", then {parsed.search.adaptive}" if parsed.search.adaptive and parsed.search.rounds > 1 else ""),
            ),
            ("proxy", f"{parsed.proxy.preset} {parsed.proxy.overrides or ''}: {prepared.params:,} parameters"),
            ("budget", f"{prepared.total_steps} steps; " + json.dumps(parsed.budget)),
            ("backend", parsed.backend),
            (
                "objective",
                f"{'max' if parsed.objective.maximize else 'min'} {parsed.objective.weights or parsed.objective.metric}",
            ),
            (
                "trials",
                f"up to {parsed.search.rounds * parsed.search.per_round}, {parsed.max_concurrent} at a time, {parsed.resources.cpus:g} CPU / {parsed.resources.gpus:g} GPU each",
            ),
            ("mlflow", f"{redact_uri(prepared.tracking_uri)}  experiment {parsed.mlflow.experiment}"),
            ("output", str(parsed.out_dir)),
        ]
        for k, v in rows:
            table.add_row(f"[bold]{k}[/]", v)
        out.print(table)
        if dry_run:
            return
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
        from flows.sweep import sweep

        summary = sweep(str(spec))
        out.print_json(json.dumps(summary, default=str))
