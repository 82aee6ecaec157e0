"""Typed events are generated from the schemas and encode to exactly what the schemas say."""

from __future__ import annotations

import datetime as dt
import io
import uuid

import fastavro
import pytest

from sfsync import producers
from sfsync.devtools.codegen import generate
from sfsync.errors import RecordValidationError
from sfsync.producers import events as ev
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import PRODUCT_TOPICS


def test_committed_events_module_matches_the_schemas() -> None:
    path = producers.__file__.replace("__init__.py", "events.py")
    with open(path) as handle:
        assert handle.read() == generate(), "run `sfsync schemas codegen`"


def test_there_is_one_event_class_per_record_type() -> None:
    names = {n for spec in PRODUCT_TOPICS for n in load_topic_schema(spec.base).record_names}
    assert set(ev.EVENT_TYPES) == names
    for name, cls in ev.EVENT_TYPES.items():
        assert name == cls.RECORD_NAME
        assert name in load_topic_schema(cls.TOPIC).record_names


def test_every_type_round_trips_through_its_topic_schema() -> None:
    seen = {}
    for event in CommunitySimulator(seed=5).stream(20_000):
        seen.setdefault(event.RECORD_NAME, event)
    assert set(seen) == set(ev.EVENT_TYPES)
    for name, event in seen.items():
        schema = load_topic_schema(event.TOPIC)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema.parsed, (schema.full_name(name), event.to_avro()))
        buf.seek(0)
        read_name, value = fastavro.schemaless_reader(buf, schema.parsed, None, return_record_name=True)
        assert read_name == schema.full_name(name)
        assert value["event_id"] == uuid.UUID(event.event_id)
        assert value["occurred_at"] == event.occurred_at.replace(
            microsecond=event.occurred_at.microsecond // 1000 * 1000
        )


def test_defaults_fill_the_envelope() -> None:
    before = dt.datetime.now(dt.UTC)
    event = ev.UserDeleted(workspace_id="w", member=ev.MemberRef(member_id="u1"))
    assert uuid.UUID(event.event_id).version == 4
    assert before <= event.occurred_at <= dt.datetime.now(dt.UTC)


def test_naive_timestamp_is_refused_at_construction() -> None:
    with pytest.raises(RecordValidationError) as err:
        ev.UserDeleted(workspace_id="w", member=ev.MemberRef(member_id="u"), occurred_at=dt.datetime(2026, 1, 1))
    assert err.value.record_type == "UserDeleted"
    assert err.value.field == "occurred_at"


def test_bad_event_id_is_refused_at_construction() -> None:
    with pytest.raises(RecordValidationError, match=r"UserDeleted\.event_id: 'nope' is not a uuid"):
        ev.UserDeleted(workspace_id="w", member=ev.MemberRef(member_id="u"), event_id="nope")


def test_timestamp_millis_conversion_is_exact() -> None:
    moment = dt.datetime(2026, 11, 25, 10, 0, 0, 123999, tzinfo=dt.UTC)
    event = ev.UserDeleted(workspace_id="w", member=ev.MemberRef(member_id="u"), occurred_at=moment)
    assert event.to_avro()["occurred_at"] == int(dt.datetime(2026, 11, 25, 10, tzinfo=dt.UTC).timestamp()) * 1000 + 123
