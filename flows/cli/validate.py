"""`mixsweep validate SPEC.yaml [--dry-run]`: run the Prefect flow `validate` from the shell."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from flows.cli.common import console, user_errors
from flows.steps.validate_report import table_rows
from flows.tracking.redact import redact_uri


def register(app: typer.Typer) -> None:
    @app.command("validate")
    @user_errors
    def validate_cmd(
        spec: Annotated[Path, typer.Argument(help="Validate spec (YAML); see deploy/specs/validate.yaml.")],
        dry_run: Annotated[
            bool,
            typer.Option("--dry-run", help="Check the spec, the sweep and the data, print the plan; train nothing."),
        ] = False,
    ) -> None:
        """Check that a sweep's recommended mixture wins at a larger scale.

        Runs (or resumes) the sweep, trains the recommendation, the baselines and a few more of the
        sweep's mixtures with every seed at the proxy and at the target scale, evaluates them, and
        writes a report with error bars and the proxy-vs-target rank agreement (HTML, JSON, MLflow).
        A rerun trains nothing that finished.
        """
        from flows.steps.validate import load_validate_spec, prepare_validation  # torch, Ray, MLflow: not for `--help`

        parsed = load_validate_spec(spec)
        plan = prepare_validation(parsed)
        p, t = plan.scale["proxy"], plan.scale["target"]
        ref = plan.scale.get("largest_proxy", p)  # what the target outgrows: the ladder's largest proxy
        mixtures = 1 + len(parsed.baselines) + (plan.compare_spec is not None)
        compared = [plan.compare_spec.name] if plan.compare_spec is not None else []
        table = Table(
            title=f"validate {parsed.name}  [dim](key {plan.key})[/]", title_justify="left", show_header=False
        )
        rows = [
            (
                "sweep",
                f"{plan.sweep_spec.name} (key {plan.sweep.sweep_key}), output {plan.sweep_spec.out_dir}"
                + (f"; schedules of {len(plan.sweep_spec.space.phases or [])} phases" if plan.sweep.phased else ""),
            ),
            *(
                [
                    (
                        "compare",
                        f"{plan.compare_spec.name}, output {plan.compare_spec.out_dir}: its mixture as a baseline",
                    )
                ]
                if plan.compare_spec is not None
                else []
            ),
            ("proxy", f"{plan.sweep.proxy.name}: {p['params']:,.0f} parameters, {p['tokens']:,.0f} tokens"),
            *(
                [
                    (
                        "largest proxy",
                        f"{plan.sweep.ladder.largest.proxy.name} (ladder scale {plan.sweep.ladder.largest.index}): "
                        f"{ref['params']:,.0f} parameters, {ref['tokens']:,.0f} tokens; the sweep's scale-aware "
                        "surrogate predicts every mixture at the target's size",
                    )
                ]
                if plan.sweep.ladder is not None
                else []
            ),
            (
                "target",
                f"{parsed.target.preset} {parsed.target.overrides or ''}: {t['params']:,.0f} parameters "
                f"({t['params'] / ref['params']:.2f}x), {t['tokens']:,.0f} tokens ({t['tokens'] / ref['tokens']:.2f}x)",
            ),
            ("budget", json.dumps({k: v for k, v in parsed.budget.to_dict().items() if v is not None})),
            (
                "mixtures",
                f"recommended vs {', '.join([*parsed.baselines, *compared])}; {parsed.rank_mixtures} at "
                f"{'each of the ' + str(len(plan.scales)) if len(plan.scales) > 2 else 'both'} scales",
            ),
            ("seeds", ", ".join(map(str, parsed.seeds))),
            (
                "trainings",
                f"{max(mixtures, parsed.rank_mixtures) * len(parsed.seeds)} per scale, "
                f"{parsed.max_concurrent} at a time",
            ),
            ("objective", "mean held-out bits per byte over " + ", ".join(plan.target_domains)),
            ("eval", f"{', '.join(parsed.eval.tasks) or 'none'} (max_docs {parsed.eval.max_docs})"),
            ("mlflow", f"{redact_uri(plan.tracking_uri)}  experiment {parsed.mlflow.experiment}"),
            ("output", str(parsed.out_dir)),
        ]
        for k, v in rows:
            table.add_row(f"[bold]{k}[/]", v)
        out = console()
        out.print(table)
        if dry_run:
            return
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
        from flows.validate import validate  # Prefect and Ray: only when it runs

        result = validate(str(spec))
        print_validation(parsed.out_dir)
        out.print(f"[dim]report[/] {result['report']}  ({result['runtime_s'] / 60:.1f} min)")


def print_validation(folder: Path) -> None:
    """The table and verdict of the validation written to `folder`."""
    doc = json.loads((folder / "validation.json").read_text(encoding="utf-8"))
    rows = table_rows(doc)
    out = console()
    table = Table(title=f"validation {doc['name']}", title_justify="left")
    for col in rows[0] if rows else []:
        table.add_column(col, no_wrap=True)
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    out.print(table)
    out.print(doc["verdict"])
