"""Planned writes packed per partition (sfsync.processors.outbound.packs): the ordering agent reads from
packs exactly the writes, per partition and per key in the order, that one record per write carried."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from confluent_kafka import KafkaError

from sfsync.errors import DeliveryError, SkippableRecordError
from sfsync.processors.outbound.packs import (
    FRAMING_BYTES,
    PACK_FORMAT,
    PACK_HEADER,
    Pack,
    WritePacks,
    is_pack,
    pack,
    partition_of,
    unpack,
)
from sfsync.processors.outbound.writes import PACK_MARGIN_BYTES, WritesProducer, pack_budget
from tests.kit import FakeProducer, kafka_exception


def _writes(n: int, seed: int = 5) -> list[tuple[bytes, bytes]]:
    rnd = random.Random(seed)
    keys = [f"ws-{i % 3}|Contact:m-{rnd.randrange(40)}".encode() for i in range(n)]
    return [(key, f"write {i} of {key.decode()}".encode() * rnd.randrange(1, 4)) for i, key in enumerate(keys)]


class Recorder:
    """Where a :class:`WritePacks` sends: packs and lone writes, in the order sent (a write stream per partition)."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.packs: list[Pack] = []
        self.alone: list[tuple[bytes, bytes]] = []
        self.per_partition: dict[int, list[tuple[bytes, bytes]]] = {}

    def send(self, p: Pack) -> None:
        self.packs.append(p)
        self.per_partition.setdefault(p.partition, []).extend(unpack(p.value))

    def send_alone(self, key: bytes, value: bytes) -> None:
        self.alone.append((key, value))
        self.per_partition.setdefault(partition_of(key, self.partitions), []).append((key, value))


def test_a_pack_unpacks_to_its_writes_in_order_empty_keys_and_values_included() -> None:
    writes = [*_writes(50), (b"", b""), (b"k", b"")]
    assert unpack(pack(writes)) == writes


@pytest.mark.parametrize("cut", [1, 3, 9, -1])
def test_a_truncated_pack_is_refused_as_a_skippable_record(cut: int) -> None:
    value = pack(_writes(3))
    with pytest.raises(SkippableRecordError, match="not a pack of writes"):
        unpack(value[:cut])


def test_an_empty_pack_is_refused() -> None:
    with pytest.raises(SkippableRecordError, match="empty pack"):
        unpack(b"")


def test_a_pack_is_recognised_by_its_header_and_an_unknown_format_is_refused() -> None:
    assert is_pack([("other", b"x"), (PACK_HEADER, PACK_FORMAT)])
    assert not is_pack([("other", b"x")])
    with pytest.raises(SkippableRecordError, match="unknown format"):
        is_pack([(PACK_HEADER, b"2")])


def test_a_keys_partition_is_the_one_faust_and_the_java_client_give_it() -> None:
    partitions = list(range(12))
    for key, _ in _writes(300):
        assert partition_of(key, 12) == DefaultPartitioner()(key, partitions, partitions)


def test_every_write_goes_to_its_keys_partition_in_the_order_planned() -> None:
    """Packs sealed by size, by count and by the timer, lone writes among them: per partition, the writes
    arrive exactly in planning order, each on its key's partition, nothing lost or repeated."""
    writes = _writes(2_000)
    big = [(b"ws-0|Contact:m-3", b"B" * 1_600), (b"ws-1|Contact:m-7", b"C" * 1_600)]
    planned = [*writes[:700], big[0], *writes[700:1500], big[1], *writes[1500:]]
    out = Recorder(6)
    packs = WritePacks(6, out.send, out.send_alone, max_writes=37, max_bytes=1_500)
    for i, (key, value) in enumerate(planned):
        packs.add(key, value)
        if i % 250 == 0:
            packs.seal()  # the timer
    packs.seal()
    assert len(packs) == 0
    expected: dict[int, list[tuple[bytes, bytes]]] = {}
    for key, value in planned:
        expected.setdefault(partition_of(key, 6), []).append((key, value))
    assert out.per_partition == expected
    assert out.alone == big
    assert all(p.writes <= 37 and len(p.value) <= 1_500 for p in out.packs)
    assert all(partition_of(p.key, 6) == p.partition for p in out.packs)  # keyed by a write of its own partition
    assert len(out.packs) < len(writes) / 5  # packed, not one record per write


def test_a_full_pack_goes_at_once_and_the_rest_waits_for_seal() -> None:
    out = Recorder(1)
    packs = WritePacks(1, out.send, out.send_alone, max_writes=3, max_bytes=10_000)
    for key, value in _writes(7):
        packs.add(key, value)
    assert [p.writes for p in out.packs] == [3, 3]
    assert len(packs) == 1
    assert packs.seal() == 1
    assert [p.writes for p in out.packs] == [3, 3, 1]
    assert packs.seal() == 0


def test_a_write_larger_than_a_pack_goes_alone_after_its_partitions_pack() -> None:
    order: list[str] = []

    def send(p: Pack) -> None:
        order.append(f"pack of {p.writes}")

    def send_alone(key: bytes, value: bytes) -> None:
        order.append(f"alone {key.decode()}")

    packs = WritePacks(1, send, send_alone, max_writes=100, max_bytes=64)
    packs.add(b"a", b"1")
    packs.add(b"b", b"2")
    packs.add(b"big", b"x" * (64 - FRAMING_BYTES - 2))  # one byte over
    assert order == ["pack of 2", "alone big"]


def test_a_pack_the_producer_refuses_stays_open_with_its_writes() -> None:
    refusals = [DeliveryError([("t", None, "queue full")])]

    def send(p: Pack) -> None:
        if refusals:
            raise refusals.pop()

    packs = WritePacks(1, send, lambda k, v: None, max_writes=10, max_bytes=10_000)
    packs.add(b"k", b"v")
    with pytest.raises(DeliveryError):
        packs.seal()
    assert len(packs) == 1
    assert packs.seal() == 1


def _producer(made: list[FakeProducer]) -> Callable[[Any], FakeProducer]:
    def factory(on_delivery: Any) -> FakeProducer:
        made.append(FakeProducer(on_delivery=on_delivery))
        return made[-1]

    return factory


def test_a_pack_is_produced_to_its_partition_with_the_pack_header() -> None:
    made: list[FakeProducer] = []
    producer = WritesProducer({}, "t.proc-writes-repartition", factory=_producer(made))
    producer.send_pack(Pack(4, b"k", pack([(b"k", b"v")]), writes=1))
    ((args, kwargs),) = made[0].calls
    assert args == ("t.proc-writes-repartition",)
    assert (kwargs["value"], kwargs["key"], kwargs["partition"]) == (pack([(b"k", b"v")]), b"k", 4)
    assert kwargs["headers"] == [(PACK_HEADER, PACK_FORMAT)]


def test_a_pack_kafka_refuses_is_a_delivery_error_not_a_parked_event() -> None:
    made: list[FakeProducer] = []
    producer = WritesProducer({}, "t.proc-writes-repartition", factory=_producer(made))
    producer.send_pack(Pack(0, b"k", b"", writes=0))  # the producer exists now
    made[0].raises.append(kafka_exception(KafkaError.MSG_SIZE_TOO_LARGE))
    with pytest.raises(DeliveryError, match="a pack of 3 writes refused"):
        producer.send_pack(Pack(0, b"k", b"x", writes=3))


def test_a_pack_stays_under_the_topics_limit_by_the_margin() -> None:
    assert pack_budget(1_048_588, 1_000_000) == 1_000_000
    assert pack_budget(100_000, 1_000_000) < 100_000 - PACK_MARGIN_BYTES
    assert pack_budget(None, 1_000_000) <= 256 * 1024
