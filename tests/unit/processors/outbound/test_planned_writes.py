"""The processor's two steps without Kafka: planning (no state) then ordering each planned write
against its record's clock and identity, as the app runs them on either side of its repartition topic."""

from __future__ import annotations

import copy
import random
from typing import Any, cast

from sfsync.ops.dlq import Stage
from sfsync.processors.outbound.processor import Processor, TableIdentity
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import PRODUCT_TOPICS
from tests.kit.outbound import PLANNED_TOPIC, ProcessorRig, user_created


def test_planning_then_ordering_writes_what_one_step_writes_for_a_community_stream() -> None:
    """Every product topic, events out of order (late ones among them): the two steps send the same
    writes as :meth:`Processor.handle`, and leave the same clock."""
    rig = ProcessorRig()
    registry = cast(SchemaRegistry, rig.registry)
    one_step = Processor(rig.decoder, rig.processor.encoder, rig.processor.mappings)
    one_clock: dict[str, Any] = {}
    encoders = {s.base: AvroEncoder(registry, f"t.{s.base}", load_topic_schema(s.base)) for s in PRODUCT_TOPICS}
    decoder = AvroDecoder(registry, logical_types=False)
    expected: list[dict[str, Any]] = []
    got: list[dict[str, Any]] = []
    stale = 0
    events = list(CommunitySimulator(seed=5).stream(200))
    random.Random(5).shuffle(events)
    for offset, event in enumerate(events):
        value = encoders[event.TOPIC].encode_checked(event.RECORD_NAME, event.to_avro())
        handled = one_step.handle(value, f"t.{event.TOPIC}", 0, offset, clock=one_clock)
        expected += [decoder.decode(v)[1] for _, v in handled.writes]
        planned = rig.processor.plan_record(value, f"t.{event.TOPIC}", 0, offset)
        assert not planned.parked
        for ordered in rig.order(planned):
            assert not ordered.parked
            stale += not ordered.writes
            for key, data in ordered.writes:
                write = decoder.decode(data)[1]
                assert key == write["key"].encode()  # keyed by its record, like the planned write
                got.append(write)
    assert got == expected
    assert stale == one_step.counts["stale"] > 0  # the stream has late events: some writes were stale
    assert rig.clock == one_clock
    counts = rig.processor.counts
    assert (counts["events"], counts["writes"], counts["stale"]) == (200, len(expected), stale)


def test_ordering_drops_a_late_writes_stale_fields_and_sends_a_fresh_write_as_planned() -> None:
    rig = ProcessorRig()
    newer = user_created()
    older = copy.deepcopy(newer)
    older["event_id"] = "00000000-0000-4000-8000-000000000001"
    older["occurred_at"] = newer["occurred_at"] - 60_000
    first = rig.plan(rig.members.encode_checked("UserCreated", newer), 1)
    late = rig.plan(rig.members.encode_checked("UserCreated", older), 2)
    assert rig.clock == {}  # planning reads and writes no state
    sent = rig.order(first)
    assert [h.writes for h in sent] == [[w] for w in first.writes]  # fresh: the planned bytes, as they are
    person, activity = rig.order(late)
    assert person.writes == [] and person.parked == []  # every field older than the clock: dropped
    assert activity.writes == [late.writes[1]]  # the late event's own activity record (no clock)
    assert rig.processor.counts["stale"] == 1


def test_ordering_puts_the_object_a_record_is_known_to_be_first() -> None:
    rig = ProcessorRig()
    event = user_created()
    key = f"ws-demo|Contact:Member_Id__c:{event['member']['member_id']}"
    planned = rig.plan(rig.members.encode_checked("UserCreated", event), 3)
    assert rig.writes(planned)[0]["search_objects"] == ["Contact", "Lead"]  # planning knows no identity
    known = TableIdentity({key: ["Lead", "00Q000000000001"]})
    person, _ = rig.order(planned, identity=known)
    assert rig.writes(person)[0]["search_objects"] == ["Lead", "Contact"]


def test_a_planned_record_that_is_not_a_write_is_parked_with_its_bytes() -> None:
    rig = ProcessorRig()
    event = rig.members.encode_checked("UserCreated", user_created())
    for value in (b"\x07junk", event, None):
        handled = rig.processor.order_write(value, PLANNED_TOPIC, 1, 9, key=b"k", clock=rig.clock)
        assert handled.writes == []
        (parked,) = handled.parked
        assert parked.stage == Stage.VALUE_CONVERTER
        assert (parked.original.topic, parked.original.offset, parked.original.value) == (PLANNED_TOPIC, 9, value)
    assert rig.clock == {} and rig.processor.counts["parked"] == 3
