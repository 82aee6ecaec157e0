"""Reading topics to their end: one loop for the error log's tail, the DLQ, checkpoints, single records, and
the compacted topics a directory replays and then follows (:func:`read_topics`).

Every reader here assigns partitions itself (it never joins a group and never commits) and stops at
the end: a partition's end offset as it was when the read began, or librdkafka's end-of-partition
event (readers built by :func:`new_reader` report it; needed for ``read_committed`` reads, whose
end is a transaction marker rather than a record). Errors are sfsync's: a topic that does not exist
is a :class:`~sfsync.errors.FatalError`, Kafka not answering a
:class:`~sfsync.errors.ServiceUnavailableError` (:func:`sfsync.kafka.errors.translate`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from sfsync.errors import FatalError, ServiceUnavailableError
from sfsync.kafka.clients import KafkaConsumer, new_consumer
from sfsync.kafka.errors import translate

__all__ = ["new_reader", "partitions_of", "read_at", "read_messages", "read_partition", "read_topics"]


def _never() -> bool:
    return False


def new_reader(
    kafka_config: Mapping[str, Any], group_id: str | None = None, *, read_committed: bool = False
) -> KafkaConsumer:
    """A consumer for the reads of this module: it reports the end of each partition it reads
    (``enable.partition.eof``), never commits, and with ``read_committed`` skips what aborted
    transactions wrote. ``group_id`` defaults to a throwaway one.

    Raises:
        ConfigError: librdkafka refused the configuration.
    """
    options: dict[str, Any] = {"enable.partition.eof": True}
    if read_committed:
        options["isolation.level"] = "read_committed"
    return new_consumer(kafka_config, group_id, options=options)


def partitions_of(consumer: KafkaConsumer, topic: str, timeout_s: float = 10.0) -> dict[int, tuple[int, int]]:
    """``{partition: (low, high)}`` watermarks of ``topic``.

    Raises:
        FatalError: the topic does not exist.
        ServiceUnavailableError: Kafka did not answer.
    """
    meta = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise FatalError(f"topic {topic} does not exist; create it with `sfsync topics ensure`")
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s) for p in sorted(meta.partitions)
    }


def _records(
    consumer: KafkaConsumer,
    starts: Mapping[tuple[str, int], int],
    ends: Mapping[tuple[str, int], int] | None,
    *,
    what: str,
    follow: bool = False,
    poll_s: float = 0.5,
    stop: Callable[[], bool] = _never,
    timeout_s: float | None = None,
    on_end: Callable[[], None] | None = None,
) -> Iterator[Message]:
    """Records of the partitions of ``starts`` (``(topic, partition)`` -> an offset, or
    ``OFFSET_BEGINNING``) in offset order per partition: up to ``ends[(topic, partition)]``
    (exclusive) when given, and up to each partition's end-of-partition event (a :func:`new_reader`);
    with ``follow``, on past the end until ``stop()``. ``on_end`` is called once, when every partition
    has been read to its end. ``timeout_s`` bounds the whole read (then ServiceUnavailableError)."""
    pending = {tp for tp, start in starts.items() if ends is None or start < ends.get(tp, 0)}
    consumer.assign([TopicPartition(topic, p, start) for (topic, p), start in starts.items()])
    deadline = time.monotonic() + timeout_s if timeout_s is not None else None
    raw = consumer.raw  # the end-of-partition events are errors to KafkaConsumer.poll: read them here
    ended = False
    while not stop():
        if not pending and not ended:
            ended = True
            if on_end is not None:
                on_end()
        if not follow and not pending:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise ServiceUnavailableError(f"{what}: took over {timeout_s:g}s")
        try:
            msg = raw.poll(poll_s)
        except KafkaException as exc:
            raise translate(exc, what) from exc
        if msg is None:
            continue
        error = msg.error()
        partition = msg.partition()
        where = (str(msg.topic()), partition if partition is not None else -1)
        if error is not None:
            if error.code() != KafkaError._PARTITION_EOF:
                raise translate(error, what)
            pending.discard(where)
            continue
        offset = msg.offset()
        if ends is not None and offset is not None and offset >= ends.get(where, 0) - 1:
            pending.discard(where)
        yield msg


def read_messages(
    kafka_config: Mapping[str, Any],
    topic: str,
    *,
    last: int | None = None,
    follow: bool = False,
    poll_s: float = 0.5,
    stop: Callable[[], bool] = _never,
    starts: Mapping[int, int] | None = None,
    consumer: KafkaConsumer | None = None,
) -> Iterator[Message]:
    """Raw messages of every partition of ``topic``, partition by partition in offset order.

    Starts at ``starts[partition]`` when given, else ``last`` records before the end (``None``:
    the beginning). Without ``follow`` it ends at the end of the topic as it was when called.
    Never commits. A ``consumer`` passed in is used and left open.

    Raises:
        FatalError: the topic does not exist.
        ServiceUnavailableError: Kafka did not answer.
    """
    own = consumer is None
    reader = consumer if consumer is not None else new_reader(kafka_config)
    try:
        first: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for p, (low, high) in partitions_of(reader, topic).items():
            if starts is not None and p in starts:
                first[(topic, p)] = max(low, starts[p])
            else:
                first[(topic, p)] = low if last is None else max(low, high - last)
            ends[(topic, p)] = high
        yield from _records(reader, first, ends, what=f"reading {topic}", follow=follow, poll_s=poll_s, stop=stop)
    finally:
        if own:
            reader.close()


def read_topics(
    kafka_config: Mapping[str, Any],
    topics: Sequence[str],
    *,
    follow: bool = False,
    poll_s: float = 0.5,
    stop: Callable[[], bool] = _never,
    starts: Mapping[tuple[str, int], int] | None = None,
    on_end: Callable[[], None] | None = None,
    consumer: KafkaConsumer | None = None,
) -> Iterator[Message]:
    """Raw messages of every partition of ``topics``, each partition in offset order, from its beginning
    (or from ``starts[(topic, partition)]`` when given: a reader going on where it stopped).

    ``on_end`` is called once every partition has been read to its end as it was when called (at once
    when there is nothing to read): a compacted topic's state is then known. Without ``follow`` the
    iterator ends there; with it, it goes on with what is written later, until ``stop()``. Never
    joins a group or commits. A ``consumer`` passed in is used and left open.

    Raises:
        FatalError: a topic does not exist.
        ServiceUnavailableError / RetriableError: Kafka did not answer, or reported an error while reading.
    """
    own = consumer is None
    reader = consumer if consumer is not None else new_reader(kafka_config)
    try:
        first: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for topic in topics:
            for p, (low, high) in partitions_of(reader, topic).items():
                first[(topic, p)] = max(low, starts.get((topic, p), low)) if starts is not None else low
                ends[(topic, p)] = high
        what = f"reading {', '.join(topics)}"
        yield from _records(reader, first, ends, what=what, follow=follow, poll_s=poll_s, stop=stop, on_end=on_end)
    finally:
        if own:
            reader.close()


def read_partition(
    consumer: KafkaConsumer, topic: str, partition: int, *, what: str, timeout_s: float
) -> Iterator[Message]:
    """Every record of ``topic``/``partition``, from its beginning to its end; ``consumer`` is a
    :func:`new_reader` (``read_committed`` for a topic written in transactions).

    Raises:
        ServiceUnavailableError: Kafka did not answer, or reading took over ``timeout_s``
            (``what`` says what was being read).
    """
    yield from _records(consumer, {(topic, partition): OFFSET_BEGINNING}, None, what=what, timeout_s=timeout_s)


def read_at(consumer: KafkaConsumer, topic: str, partition: int, offset: int, timeout_s: float) -> Message | None:
    """The record at ``topic``/``partition``/``offset``; None when the partition holds none there
    (compacted or deleted: the partition goes on at a later offset, or ends). ``consumer`` is a
    :func:`new_reader`; its assignment is replaced.

    Raises:
        ServiceUnavailableError: Kafka did not answer within ``timeout_s``.
    """
    what = f"reading {topic}[{partition}]@{offset}"
    for msg in _records(consumer, {(topic, partition): offset}, None, what=what, timeout_s=timeout_s):
        found = msg.offset()
        if found is None or found < offset:
            continue
        return msg if found == offset else None
    return None
