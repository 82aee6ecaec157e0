"""How every ``sfsync`` command reports sfsync's own errors: one line on stderr, exit status 2.

Anything else is a bug and keeps its traceback. Kept apart from :mod:`sfsync.cli.main` so the
sub-command modules it registers can use it without importing the CLI back.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from sfsync.errors import SfsyncError
from sfsync.redaction import redact

P = ParamSpec("P")
R = TypeVar("R")


def reported(func: Callable[P, R]) -> Callable[P, R]:
    """Turn sfsync errors into one line on stderr (secrets redacted) and exit status 2 (Ctrl-C: 130)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SfsyncError as exc:
            typer.echo(f"error: {redact(str(exc))}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper
