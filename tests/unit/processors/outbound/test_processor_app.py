"""The processor's glue without Kafka: decode -> plan -> drop_stale -> encode, and what gets parked."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from sfsync.errors import ConfigError, ServiceUnavailableError
from sfsync.keys import person_identity
from sfsync.mapping import MatchKey, load_mappings, parse_mappings
from sfsync.ops.dlq import Stage
from sfsync.processors.outbound.processor import TableIdentity, per_event_mappings
from sfsync.processors.outbound.settings import ProcessorSettings
from tests.kit import BROKEN_MAPPING
from tests.kit.outbound import MEMBERS_TOPIC, ProcessorRig, user_created


def test_an_event_becomes_its_plan_encoded_for_sfsync_writes_with_its_coordinates() -> None:
    rig = ProcessorRig()
    event = user_created()
    handled = rig.handle(rig.members.encode_checked("UserCreated", event), 7)
    assert handled.parked == []
    writes = rig.writes(handled)
    assert [w["mapping"] for w in writes] == ["members", "activities"]  # parents first
    assert [w["write_id"] for w in writes] == [f"{event['event_id']}:members:0", f"{event['event_id']}:activities:1"]
    person = writes[0]
    assert person["key"] == f"ws-demo|Contact:Member_Id__c:{event['member']['member_id']}"  # the stable key
    assert person["fields"]["LastName"]["value"] == event["member"]["last_name"]
    assert {(w["source"]["topic"], w["source"]["partition"], w["source"]["offset"]) for w in writes} == {
        (MEMBERS_TOPIC, 2, 7)
    }
    assert [w["key"] for w in handled.planned] == [w["key"] for w in writes]
    # the clock now knows every field written, at the event's time
    assert set(rig.clock[person["key"]].values()) == {event["occurred_at"]}


def test_a_late_event_does_not_overwrite_newer_values_and_a_replay_writes_again() -> None:
    rig = ProcessorRig()
    newer = user_created()
    older = copy.deepcopy(newer)
    older["event_id"] = "00000000-0000-4000-8000-000000000001"
    older["occurred_at"] = newer["occurred_at"] - 60_000
    older["member"]["last_name"] = "Stale"
    first = rig.writes(rig.handle(rig.members.encode_checked("UserCreated", newer), 1))
    late = rig.handle(rig.members.encode_checked("UserCreated", older), 2)
    late_writes = rig.writes(late)
    assert first[0]["key"] not in {w["key"] for w in late_writes}  # every person field was newer already
    assert [w["mapping"] for w in late_writes] == ["activities"]  # the late event's own activity record
    assert late.parked == []
    # a replay of the newest event (same times) is written again: ties are kept
    again = rig.writes(rig.handle(rig.members.encode_checked("UserCreated", newer), 1))
    assert again[0]["fields"]["LastName"]["value"] == newer["member"]["last_name"]
    assert rig.processor.counts["stale"] == 1


def test_without_a_clock_nothing_is_dropped() -> None:
    rig = ProcessorRig()
    newer = user_created()
    older = {**newer, "occurred_at": newer["occurred_at"] - 1}
    for offset, value in enumerate((newer, older)):
        handled = rig.processor.handle(rig.members.encode_checked("UserCreated", value), MEMBERS_TOPIC, 0, offset)
        assert [w["mapping"] for w in rig.writes(handled)] == ["members", "activities"]


def test_records_only_their_own_event_writes_keep_no_clock() -> None:
    rig = ProcessorRig()
    assert per_event_mappings(rig.processor.mappings) == {"activities"}  # keyed by the product event's id
    event = user_created()
    person, activity = rig.writes(rig.handle(rig.members.encode_checked("UserCreated", event), 1))
    assert activity["key"].endswith(event["event_id"])
    assert set(rig.clock) == {person["key"]}  # the record_clock table does not grow by a key per event
    # a replay (same times) still plans the activity record again, with the same values
    again = rig.writes(rig.handle(rig.members.encode_checked("UserCreated", event), 1))
    assert [w["key"] for w in again] == [person["key"], activity["key"]]
    assert again[1]["fields"] == activity["fields"]


def test_a_per_event_record_another_mapping_also_writes_keeps_its_clock() -> None:
    mappings = load_mappings()
    activities = next(m for m in mappings.mappings if m.name == "activities")
    field = activities.match_alternatives[0][0].field
    by_member = activities.model_copy(
        update={
            "name": "activities_by_member",
            "match": [MatchKey.model_validate({"field": field, "from": "member.member_id"})],
        }
    )
    assert per_event_mappings(mappings.model_copy(update={"mappings": [*mappings.mappings, by_member]})) == set()


def test_undecodable_bytes_are_parked_with_their_original_bytes_and_nothing_is_written() -> None:
    rig = ProcessorRig()
    handled = rig.handle(b"\x07junk", 9, headers=[("trace", b"abc")])
    assert handled.writes == [] and rig.clock == {}
    (parked,) = handled.parked
    assert parked.stage is Stage.VALUE_CONVERTER
    assert (parked.original.topic, parked.original.partition, parked.original.offset) == (MEMBERS_TOPIC, 2, 9)
    assert parked.original.value == b"\x07junk" and parked.original.key == b"u-1"
    assert parked.original.headers == (("trace", b"abc"),)
    assert "wire format" in str(parked.reason)


def test_a_rejected_mapping_parks_the_event_and_the_other_writes_still_go_out() -> None:
    rig = ProcessorRig(parse_mappings(BROKEN_MAPPING))
    handled = rig.handle(rig.members.encode_checked("UserCreated", user_created()), 3)
    assert [w["mapping"] for w in rig.writes(handled)] == ["activities"]
    (parked,) = handled.parked
    assert parked.stage is Stage.TRANSFORMATION and parked.mapping == "members"
    assert "LastName" in str(parked.reason)


def test_a_registry_outage_is_raised_not_parked() -> None:
    rig = ProcessorRig()
    data = rig.members.encode_checked("UserCreated", user_created())
    rig.registry.unavailable = ServiceUnavailableError("registry down")
    with pytest.raises(ServiceUnavailableError):
        rig.handle(data, 4)
    assert rig.clock == {}


def test_an_identity_feeds_the_identity_that_planning_reads() -> None:
    rig = ProcessorRig()
    event = user_created()
    key = f"ws-demo|Contact:Member_Id__c:{event['member']['member_id']}"
    table: dict[str, Any] = {}
    entry = person_identity({"key": key, "sobject": "Lead", "salesforce_id": "00Q000000000001", "workspace_id": ""})
    assert entry is not None
    table[entry[0]] = list(entry[1])  # as the app's identity table holds it
    handled = rig.handle(rig.members.encode_checked("UserCreated", event), 5, identity=TableIdentity(table))
    assert rig.writes(handled)[0]["search_objects"] == ["Lead", "Contact"]  # the known object first
    assert TableIdentity({}).get(key) is None


def test_settings_defaults() -> None:
    settings = ProcessorSettings()
    assert settings.processing_guarantee == "at_least_once" and settings.store == "memory://"
    assert settings.producer_linger_ms == 10 and settings.broker_commit_every == 10_000
    assert settings.web_enabled is False


def test_invalid_settings_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    from sfsync.processors.outbound.settings import load_processor_settings

    monkeypatch.setenv("SFSYNC_PROCESSOR_STORE", "disk://")
    monkeypatch.setenv("SFSYNC_PROCESSOR_PROCESSING_GUARANTEE", "maybe")
    monkeypatch.setenv("SFSYNC_PROCESSOR_APP_ID", "has space")
    with pytest.raises(ConfigError) as info:
        load_processor_settings()
    message = str(info.value)
    assert "store" in message and "processing_guarantee" in message and "app_id" in message
