"""The one way sfsync builds a ``faust.App``: its settings, the broker, and the patched table manager.

Both processors build their app here, so a Faust option means the same in each, and every app
recovers its tables with :class:`~sfsync.processors.faust_runtime.recovery.SeekFirstTableManager`.
"""

from __future__ import annotations

from typing import Any

import faust

from sfsync.processors.faust_runtime.connection import broker_credentials, broker_urls
from sfsync.processors.faust_runtime.recovery import SeekFirstTableManager
from sfsync.processors.faust_runtime.settings import FaustAppSettings

__all__ = ["new_app"]


def new_app(settings: FaustAppSettings, *, topic_partitions: int, **options: Any) -> faust.App:
    """A ``faust.App`` (not started) configured from ``settings``; ``options`` are further Faust options.

    Internal topics get ``topic_partitions`` partitions; modules are never autodiscovered (each app
    registers its agents itself).
    """
    return faust.App(
        settings.app_id,
        broker=broker_urls(settings),
        broker_credentials=broker_credentials(settings),
        store=settings.store,
        processing_guarantee=settings.processing_guarantee,
        web_enabled=settings.web_enabled,
        web_port=settings.web_port,
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_commit_every=settings.broker_commit_every,
        producer_linger=settings.producer_linger_ms / 1000,
        producer_max_batch_size=settings.producer_max_batch_size,
        stream_buffer_maxsize=settings.stream_buffer_maxsize,
        consumer_auto_offset_reset=settings.auto_offset_reset,
        topic_partitions=topic_partitions,
        topic_disable_leader=True,
        autodiscover=False,
        TableManager=SeekFirstTableManager,  # no record lost when a (re)start recovers the tables
        **options,
    )
