"""The publisher against the real broker: async acknowledgements, delivery failures, bad input."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from sfsync.errors import DeliveryError, RecordValidationError
from sfsync.producers import events as ev
from sfsync.producers.fake import CommunitySimulator
from sfsync.producers.publisher import AsyncPublisher
from sfsync.serde.codec import AvroDecoder

from .helpers import consume_all, end_offsets, make_topics, open_publisher, publisher_settings


async def test_async_publish_resolves_with_where_kafka_stored_the_event(services, prefix, registry) -> None:
    make_topics(services, prefix)
    events = list(CommunitySimulator(seed=4).stream(60))
    async with AsyncPublisher(publisher_settings(services, prefix)) as publisher:
        delivered = await asyncio.gather(*(publisher.publish(e) for e in events))
    assert len({(d.topic, d.partition, d.offset) for d in delivered}) == len(events)
    decoder = AvroDecoder(registry)
    topics = sorted({d.topic for d in delivered})
    stored = {(m.topic(), m.partition(), m.offset()): m for m in consume_all(services.bootstrap, topics, len(events))}
    for event, where in zip(events, delivered, strict=True):
        assert where.topic == f"{prefix}{event.TOPIC}"
        name, value = decoder.decode(stored[(where.topic, where.partition, where.offset)].value())
        assert (name, str(value["event_id"])) == (event.RECORD_NAME, event.event_id)


def test_records_kafka_refuses_are_raised_as_delivery_errors(services, prefix) -> None:
    forum = f"{prefix}product.forum"
    admin = AdminClient({"bootstrap.servers": services.bootstrap})
    for future in admin.create_topics([NewTopic(forum, 1, 1, config={"max.message.bytes": "2048"})]).values():
        future.result()
    publisher = open_publisher(services, prefix, compression="none")
    member = ev.MemberRef(member_id="u-1", email="a@example.com")
    post = ev.ForumPost(
        id="post-big",
        title="Big",
        body="x" * 20_000,
        url="https://x/1",
        status="New",
        priority="High",
        created_at=dt.datetime.now(dt.UTC),
        author=member,
    )
    publisher.publish(ev.ForumPostCaseRequested(workspace_id="w", post=post))
    publisher.publish(ev.UserDeleted(workspace_id="w", member=member))
    with pytest.raises(DeliveryError) as err:
        publisher.flush()
    assert err.value.failures[0][:2] == (forum, "post-big")
    assert "too large" in err.value.failures[0][2].lower()
    assert end_offsets(services.bootstrap, f"{prefix}product.members") == 1  # the good one went through


def test_an_invalid_record_raises_and_nothing_is_sent(services, prefix) -> None:
    publisher = open_publisher(services, prefix)
    bad = ev.UserCreated(
        workspace_id="w", member=ev.MemberProfile(member_id="u-9", signed_up_at=dt.datetime.now(dt.UTC))
    ).to_avro()
    bad["member"]["approval_status"] = "MAYBE"
    bad["occurred_at"] = dt.datetime.now(dt.UTC)
    bad["member"]["signed_up_at"] = dt.datetime.now(dt.UTC)
    with pytest.raises(RecordValidationError) as err:
        publisher.publish_record("UserCreated", bad)
    assert (err.value.record_type, err.value.field) == ("UserCreated", "member.approval_status")
    publisher.flush()
    assert end_offsets(services.bootstrap, f"{prefix}product.members") == 0


def test_publish_record_accepts_a_plain_dict(services, prefix) -> None:
    publisher = open_publisher(services, prefix)
    publisher.publish_record(
        "UserDeleted",
        {
            "event_id": "2f0c3a43-1d2f-4c3b-9f0e-6c1f8b8a9e21",
            "occurred_at": dt.datetime.now(dt.UTC),
            "workspace_id": "w",
            "member": {"member_id": "u-2"},
        },
    )
    publisher.flush()
    assert end_offsets(services.bootstrap, f"{prefix}product.members") == 1
