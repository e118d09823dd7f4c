"""`mixsweep`: the command line. Each sub-command is a thin shell over a library call."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

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
    status: list[int] = []
    atexit.register(_exit_now, status, os.getpid())  # the first exit handler registered runs last
    try:
        app()
    except SystemExit as exc:  # how typer ends every command
        status.append(_exit_status(exc.code))
        raise


def _exit_status(code: object) -> int:
    """The status the interpreter would exit with for `sys.exit(code)`."""
    if code is None:
        return 0
    return code & 0xFF if isinstance(code, int) else 1  # a message (printed already) exits with 1


def _exit_now(status: list[int], pid: int) -> None:
    """End the process once the command is done, its threads have ended and every other exit handler
    (logging's, multiprocessing's, Prefect's, MLflow's) has run: what is left is the interpreter's
    teardown of its modules, which with torch, Ray and Prefect loaded takes 1-2 s and writes nothing.
    An uncaught error (no status) takes the normal path, as does a child process that inherited this."""
    if not status or os.getpid() != pid:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or broken: nothing left to write there
            stream.flush()
    os._exit(status[0])
