"""Shared CLI plumbing: one-line errors with exit status 2, a console that does not wrap tables."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from mixture_search.errors import MixSweepError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_BAD_INPUT = 2


def console() -> Console:
    # Outside a terminal (pipes, CI logs) keep table rows on one line rather than wrapping at 80, unless
    # COLUMNS asks for a width.
    width = None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "0") or 0) or 200
    return Console(width=width, soft_wrap=False)


def error_console() -> Console:
    return Console(stderr=True, width=None if sys.stderr.isatty() else 400, highlight=False)


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn bad input into `error: <one line>` on stderr and exit status 2 (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except MixSweepError as exc:
            error_console().print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper
