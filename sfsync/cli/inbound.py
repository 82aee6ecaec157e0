"""``sfsync inbound``: run the inbound processor (``salesforce.changes`` -> ``product.members.inbound``).

Settings come from the environment: ``SFSYNC_INBOUND_*`` (app id, processing guarantee, table
store, web endpoint), ``SFSYNC_MAPPING_FILE`` / ``SFSYNC_MAPPING_VARS`` (the mapping, as every process
reads it), ``KAFKA_BOOTSTRAP_SERVERS`` / ``SCHEMA_REGISTRY_URL`` / ``SFSYNC_TOPIC_PREFIX``.
"""

from __future__ import annotations

from sfsync.cli.processor import MaxSeconds, run_worker
from sfsync.cli.reporting import reported


@reported
def inbound(max_seconds: MaxSeconds = None) -> None:
    """Run the inbound processor: salesforce.changes → echo suppression, conflict rules → product.members.inbound."""
    from sfsync.processors.inbound.app import run_inbound
    from sfsync.processors.inbound.settings import load_inbound_settings

    run_worker("the inbound processor", lambda: run_inbound(load_inbound_settings(), max_seconds=max_seconds))
