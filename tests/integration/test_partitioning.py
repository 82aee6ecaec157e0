"""Every kind of producer sfsync runs puts a key on the partition Faust (aiokafka) and the Java client
choose for it (murmur2), on a real broker.

That is what keeps the outbound processor's tables co-partitioned with the topics that feed them
(``sfsync.identities`` comes from the sink's producer, ``sfsync.salesforce_edits`` from Faust's, the
planned writes from the processor's own), and a product topic partitioned the same way whichever
client the product uses. librdkafka's default (``consistent_random``, CRC32) puts most keys elsewhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner

from sfsync.kafka.admin import ensure_topics
from sfsync.kafka.clients import new_producer
from sfsync.kafka.delivery import Outbox, TransactionalProducer
from sfsync.keys import record_key
from sfsync.processors.outbound.writes import WritesProducer
from sfsync.producers import events as ev
from sfsync.topics import MEMBERS, TopicSpec
from tests.integration.helpers import consume_all, open_publisher

KEYS = 400
PARTITIONS = 7  # not the default 6: the count is read from the topic, not assumed


def java_partition(key: bytes, partitions: int) -> int:
    """Where Faust's producer (aiokafka's DefaultPartitioner: the Java client's murmur2) puts ``key``."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def keys(tag: str) -> list[bytes]:
    return [record_key("ws-1", "Contact", "Email", f"{tag}-{i}@example.org").encode() for i in range(KEYS)]


def misplaced(bootstrap: str, topic: str, expected: int, partitions: int) -> list[tuple[bytes, int, int]]:
    """(key, partition, Java's partition) of each record of ``topic`` not where Java would put it."""
    messages = consume_all(bootstrap, [topic], expected, timeout_s=60)
    assert len(messages) == expected
    return [
        (m.key(), m.partition(), java_partition(m.key(), partitions))
        for m in messages
        if m.partition() != java_partition(m.key(), partitions)
    ]


def _outbox(config: dict[str, Any], topic: str, tag: str) -> None:
    """The sink's results and identities, the DLQ and the error log: new_producer under an Outbox."""
    outbox = Outbox(new_producer(config, "test-outbox"), label=topic, timeout_s=30)
    for key in keys(tag):
        outbox.send(topic, b"v", key)
    outbox.flush()


def _transactions(config: dict[str, Any], topic: str, tag: str) -> None:
    """The poller's changes: one transaction, no partition given."""
    producer = TransactionalProducer(config, f"test-{topic}", timeout_s=30)
    try:
        producer.commit([(topic, key, b"v", None) for key in keys(tag)])
    finally:
        producer.close()


def _processor_writes(config: dict[str, Any], topic: str, tag: str) -> None:
    """The processor's planned and ordered writes."""
    writes = WritesProducer(config, topic, delivery_timeout_s=30)
    for key in keys(tag):
        writes.send(key, b"v")
    writes.flush()
    writes.close()


@pytest.mark.parametrize(
    "produce", [_outbox, _transactions, _processor_writes], ids=["new_producer", "transactional", "writes"]
)
def test_each_producer_puts_every_key_where_java_and_faust_put_it(
    services: Any, prefix: str, produce: Callable[[dict[str, Any], str, str], None]
) -> None:
    config = {"bootstrap.servers": services.bootstrap}
    spec = TopicSpec("keys", "a write key", partitions=PARTITIONS)
    ensure_topics(config, [spec], prefix)
    produce(config, spec.name(prefix), "k")
    assert misplaced(services.bootstrap, spec.name(prefix), KEYS, PARTITIONS) == []


def test_the_publisher_puts_every_member_where_java_and_faust_put_it(services: Any, prefix: str) -> None:
    publisher = open_publisher(services, prefix)
    now = dt.datetime.now(dt.UTC)
    for i in range(KEYS):
        member = ev.MemberRef(member_id=f"member-{i}", email=f"m{i}@example.org")
        publisher.publish(ev.UserDeleted(workspace_id="w", member=member, occurred_at=now))
    publisher.flush()
    publisher.close()
    assert misplaced(services.bootstrap, MEMBERS.name(prefix), KEYS, MEMBERS.partitions) == []
