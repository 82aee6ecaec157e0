"""``sfsync processor``: run the outbound processor (``product.*`` -> write plans on ``sfsync.writes``).

Settings come from the environment: ``SFSYNC_PROCESSOR_*`` (app id, processing guarantee, table
store, web endpoint), ``SFSYNC_MAPPING_FILE`` / ``SFSYNC_MAPPING_VARS`` (the mapping, as every process
reads it), ``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` / ``SFSYNC_TOPIC_PREFIX``.
:func:`run_worker` also runs ``sfsync inbound``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from sfsync.cli.reporting import reported
from sfsync.logs import configure as configure_logging

MaxSeconds = Annotated[
    float | None,
    typer.Option("--max-seconds", min=0.1, help="Stop (cleanly, committing) after this many seconds."),
]


def run_worker(what: str, run: Callable[[], int]) -> None:
    """Run a Faust worker (``run`` loads its settings, runs it and returns its exit status) with logs on
    stderr; a non-zero status ends the command with it."""
    configure_logging()
    code = run()
    if code != 0:
        typer.echo(f"error: {what} stopped with status {code} (see the log above)", err=True)
        raise typer.Exit(code)


@reported
def processor(max_seconds: MaxSeconds = None) -> None:
    """Run the outbound processor: product.* → mapping rules → sfsync.writes."""
    from sfsync.processors.outbound.app import run_processor
    from sfsync.processors.outbound.settings import load_processor_settings

    run_worker("the processor", lambda: run_processor(load_processor_settings(), max_seconds=max_seconds))
