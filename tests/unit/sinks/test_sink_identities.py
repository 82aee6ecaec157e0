"""The sink publishes a person record's identity to ``sfsync.identities`` once, when it learns it: not for
a record that is not a person's, not again for an identity it already published, again when it changes;
with the results, on the same producer, before the offsets commit."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from sfsync.emulator.server import build
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.loop import PublishedIdentities, SinkWorker
from sfsync.sinks.settings import SinkSettings
from tests.kit import FakeConsumer, FakeProducer, FakeRegistry
from tests.kit.sink import T0, WORKSPACE, ByKey, Recorder, campaign, make_sink, member, message

IDENTITIES = "sfsync.identities"
RESULTS = "sfsync.results"


async def _no_sleep(seconds: float) -> None:
    pass


async def _run(batches: list[list[dict[str, Any]]], **settings: Any) -> tuple[FakeProducer, FakeConsumer, Any]:
    """Run the sink's loop over the emulator, one batch per list of writes; (producer, consumer, decoder)."""
    writes = [w for batch in batches for w in batch]
    consumer, producer = FakeConsumer([message(w, 0, n) for n, w in enumerate(writes)]), FakeProducer()
    registry = cast(SchemaRegistry, FakeRegistry())
    identity_encoder = AvroEncoder(registry, IDENTITIES, load_topic_schema(IDENTITIES))
    client, sink = make_sink(build(), Recorder())

    async def on_parked(write: IncomingWrite, error: Any) -> None:
        raise AssertionError(f"parked {write.key!r}: {error}")

    async with client:
        worker = SinkWorker(
            sink,
            settings=SinkSettings(
                batch_size=len(batches[0]), batch_linger_s=0.01, poll_timeout_s=0.01, carry_max=10, **settings
            ),
            consumer=consumer,
            producer=producer,
            decoder=ByKey({w["key"].encode(): w for w in writes}),
            encoder=ByKey({}),
            identity_encoder=identity_encoder,
            on_parked=on_parked,
            sleep=_no_sleep,
        )
        consumer.on_idle = worker.stopping.set
        await asyncio.wait_for(worker.run(max_batches=len(batches)), 30)
    return producer, consumer, AvroDecoder(registry)


def _identities(producer: FakeProducer, decoder: AvroDecoder) -> list[dict[str, Any]]:
    out = []
    for topic, key, value in producer.produced:
        if topic == IDENTITIES:
            name, identity = decoder.decode(value or b"")
            assert name == "Identity" and key == identity["key"].encode()  # keyed like the record's writes
            out.append(identity)
    return out


async def test_a_person_s_identity_is_published_once_and_a_record_that_is_not_a_person_s_never() -> None:
    ada, event = member(1), campaign("evt-1")
    again = member(1, title="Chair", n=1)  # the same Contact written again: the same identity
    producer, consumer, decoder = await _run([[ada, event], [again, member(2)]])

    identities = _identities(producer, decoder)
    assert [i["key"] for i in identities] == [ada["key"], member(2)["key"]]
    first = identities[0]
    assert first["sobject"] == "Contact" and first["salesforce_id"].startswith("003")
    assert first["workspace_id"] == WORKSPACE
    assert first["learnt_at"].timestamp() * 1000 == T0  # when Salesforce acknowledged the write
    assert len(producer.keys(RESULTS)) == 4  # every result still goes to sfsync.results
    # each identity right after the result that gave it, on the results' producer, flushed before the commit
    topics = [topic for topic, _, _ in producer.produced]
    assert topics == [RESULTS, IDENTITIES, RESULTS, RESULTS, RESULTS, IDENTITIES]
    assert consumer.commits == {0: 4} and producer.flushes >= 2


async def test_a_sink_that_keeps_no_published_identities_publishes_each_person_s_result() -> None:
    producer, _, decoder = await _run([[member(1)], [member(1, title="Chair", n=1)]], published_identities_size=0)
    assert [i["key"] for i in _identities(producer, decoder)] == [member(1)["key"]] * 2


def test_published_identities_are_the_most_recently_used_and_a_changed_one_is_new() -> None:
    published = PublishedIdentities(2)
    published.remember("a", ("Lead", "00Q1"))
    published.remember("b", ("Contact", "0031"))
    assert published.published("a", ("Lead", "00Q1"))  # used: b is now the least recently used
    assert not published.published("a", ("Contact", "0032"))  # a converted Lead: a new identity
    published.remember("c", ("Contact", "0033"))
    assert len(published) == 2
    assert not published.published("b", ("Contact", "0031"))  # evicted: published again if learnt again
    assert published.published("a", ("Lead", "00Q1")) and published.published("c", ("Contact", "0033"))
    none_kept = PublishedIdentities(0)
    none_kept.remember("a", ("Lead", "00Q1"))
    assert not none_kept.published("a", ("Lead", "00Q1")) and len(none_kept) == 0
