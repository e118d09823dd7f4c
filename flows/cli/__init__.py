"""`mixsweep`: the command line. Each sub-command is a thin shell over a library call."""

from __future__ import annotations

import os

import typer

from flows.cli import data as data_cli
from flows.cli import evaluate as evaluate_cli
from flows.cli import stack
from flows.cli import sweep as sweep_cli
from flows.cli import train as train_cli
from flows.cli import validate as validate_cli
from flows.cli.mixture import mixture_app
from flows.cli.search import register as register_search
from flows.stack.quiet_env import QUIET_ENV

app = typer.Typer(
    name="mixsweep",
    help=(
        "MixSweep: search the data mixture of an LLM pretraining run with small proxy models.\n\n"
        "Mixtures are read from Megatron data_path lists, OpenSeek/FlagScale configs, or MixSweep's own "
        "YAML/JSON. Bad input exits with status 2 and a one-line message naming the file and field."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
app.add_typer(mixture_app, name="mixture")
register_search(app)
stack.register(app)
train_cli.register(app)
data_cli.register(app)
evaluate_cli.register(app)
sweep_cli.register(app)
validate_cli.register(app)


def main() -> None:
    for key, value in QUIET_ENV.items():  # offline and quiet unless the user says otherwise
        os.environ.setdefault(key, value)
    app()
