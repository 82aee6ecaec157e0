"""``sfsync sink``: run the Salesforce sink (``sfsync.writes`` -> Salesforce -> ``sfsync.results``).

Settings come from the environment: ``SFSYNC_SINK_*`` (batching, Kafka group, metrics port,
quarantine recheck), ``SFSYNC_MAPPING_FILE`` / ``SFSYNC_MAPPING_VARS`` (the mapping, as every process
reads it), ``SFSYNC_GOVERNOR_*`` (API budget), ``SALESFORCE_*`` (the org and its credentials),
``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` / ``SFSYNC_TOPIC_PREFIX``; with
``SFSYNC_WORKSPACES_ENABLED``, the workspace registry and ``SFSYNC_CONNECTION_KEYS`` (each workspace's
writes go to its own org; ``SALESFORCE_*`` serves the workspaces it does not know, and may be left unset
with ``SFSYNC_WORKSPACES_REQUIRED``).

Before consuming anything the mapping is checked against the org's describes: any problem stops the
sink at once, exit status 2, with every problem listed (``sfsync.sinks.main``).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from sfsync.cli.reporting import reported
from sfsync.logs import configure as configure_logging


@reported
def sink(
    max_batches: Annotated[
        int | None, typer.Option("--max-batches", min=1, help="Stop after this many batches (tests, demo).")
    ] = None,
    idle_exit_s: Annotated[
        float | None,
        typer.Option("--idle-exit-s", min=0.1, help="Stop once no write arrived for this many seconds."),
    ] = None,
) -> None:
    """Run the Salesforce sink: sfsync.writes → Salesforce → sfsync.results."""
    from sfsync.errors import ConfigError
    from sfsync.salesforce import SalesforceSettings, load_settings
    from sfsync.salesforce.governor import load_governor_settings
    from sfsync.sinks.main import run_sink
    from sfsync.sinks.settings import load_sink_settings
    from sfsync.workspaces import load_workspaces_settings

    configure_logging()
    sink_settings = load_sink_settings()
    workspaces = load_workspaces_settings()
    salesforce_settings: SalesforceSettings | None = None
    try:
        salesforce_settings = load_settings()
    except ConfigError:
        if not (workspaces.enabled and workspaces.required):
            raise  # the env connection serves the workspaces the registry does not know
    governor_settings = load_governor_settings()
    report = asyncio.run(
        run_sink(
            sink_settings,
            salesforce_settings,
            governor_settings=governor_settings,
            max_batches=max_batches,
            idle_exit_s=idle_exit_s,
            workspaces=workspaces,
        )
    )
    typer.echo(
        f"batches {report.batches}  written {report.results}  parked {report.parked}  "
        f"api calls {report.api_calls}  governor pauses {report.governor_pauses}  "
        f"refused logins {report.auth_failures}"
    )
