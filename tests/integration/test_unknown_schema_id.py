"""A record whose schema id the registry does not know is that record's fault: decoding it raises a
skippable error (every consumer parks it in the DLQ and goes on), never a fatal one that would stop
a worker and stop it again after every restart. Real Apicurio registry."""

from __future__ import annotations

import struct

import pytest

from sfsync.errors import SkippableRecordError
from sfsync.ops.errorlog import category_and_code
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry, UnknownSchemaError

NO_SUCH_ID = 987_654_321


def test_a_record_with_a_schema_id_the_registry_lacks_is_skippable_not_fatal(registry: SchemaRegistry) -> None:
    record = struct.pack(">bI", 0, NO_SUCH_ID) + b"\x02\x06abc"

    with pytest.raises(SkippableRecordError) as raised:
        AvroDecoder(registry).decode(record)

    assert isinstance(raised.value, UnknownSchemaError)
    assert str(NO_SUCH_ID) in str(raised.value)
    assert category_and_code(raised.value)[1] == "UNKNOWN_SCHEMA_ID"
