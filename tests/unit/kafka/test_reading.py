"""Reading to the end (sfsync.kafka.reading) over a fake consumer: where reads stop, what they raise."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError

from sfsync.errors import FatalError, ServiceUnavailableError
from sfsync.kafka.clients import KafkaConsumer
from sfsync.kafka.reading import partitions_of, read_at, read_messages, read_partition, read_topics
from tests.kit import FakeConsumer, FakeMessage, eof, kafka_exception


def reader(*queue: FakeMessage, **kwargs: object) -> tuple[KafkaConsumer, FakeConsumer]:
    raw = FakeConsumer(list(queue), **kwargs)  # type: ignore[arg-type]
    return KafkaConsumer(raw, "reader"), raw


def test_a_partition_is_read_from_its_beginning_to_its_end() -> None:
    records = [FakeMessage(topic="t", partition=2, offset=o, key=b"k", value=b"v") for o in range(3)]
    consumer, raw = reader(*records, eof(2), FakeMessage(topic="t", partition=2, offset=3))
    assert list(read_partition(consumer, "t", 2, what="reading t", timeout_s=5)) == records
    assert [(tp.topic, tp.partition, tp.offset) for tp in raw.assigned] == [("t", 2, OFFSET_BEGINNING)]


def test_a_read_that_does_not_end_in_time_is_service_unavailable() -> None:
    consumer, _ = reader()
    with pytest.raises(ServiceUnavailableError, match="reading checkpoints of Contact: took over"):
        list(read_partition(consumer, "t", 0, what="reading checkpoints of Contact", timeout_s=0.05))


def test_an_error_event_other_than_the_end_is_raised_as_sfsync_error() -> None:
    consumer, _ = reader(FakeMessage(error=KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied")))
    with pytest.raises(FatalError, match="denied"):
        list(read_partition(consumer, "t", 0, what="reading t", timeout_s=5))
    consumer, _ = reader(fail=kafka_exception(KafkaError._TRANSPORT, "Broker transport failure"))
    with pytest.raises(ServiceUnavailableError):
        list(read_partition(consumer, "t", 0, what="reading t", timeout_s=5))


def test_read_at_finds_the_record_at_its_offset_or_none() -> None:
    wanted = FakeMessage(topic="t", partition=0, offset=7, key=b"k", value=b"v")
    consumer, _ = reader(wanted)
    assert read_at(consumer, "t", 0, 7, timeout_s=5) is wanted
    consumer, _ = reader(FakeMessage(offset=9))  # compacted: the partition goes on at a later offset
    assert read_at(consumer, "t", 0, 7, timeout_s=5) is None
    consumer, _ = reader(eof())  # deleted: the partition ends before it
    assert read_at(consumer, "t", 0, 7, timeout_s=5) is None


def test_read_messages_reads_every_partition_to_its_end_as_it_was() -> None:
    records = [
        FakeMessage(partition=0, offset=5),
        FakeMessage(partition=1, offset=0),
        FakeMessage(partition=1, offset=1),
    ]
    later = FakeMessage(partition=0, offset=6)  # written after the read began: not read
    consumer, raw = reader(*records, later, partitions={"t": [0, 1]}, watermarks={0: (5, 6), 1: (0, 2)})
    assert list(read_messages({}, "t", consumer=consumer)) == records
    assert not raw.closed  # a consumer passed in is left open
    consumer, raw = reader(records[2], partitions={"t": [0, 1]}, watermarks={0: (5, 6), 1: (0, 2)})
    assert list(read_messages({}, "t", consumer=consumer, last=1, starts={0: 6})) == [records[2]]
    assert sorted((tp.partition, tp.offset) for tp in raw.assigned) == [(0, 6), (1, 1)]


def test_a_topic_that_does_not_exist_is_fatal() -> None:
    consumer, _ = reader(partitions={"other": [0]})
    with pytest.raises(FatalError, match="topic t does not exist"):
        partitions_of(consumer, "t")


def test_read_topics_reads_every_partition_of_each_topic_and_says_when_it_reached_the_end() -> None:
    a0 = FakeMessage(topic="a", partition=0, offset=0)
    b1 = [FakeMessage(topic="b", partition=1, offset=o) for o in (3, 4)]
    later = FakeMessage(topic="a", partition=0, offset=1)  # written after the read began
    ends: list[int] = []
    consumer, raw = reader(
        a0,
        *b1,
        later,
        partitions={"a": [0], "b": [0, 1]},
        watermarks={("a", 0): (0, 1), ("b", 0): (7, 7), ("b", 1): (3, 5)},
    )
    read: list[FakeMessage] = []
    for message in read_topics({}, ["a", "b"], follow=True, consumer=consumer, on_end=lambda: ends.append(len(read))):
        read.append(message)
        if message is later:
            break
    assert read == [a0, *b1, later]
    assert ends == [3]  # once, when the records there were when it began were read (b[0] was empty)
    assert sorted((tp.topic, tp.partition, tp.offset) for tp in raw.assigned) == [("a", 0, 0), ("b", 0, 7), ("b", 1, 3)]


def test_read_topics_goes_on_from_where_a_reader_stopped() -> None:
    rest = [FakeMessage(topic="a", partition=1, offset=o) for o in range(2, 6)]
    consumer, raw = reader(*rest, partitions={"a": [0, 1]}, watermarks={("a", 0): (0, 4), ("a", 1): (0, 6)})
    ends: list[bool] = []
    starts = {("a", 0): 4, ("a", 1): 2}
    assert list(read_topics({}, ["a"], starts=starts, consumer=consumer, on_end=lambda: ends.append(True))) == rest
    assert sorted((tp.partition, tp.offset) for tp in raw.assigned) == [(0, 4), (1, 2)]
    assert ends == [True]
