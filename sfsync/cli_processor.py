"""``sfsync processor``: run the outbound processor (``product.*`` -> write plans on ``sfsync.writes``).

Settings come from the environment: ``SFSYNC_PROCESSOR_*`` (app id, mapping file and variables,
processing guarantee, table store, web endpoint), ``KAFKA_BOOTSTRAP_SERVERS`` /
``SCHEMA_REGISTRY_URL`` / ``SFSYNC_TOPIC_PREFIX``.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from sfsync.reporting import reported


@reported
def processor(
    max_seconds: Annotated[
        float | None,
        typer.Option("--max-seconds", min=0.1, help="Stop (cleanly, committing) after this many seconds."),
    ] = None,
) -> None:
    """Run the outbound processor: product.* → mapping rules → sfsync.writes."""
    from processors.app import run_processor
    from processors.settings import load_processor_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_processor_settings()
    code = run_processor(settings, max_seconds=max_seconds)
    if code != 0:
        typer.echo(f"error: the processor stopped with status {code} (see the log above)", err=True)
        raise typer.Exit(code)
