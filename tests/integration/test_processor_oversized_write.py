"""A write larger than ``sfsync.writes`` accepts is parked, and the processor goes on (real broker).

The writes topic is created with ``max.message.bytes`` = 64 KiB; a member's profile update carries a
100 kB title, so the Contact/Lead write it plans cannot be stored. The processor (its own process,
``python -m sfsync.processors.outbound.app``) must park that event in the DLQ with code
``MSG_SIZE_TOO_LARGE`` and plan the member's next update as usual, without stopping.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from sfsync.kafka.admin import ensure_topics
from sfsync.ops.dlq import H_CODE, H_EXC_MESSAGE, H_MAPPING, H_STAGE, H_TOPIC
from sfsync.producers import events as ev
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import WRITES, TopicSpec
from tests.integration.helpers import consume_all, open_publisher
from tests.integration.processes import Spawned, processor_env

WRITES_LIMIT = 64 * 1024


def profile_update(member_id: str, title: str, at: dt.datetime) -> ev.UserProfileUpdate:
    member = ev.MemberProfile(
        member_id=member_id,
        email=f"{member_id}@example.org",
        first_name="Ada",
        last_name="Lovelace",
        title=title,
        signed_up_at=at - dt.timedelta(days=30),
    )
    return ev.UserProfileUpdate(workspace_id="w", member=member, changed_fields=["title"], occurred_at=at)


def titles(messages: list[Any], decoder: AvroDecoder) -> list[str | None]:
    """The Title each write of ``messages`` sets (None for writes that set none)."""
    found = []
    for message in messages:
        _, write = decoder.decode(message.value())
        value = (write["fields"].get("Title") or {}).get("value")
        found.append(value)
    return found


def test_a_write_larger_than_the_topic_accepts_is_parked_and_the_processor_goes_on(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    small = TopicSpec(WRITES.base, WRITES.key_doc, partitions=WRITES.partitions, config={"max.message.bytes": "65536"})
    ensure_topics({"bootstrap.servers": services.bootstrap}, [small], prefix)
    now = dt.datetime.now(dt.UTC)
    huge = profile_update("u-huge", "x" * 100_000, now)
    later = profile_update("u-huge", "Engineer", now + dt.timedelta(seconds=1))  # same member: same partition
    publisher = open_publisher(services, prefix)
    publisher.publish(huge)
    publisher.publish(later)
    publisher.flush()

    env = processor_env(services, prefix, f"proc-{uuid.uuid4().hex[:10]}")
    proc = Spawned("sfsync.processors.outbound.app", "90", env=env, log=tmp_path / "processor.log")
    decoder = AvroDecoder(registry)
    try:
        parked = consume_all(services.bootstrap, [prefix + "sfsync.dlq"], 1, timeout_s=60)
        writes: list[Any] = []
        deadline = time.monotonic() + 60
        while "Engineer" not in titles(writes, decoder) and time.monotonic() < deadline:
            writes = consume_all(services.bootstrap, [prefix + "sfsync.writes"], 100, timeout_s=3)
        time.sleep(2)  # past a commit (every 0.5 s), whose flush failed before the fix
        alive = proc.running
    finally:
        proc.stop(timeout_s=20)
    log = proc.log_tail()

    assert len(parked) == 1, log
    headers = {k: v.decode() for k, v in parked[0].headers() or []}
    assert headers[H_CODE] == "MSG_SIZE_TOO_LARGE", headers
    assert headers[H_STAGE] == "KAFKA_PRODUCE"
    assert headers[H_TOPIC] == prefix + "product.members"
    assert headers[H_MAPPING] == "members"
    assert "too large" in headers[H_EXC_MESSAGE].lower() and prefix + "sfsync.writes" in headers[H_EXC_MESSAGE]
    assert parked[0].key() == b"u-huge"
    _, event = decoder.decode(parked[0].value())  # the event itself, byte for byte, as the processor parks
    assert str(event["event_id"]) == huge.event_id

    assert "Engineer" in titles(writes, decoder), log  # the member's next update was planned and written
    assert all(len(m.value()) < WRITES_LIMIT for m in writes)
    assert alive, log
    assert proc.returncode == 0, log
    assert "Traceback" not in proc.output(), log
