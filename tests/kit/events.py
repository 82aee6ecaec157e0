"""Product events as sfsync's consumers decode them (no Kafka, no registry, no processor).

- :func:`decoded`: a product event (``sfsync.producers.events``) through its topic's Avro schema, as
  ``AvroDecoder`` hands it over (timestamps as datetimes, enums as their symbols).
"""

from __future__ import annotations

import io
from typing import Any

import fastavro

from sfsync.serde.schema import load_topic_schema

__all__ = ["decoded"]


def decoded(event: Any) -> dict[str, Any]:
    """What AvroDecoder hands the processor: the event through its topic's Avro schema."""
    schema = load_topic_schema(event.TOPIC)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, (f"sfsync.product.{event.RECORD_NAME}", event.to_avro()))
    buf.seek(0)
    value = fastavro.schemaless_reader(
        buf, schema.parsed, None, return_record_name=True, return_record_name_override=True
    )
    record = value[1] if isinstance(value, tuple) else value
    assert isinstance(record, dict)
    return record
