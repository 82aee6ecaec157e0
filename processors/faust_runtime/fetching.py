"""A patch of faust-streaming 0.15.3's consumer: how its aiokafka consumer fetches, as the app's settings say.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` written into the call and
aiokafka's ``fetch_min_bytes`` of 1, and offers no setting for either: the broker answers each fetch
as soon as it holds a record, so a consumer that tails a busy topic costs the broker a fetch per
record or two (~144 µs of broker CPU a record vs ~22 at 64 KB / 100 ms, ``bench/e2e.py``).
:class:`FetchTunedConsumerThread` builds the consumer as Faust does, then sets both from its
transport's ``fetch`` (:class:`~sfsync.kafka.clients.FetchTuning`; None: Faust's) before it
starts: aiokafka hands them to its fetcher at start. :class:`FetchTunedTransport` is Faust's
aiokafka transport with a consumer that uses that thread; the apps' transports
(:mod:`~sfsync.processors.faust_runtime.recovery`, :mod:`~sfsync.processors.faust_runtime.commit`) build on it.

Offered upstream as a pair of settings (``consumer_fetch_min_bytes``, ``consumer_fetch_max_wait_ms``);
the attributes set here are aiokafka 0.14's (pinned), checked by ``tests/unit/processors/test_fetching.py``.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver

from sfsync.kafka.clients import FetchTuning
from sfsync.processors.faust_runtime.draining import drain_messages

__all__ = ["FetchTunedConsumer", "FetchTunedConsumerThread", "FetchTunedTransport", "tune_fetch"]


def tune_fetch(consumer: Any, fetch: FetchTuning | None) -> Any:
    """``consumer`` (an ``aiokafka.AIOKafkaConsumer`` not started yet) fetching as ``fetch`` says (None: unchanged)."""
    if fetch is not None:
        consumer._fetch_min_bytes = fetch.min_bytes
        consumer._fetch_max_wait_ms = fetch.wait_max_ms
    return consumer


class FetchTunedConsumerThread(aiokafka_driver.AIOKafkaConsumerThread):
    """Faust's consumer thread, whose worker consumer fetches as its transport's ``fetch`` says."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        return tune_fetch(super()._create_worker_consumer(transport), getattr(transport, "fetch", None))


class FetchTunedConsumer(aiokafka_driver.Consumer):
    """Faust's aiokafka consumer, on a :class:`FetchTunedConsumerThread`, draining its fetches without a
    task per message (:mod:`sfsync.processors.faust_runtime.draining`)."""

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return FetchTunedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - the worker's loop
        await drain_messages(self, fetcher)


class FetchTunedTransport(aiokafka_driver.Transport):
    """Faust's aiokafka transport with :class:`FetchTunedConsumer`; set ``fetch`` on it."""

    Consumer = FetchTunedConsumer
    fetch: FetchTuning | None = None
