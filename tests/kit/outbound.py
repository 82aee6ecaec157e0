"""The outbound processor's inputs: product events as it decodes them, and a processor over the in-memory
registry (no Kafka, no schema registry server).

- :func:`decoded`: a product event (``sfsync.producers.events``) as ``AvroDecoder`` hands it over
  (from :mod:`tests.kit.events`);
- :func:`user_created`: one ``UserCreated`` of the fake community, as its ``to_avro()`` dict;
- :class:`ProcessorRig`: an outbound ``Processor`` with Avro encoders and decoder on a
  :class:`~tests.kit.registry.FakeRegistry`, reading :data:`MEMBERS_TOPIC` (and :data:`PLANNED_TOPIC`:
  its planned writes).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, cast

from sfsync.mapping import MappingFile, load_mappings
from sfsync.processors.outbound.processor import Handled, Processor
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from tests.kit.events import decoded
from tests.kit.registry import FakeRegistry

__all__ = ["MEMBERS_TOPIC", "PLANNED_TOPIC", "ProcessorRig", "decoded", "user_created"]

MEMBERS_TOPIC = "t.product.members"
"""The topic a :class:`ProcessorRig` reads (``product.members`` under the prefix ``t.``)."""
PLANNED_TOPIC = "t.proc-writes-repartition"
"""Where a :class:`ProcessorRig` reads planned writes back (:meth:`ProcessorRig.order`)."""


def user_created() -> dict[str, Any]:
    """The first ``UserCreated`` of the fake community (seed 11), as its ``to_avro()`` dict."""
    event = next(e for e in CommunitySimulator(seed=11).stream(50) if e.RECORD_NAME == "UserCreated")
    record: dict[str, Any] = event.to_avro()
    return record


class ProcessorRig:
    """An outbound ``Processor`` (``mappings``, else the default mapping; ``mappings_for``: each workspace's
    instead) over a :class:`FakeRegistry`.

    ``members`` encodes product events for :data:`MEMBERS_TOPIC`; :meth:`handle` runs one record of it
    (partition 2, key ``u-1``, the rig's own record clock); :meth:`writes` decodes what it planned.
    The two steps of the app: :meth:`plan` (a record of :data:`MEMBERS_TOPIC` planned, no state) and
    :meth:`order` (those writes read back from :data:`PLANNED_TOPIC` and ordered on the rig's clock).
    """

    def __init__(
        self, mappings: MappingFile | None = None, *, mappings_for: Callable[[str], MappingFile] | None = None
    ) -> None:
        self.registry = FakeRegistry()
        registry = cast(SchemaRegistry, self.registry)  # the two methods the codecs call
        self.members = AvroEncoder(registry, MEMBERS_TOPIC, load_topic_schema("product.members"))
        writes = AvroEncoder(registry, "t.sfsync.writes", load_topic_schema("sfsync.writes"))
        self.decoder = AvroDecoder(registry, uuids_as_text=True)  # as the app's processor decodes
        self.processor = Processor(
            self.decoder,
            writes,
            mappings or load_mappings(),
            plans_decoder=AvroDecoder(registry, logical_types=False),
            mappings_for=mappings_for,
        )
        self.clock: MutableMapping[str, Any] = {}
        self.planned_offset = 0

    def handle(self, value: bytes, offset: int, **kwargs: Any) -> Handled:
        return self.processor.handle(value, MEMBERS_TOPIC, 2, offset, key=b"u-1", clock=self.clock, **kwargs)

    def plan(self, value: bytes, offset: int) -> Handled:
        return self.processor.plan_record(value, MEMBERS_TOPIC, 2, offset, key=b"u-1")

    def order(self, planned: Handled, **kwargs: Any) -> list[Handled]:
        """Each write of ``planned`` ordered (on the rig's clock), as read in turn from :data:`PLANNED_TOPIC`."""
        out = []
        for key, value in planned.writes:
            offset, self.planned_offset = self.planned_offset, self.planned_offset + 1
            out.append(self.processor.order_write(value, PLANNED_TOPIC, 0, offset, key=key, clock=self.clock, **kwargs))
        return out

    def writes(self, handled: Handled) -> list[dict[str, Any]]:
        """The Writes ``handled`` planned, decoded (each checked to be keyed by its own key)."""
        out = []
        for key, value in handled.writes:
            name, write = self.decoder.decode(value)
            assert name == "Write" and key == write["key"].encode()
            out.append(write)
        return out
