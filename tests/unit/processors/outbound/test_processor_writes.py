"""WritesProducer: queues sfsync.writes in librdkafka; flush() is the gate before a commit (fake producer injected)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sfsync.errors import DeliveryError, RetriableError
from sfsync.processors.outbound.writes import WritesProducer
from tests.kit import FakeProducer


def rig(**kwargs: Any) -> tuple[WritesProducer, FakeProducer]:
    made: list[FakeProducer] = []

    def factory(on_delivery: Callable[[Any, Any], None]) -> FakeProducer:
        made.append(FakeProducer(on_delivery, **kwargs))
        return made[0]

    return WritesProducer({}, "p.sfsync.writes", delivery_timeout_s=1, factory=factory), made[0]


def test_writes_are_queued_in_order_to_the_topic_and_a_full_queue_waits() -> None:
    writes, fake = rig(raises=[BufferError(), BufferError()])
    writes.send(b"Contact:a", b"1")
    writes.send(b"Contact:b", b"2")
    assert fake.produced == [("p.sfsync.writes", b"Contact:a", b"1"), ("p.sfsync.writes", b"Contact:b", b"2")]
    assert fake.polls == 2  # polled (served delivery reports) while librdkafka's queue was full
    assert writes.sent == 2
    writes.flush()  # every write acknowledged: no error


def test_a_failed_delivery_fails_every_later_flush_and_names_the_write() -> None:
    writes, fake = rig()
    writes.send(b"Contact:a", b"1")
    fake.fail = [b"Contact:a"]
    with pytest.raises(DeliveryError) as caught:
        writes.flush()
    assert isinstance(caught.value, RetriableError)  # the events replay after a restart
    assert caught.value.failures == [("p.sfsync.writes", "Contact:a", "Broker: Message size too large")]
    with pytest.raises(DeliveryError):  # and so does every later flush: a commit never passes a lost write
        writes.flush()


def test_writes_not_acknowledged_in_time_fail_the_flush() -> None:
    writes, fake = rig()
    writes.send(b"Contact:a", b"1")
    fake.stuck = 1
    with pytest.raises(DeliveryError, match="1 record"):
        writes.flush()


def test_many_failures_are_counted_not_all_listed() -> None:
    writes, fake = rig()
    fake.fail = [f"Contact:{i}".encode() for i in range(50)]
    with pytest.raises(DeliveryError) as caught:
        writes.flush()
    failures = caught.value.failures
    assert len(failures) == 21 and failures[-1][2] == "50 failed deliveries in all"
