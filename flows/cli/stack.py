"""`mixsweep up|down|status`: the local stack (Prefect server + worker, MLflow server)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from flows.cli.common import console, user_errors
from flows.stack.local import LocalStack, StackConfig

HomeOpt = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="MIXSWEEP_HOME",
        help="State folder: databases, artifacts, logs, stack.json [default: runs/stack].",
    ),
]
HostOpt = Annotated[
    str | None,
    typer.Option(help="Interface to bind [default: 127.0.0.1]; 0.0.0.0 exposes the servers (see README, Security)."),
]


def _config(home: Path | None, **overrides: object) -> StackConfig:
    """The stack recorded in `home` (or the defaults), with the options the user gave on top."""
    base = LocalStack.at(home if home is not None else StackConfig().home).cfg
    given: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    return replace(base, **given) if given else base


def register(app: typer.Typer) -> None:
    @app.command("up")
    @user_errors
    def up(
        home: HomeOpt = None,
        host: HostOpt = None,
        prefect_port: Annotated[int | None, typer.Option(help="Prefect server port [default: 4200].")] = None,
        mlflow_port: Annotated[int | None, typer.Option(help="MLflow server port [default: 5000].")] = None,
        database: Annotated[
            str | None, typer.Option(help="sqlite (embedded, default) or postgres (the cluster configuration).")
        ] = None,
        postgres_url: Annotated[str | None, typer.Option(help="PostgreSQL URL for --database postgres.")] = None,
        deploy: Annotated[bool, typer.Option(help="Register the deployments of deploy/prefect.yaml.")] = True,
    ) -> None:
        """Start the local stack (idempotent): Prefect server, process work pool + worker, MLflow server."""
        cfg = _config(
            home,
            host=host,
            prefect_port=prefect_port,
            mlflow_port=mlflow_port,
            database=database,
            postgres_url=postgres_url,
        )
        urls = LocalStack(cfg, log=lambda m: console().print(f"[dim]•[/] {m}")).up(deploy=deploy)
        console().print(f"\n[bold]Prefect UI[/]  {urls['prefect']}\n[bold]MLflow UI[/]   {urls['mlflow']}")
        env = cfg.client_env()
        console().print(
            f"\nexport PREFECT_API_URL={env['PREFECT_API_URL']} MLFLOW_TRACKING_URI={env['MLFLOW_TRACKING_URI']}"
        )

    @app.command("env")
    @user_errors
    def env(home: HomeOpt = None) -> None:
        """Print the shell exports that point Prefect and MLflow clients at the stack: eval "$(mixsweep env)"."""
        cfg = LocalStack.at(_config(home).home).cfg  # the recorded ports, else the defaults
        for key, value in cfg.client_env().items():
            typer.echo(f"export {key}={value}")

    @app.command("down")
    @user_errors
    def down(home: HomeOpt = None) -> None:
        """Stop exactly the processes `mixsweep up` started (recorded in <home>/stack.json)."""
        stopped = LocalStack(_config(home), log=lambda m: console().print(f"[dim]•[/] {m}")).down()
        console().print(f"stopped {len(stopped)} process(es)")

    @app.command("status")
    @user_errors
    def status(home: HomeOpt = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Show each stack process: running, stale (recorded but gone) or stopped, and whether it answers."""
        rows = LocalStack(_config(home)).status()
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
            return
        table = Table(title="MixSweep local stack", title_justify="left")
        for col in ("name", "state", "pid", "answers", "url", "log"):
            table.add_column(col, no_wrap=True)
        colors = {"running": "green", "stale": "red", "stopped": "dim"}
        for r in rows:
            table.add_row(
                str(r["name"]),
                f"[{colors[str(r['state'])]}]{r['state']}[/]",
                str(r["pid"] or "-"),
                str(r["answers"] if r["answers"] is not None else "-"),
                str(r["url"] or "-"),
                str(r["log"] or "-"),
            )
        console().print(table)
