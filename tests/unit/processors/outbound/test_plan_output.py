"""The outbound rule's output is fixed: the encoded Writes of a community stream under the shipped
default mapping are byte for byte those of the reference version (what ``bench/plan.py`` checks on
20,000 events), and the per-file planning index gives what the per-write computation gave."""

from __future__ import annotations

import hashlib
from typing import Any, cast

import pytest

from sfsync.mapping import MappingFile, load_mappings
from sfsync.mapping.products import known_event_types
from sfsync.processors.outbound.plan import salesforce_datetime
from sfsync.processors.outbound.processor import Processor
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import PRODUCT_TOPICS, WRITES
from tests.kit import FakeRegistry

REFERENCE_SHA256 = "41d5cff2649e8c5d62e838939a79c2a81f105c70649c9726620e457d42c2c8a1"
"""SHA-256 of every (key, value) the processor sends for the first 3,000 events of
``CommunitySimulator(seed=11)``, in order: computed with the planner before its per-file index."""


def _writes_digest(count: int, *, uuids_as_text: bool = True) -> str:
    registry = cast(SchemaRegistry, FakeRegistry())
    encoders: dict[str, tuple[str, AvroEncoder]] = {}
    for spec in PRODUCT_TOPICS:
        topic = spec.name("")
        encoder = AvroEncoder(registry, topic, load_topic_schema(spec.base))
        encoders.update(dict.fromkeys(encoder.schema.record_names, (topic, encoder)))
    processor = Processor(
        AvroDecoder(registry, uuids_as_text=uuids_as_text),
        AvroEncoder(registry, WRITES.name(""), load_topic_schema(WRITES.base)),
        load_mappings(),
    )
    clock: dict[str, Any] = {}
    digest = hashlib.sha256()
    for offset, event in enumerate(CommunitySimulator(seed=11).stream(count)):
        topic, encoder = encoders[event.RECORD_NAME]
        handled = processor.handle(
            encoder.encode_checked(event.RECORD_NAME, event.to_avro()), topic, 0, offset, clock=clock
        )
        assert not handled.parked
        for key, value in handled.writes:
            digest.update(key)
            digest.update(value)
    return digest.hexdigest()


def test_the_writes_of_a_community_stream_are_byte_identical_to_the_reference() -> None:
    assert _writes_digest(3000) == REFERENCE_SHA256


def test_events_decoded_with_uuid_objects_plan_the_same_writes_as_with_uuids_as_text() -> None:
    assert _writes_digest(1000, uuids_as_text=False) == _writes_digest(1000, uuids_as_text=True)


def _event_types() -> list[str]:
    seen = {event.RECORD_NAME for event in CommunitySimulator(seed=11).stream(3000)}
    return sorted(seen | known_event_types())


def test_the_planning_index_gives_what_the_mapping_file_gives_for_every_event_type_and_mapping() -> None:
    mappings = load_mappings()
    index = mappings.index()
    for event_type in _event_types():
        assert index.for_event(event_type) == mappings.for_event(event_type), event_type
    order = {m.name: i for i, m in enumerate(mappings.mappings)}
    for mapping in mappings.mappings:
        ordered = sorted(mapping.parents.items(), key=lambda item: order.get(item[1].mapping, len(order)))
        assert index.parents[mapping.name] == [(lookup, ref, mappings.get(ref.mapping)) for lookup, ref in ordered], (
            mapping.name
        )
        assert index.reads_before_write[mapping.name] is mapping.reads_before_write
    assert any(index.parents.values()), "the default mapping has parents to order"
    assert mappings.index() is index, "built once per list of mappings"


def test_a_copy_with_other_mappings_gets_its_own_index() -> None:
    mappings = load_mappings()
    before = mappings.index()
    fewer = mappings.model_copy(update={"mappings": [m for m in mappings.mappings if m.name != "members"]})
    assert "members" not in fewer.index().by_name
    assert all(m.name != "members" for t in _event_types() for m in fewer.index().for_event(t))
    assert mappings.index() is before


def test_match_alternatives_follow_a_copy_with_another_match() -> None:
    mapping = load_mappings().mappings[0]
    first = mapping.match_alternatives
    assert mapping.match_alternatives is first, "remembered"
    other = mapping.model_copy(update={"match": [mapping.match[-1]]})
    assert len(other.match_alternatives) == 1
    assert mapping.match_alternatives == first


def test_an_index_of_an_unknown_parent_keeps_it_last_and_unresolved() -> None:
    mappings = load_mappings()
    child = next(m for m in mappings.mappings if m.parents)
    lookup, ref = next(iter(child.parents.items()))
    orphan = child.model_copy(
        update={"name": "orphan", "parents": {"X__c": ref.model_copy(update={"mapping": "nowhere"}), lookup: ref}}
    )
    index = MappingFile(mappings=[*mappings.mappings, orphan]).index()
    assert [(name, parent) for name, _, parent in index.parents["orphan"]] == [
        (lookup, mappings.get(ref.mapping)),
        ("X__c", None),
    ]


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("2026-03-01T09:30:00.000Z", "2026-03-01T09:30:00.000+0000"),
        ("2026-03-01T09:30:00.000Z\n", "2026-03-01T09:30:00.000Z+0000"),  # what the regex's `$` has always let by
        ("2026-03-01T09:30:00.000+0000", "2026-03-01T09:30:00.000+0000"),
        ("2026-03-01T09:30:00Z", "2026-03-01T09:30:00Z"),
        ("2026-03-01T09:30:00.0000Z", "2026-03-01T09:30:00.0000Z"),
        ("x2026-03-01T09:30:00.000Z", "x2026-03-01T09:30:00.000Z"),
        ("aaaaaaaaaaaaaaaaaaaaaaaZ", "aaaaaaaaaaaaaaaaaaaaaaaZ"),
        ("Z", "Z"),
        ("", ""),
    ],
)
def test_salesforce_datetime_rewrites_only_utc_millisecond_text(text: str, written: str) -> None:
    assert salesforce_datetime(text) == written
