"""``sfsync poller``: run the Salesforce poller (Salesforce -> ``salesforce.changes``).

Settings come from the environment: ``SFSYNC_SOURCE_*`` (objects, poll interval, lookback window,
checkpoint topic, group, metrics port, concurrent polls), ``SFSYNC_MAPPING_FILE`` / ``SFSYNC_MAPPING_VARS``
(the mapping, as every process reads it), ``SFSYNC_GOVERNOR_*`` (API budget, one per org), ``SALESFORCE_*``
(the org and its credentials), ``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` / ``SFSYNC_TOPIC_PREFIX``;
with ``SFSYNC_WORKSPACES_ENABLED``, the workspace registry, ``SFSYNC_CONNECTION_KEYS`` and
``SFSYNC_MAPPING_LIBRARY`` (the replicas share the orgs of the registry's workspaces; ``SALESFORCE_*``
is polled too, for the workspaces the registry does not know, and may be left unset with
``SFSYNC_WORKSPACES_REQUIRED``).

Before polling, the mapping file is checked against the org's describes with the rules every process
runs, and for what the poller would select: any problem (a field the org lacks or hides from the
integration user...) stops it at once, exit status 2, with every problem listed (with the registry, that
org is held instead, the others polled). Governor pauses, retried Salesforce errors, held orgs and
quarantined objects go to ``sfsync.errors``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from sfsync.cli.reporting import reported
from sfsync.logs import configure as configure_logging


@reported
def poller(
    max_polls: Annotated[
        int | None, typer.Option("--max-polls", min=1, help="Stop after this many object polls (tests, demo).")
    ] = None,
    idle_exit_s: Annotated[
        float | None,
        typer.Option("--idle-exit-s", min=0.1, help="Stop once no change was found for this many seconds."),
    ] = None,
) -> None:
    """Run the Salesforce poller: Salesforce → salesforce.changes (checkpoints in Kafka)."""
    from sfsync.errors import ConfigError
    from sfsync.salesforce import SalesforceSettings, load_settings
    from sfsync.salesforce.governor import load_governor_settings
    from sfsync.sources.poller import run_poller
    from sfsync.sources.settings import load_source_settings
    from sfsync.workspaces import load_workspaces_settings

    configure_logging()
    source_settings = load_source_settings()
    workspaces = load_workspaces_settings()
    salesforce_settings: SalesforceSettings | None = None
    try:
        salesforce_settings = load_settings()
    except ConfigError:
        if not (workspaces.enabled and workspaces.required):
            raise  # the env connection is the org polled, or the one of the workspaces the registry does not know
    governor_settings = load_governor_settings()
    report = asyncio.run(
        run_poller(
            source_settings,
            salesforce_settings,
            governor_settings=governor_settings,
            max_polls=max_polls,
            idle_exit_s=idle_exit_s,
            workspaces=workspaces,
        )
    )
    typer.echo(
        f"objects {','.join(report.objects) or '-'}  polls {report.polls}  pages {report.pages}  "
        f"changes {report.changes}  api calls {report.api_calls}"
    )
