"""Encoder and decoder without services: wire format, and errors that name record and field."""

from __future__ import annotations

import datetime as dt
import struct

import pytest

from sfsync.errors import RecordValidationError, SkippableRecordError
from sfsync.producers import events as ev
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.schema import load_topic_schema
from tests.kit import FakeRegistry


@pytest.fixture
def members() -> tuple[FakeRegistry, AvroEncoder]:
    registry = FakeRegistry()
    return registry, AvroEncoder(registry, "product.members", load_topic_schema("product.members"))  # type: ignore[arg-type]


def profile(**overrides: object) -> dict:
    value = ev.MemberProfile(
        member_id="u1",
        email="a@example.com",
        first_name="Ada",
        last_name="Lovelace",
        signed_up_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    ).to_avro()
    value.update(overrides)
    return value


def created(**member: object) -> dict:
    return {
        "event_id": "0b5f6a4e-6f4e-4d55-9d1e-1b8d2c1b7a10",
        "occurred_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "workspace_id": "w1",
        "member": profile(**member),
    }


def test_wire_format_header_and_round_trip(members: tuple[FakeRegistry, AvroEncoder]) -> None:
    registry, encoder = members
    data = encoder.encode("UserCreated", created())
    magic, schema_id = struct.unpack(">bI", data[:5])
    assert magic == 0
    assert schema_id == registry.subjects["product.members-value"]
    name, value = AvroDecoder(registry).decode(data)  # type: ignore[arg-type]
    assert name == "UserCreated"
    assert value["member"]["email"] == "a@example.com"
    assert value["occurred_at"] == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_checked_fast_path_writes_the_same_bytes(members: tuple[FakeRegistry, AvroEncoder]) -> None:
    _, encoder = members
    event = ev.UserCreated(
        workspace_id="w1",
        member=ev.MemberProfile(
            member_id="u1", email="a@example.com", signed_up_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        ),
    )
    strict = encoder.encode(
        "UserCreated",
        {
            **event.to_avro(),
            "occurred_at": event.occurred_at,
            "member": {**event.member.to_avro(), "signed_up_at": event.member.signed_up_at},
        },
    )
    assert encoder.encode_checked("UserCreated", event.to_avro()) == strict


@pytest.mark.parametrize(
    ("member", "field", "reason"),
    [
        ({"member_type": "VIP"}, "member.member_type", "'VIP' is not one of GUEST, STANDARD, LIMITED_APPROVAL"),
        ({"spaces": "General"}, "member.spaces", "expected an array"),
        ({"member_id": None}, "member.member_id", "expected string"),
        ({"location": {"country": 3}}, "member.location.country", "expected one of [null, string]"),
        ({"nickname": "x"}, "member.nickname", "not a field of this record"),
    ],
)
def test_a_value_that_does_not_fit_names_record_and_field(
    members: tuple[FakeRegistry, AvroEncoder], member: dict, field: str, reason: str
) -> None:
    _, encoder = members
    with pytest.raises(RecordValidationError) as err:
        encoder.encode("UserCreated", created(**member))
    assert err.value.record_type == "UserCreated"
    assert err.value.field == field
    assert reason in err.value.reason
    assert str(err.value).startswith(f"UserCreated.{field}: ")


def test_a_missing_required_field_is_named(members: tuple[FakeRegistry, AvroEncoder]) -> None:
    _, encoder = members
    value = created()
    del value["workspace_id"]
    with pytest.raises(RecordValidationError, match=r"UserCreated\.workspace_id: missing"):
        encoder.encode("UserCreated", value)


def test_a_record_type_the_topic_does_not_carry_is_refused(members: tuple[FakeRegistry, AvroEncoder]) -> None:
    _, encoder = members
    with pytest.raises(RecordValidationError, match=r"not carried by topic product\.members"):
        encoder.encode("EventAttend", created())


def test_decoder_refuses_bytes_without_the_confluent_header() -> None:
    with pytest.raises(SkippableRecordError, match="not Confluent wire format"):
        AvroDecoder(FakeRegistry()).decode(b'{"json": true}')  # type: ignore[arg-type]
