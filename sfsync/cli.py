"""The ``sfsync`` command line.

Every command reports sfsync's own errors as one clear message and exit status 2 (no traceback);
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, ParamSpec, TypeVar

import typer

from sfsync import settings as cfg
from sfsync.errors import SfsyncError

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    help=(
        "sfsync keeps a product's data in step with Salesforce over Apache Kafka.\n\n"
        "Start here: `sfsync stack up` (a local Kafka + schema registry), then "
        "`sfsync produce --fake 1000` (synthetic community activity)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(help="Run a local single-node Kafka and schema registry.", no_args_is_help=True)
topics_app = typer.Typer(help="Create and list sfsync's Kafka topics.", no_args_is_help=True)
schemas_app = typer.Typer(help="Avro contracts: register, check compatibility, generate Python types.",
                          no_args_is_help=True)
app.add_typer(stack_app, name="stack")
app.add_typer(topics_app, name="topics")
app.add_typer(schemas_app, name="schemas")


def _echo(message: str) -> None:
    typer.echo(message, err=True)


def reported(func: Callable[P, R]) -> Callable[P, R]:
    """Turn sfsync errors into one line on stderr and exit status 2."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SfsyncError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


# ---------------------------------------------------------------------- stack
@stack_app.command("up")
@reported
def stack_up() -> None:
    """Fetch (first time only) and start Kafka and Apicurio on loopback; wait until both answer."""
    from sfsync.stack import Stack

    stack = Stack(cfg.load(cfg.StackSettings, "stack"), echo=_echo)
    report = stack.up()
    started = ", ".join(report.started) or "nothing (already running)"
    typer.echo(f"kafka     {report.kafka}")
    typer.echo(f"registry  {report.registry}")
    typer.echo(f"logs      {stack.logs}")
    typer.echo(
        f"ready in {report.seconds:.1f}s (started: {started}; fetch {report.fetch_seconds:.1f}s)"
    )
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={report.kafka} SCHEMA_REGISTRY_URL={report.registry}")


@stack_app.command("down")
@reported
def stack_down(
    wipe: Annotated[bool, typer.Option(help="Also delete Kafka's data (and so the registry's).")] = False,
) -> None:
    """Stop what `stack up` started (SIGTERM, then SIGKILL after 30 s) and free the ports."""
    from sfsync.stack import Stack

    stack = Stack(cfg.load(cfg.StackSettings, "stack"), echo=_echo)
    stopped = stack.down(wipe=wipe)
    typer.echo(f"stopped: {', '.join(stopped) or 'nothing was running'}" + (" (data wiped)" if wipe else ""))


@stack_app.command("status")
@reported
def stack_status() -> None:
    """Show each service's state, address and log file."""
    from sfsync.stack import Stack

    stack = Stack(cfg.load(cfg.StackSettings, "stack"))
    running = 0
    for svc in stack.status():
        pid = f" pid {svc.pid}" if svc.pid else ""
        typer.echo(f"{svc.name:<9} {svc.state:<9} {svc.address}{pid}")
        running += svc.state in ("running", "external")
    typer.echo(f"logs      {stack.logs}")
    if running < 2:
        raise typer.Exit(1)


# ---------------------------------------------------------------------- demo
@app.command("demo")
def demo() -> None:
    """The whole pipeline on one machine (not built yet: see issue 6)."""
    typer.echo(
        "`sfsync demo` / `make demo` is not there yet: the pipeline (processors, sink, poller) "
        "lands in later issues. Today you can run `sfsync stack up` and `sfsync produce --fake N`.",
        err=True,
    )
    raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


