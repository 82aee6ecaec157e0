"""``sfsync inbound``: run the inbound processor (``salesforce.changes`` -> ``product.members.inbound``).

Settings come from the environment: ``SFSYNC_INBOUND_*`` (app id, mapping file and variables,
processing guarantee, table store, web endpoint), ``KAFKA_BOOTSTRAP_SERVERS`` /
``SCHEMA_REGISTRY_URL`` / ``SFSYNC_TOPIC_PREFIX``.
"""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from sfsync.reporting import reported


@reported
def inbound(
    max_seconds: Annotated[
        float | None,
        typer.Option("--max-seconds", min=0.1, help="Stop (cleanly, committing) after this many seconds."),
    ] = None,
) -> None:
    """Run the inbound processor: salesforce.changes → echo suppression, conflict rules → product.members.inbound."""
    from processors.inbound_app import run_inbound
    from processors.inbound_settings import load_inbound_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = load_inbound_settings()
    code = run_inbound(settings, max_seconds=max_seconds)
    if code != 0:
        typer.echo(f"error: the inbound processor stopped with status {code} (see the log above)", err=True)
        raise typer.Exit(code)
