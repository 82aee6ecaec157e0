"""The registry client through an outage: transient faults retried until the deadline, nothing else retried.

A real HTTP registry on loopback (the kit's ``RegistryStandIn``), taken away and brought back on its port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from sfsync.emulator.server import free_port
from sfsync.errors import ServiceUnavailableError
from sfsync.retry import RetryPolicy
from sfsync.serde.codec import HEADER, MAGIC, AvroDecoder
from sfsync.serde.registry import SchemaRegistry, UnknownSchemaError
from sfsync.settings import RegistryConnection
from tests.kit import RegistryStandIn

SCHEMA = json.dumps({"type": "record", "name": "Ping", "namespace": "t", "fields": [{"name": "n", "type": "int"}]})
QUICK = RetryPolicy(timeout_s=20, wait_initial_s=0.05, wait_max_s=0.2)
"""Retries every 0.05-0.2 s for up to 20 s: each test ends long before, unless the feature is broken."""


@pytest.fixture
def stand_in() -> Iterator[RegistryStandIn]:
    with RegistryStandIn(free_port(), schemas={7: SCHEMA}) as registry:
        yield registry


def registry_at(stand_in: RegistryStandIn, retry: RetryPolicy | None = QUICK) -> SchemaRegistry:
    return SchemaRegistry(stand_in.url, timeout_s=1, retry=retry)


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "sfsync.serde.registry"]


def test_a_refused_connection_is_retried_until_the_registry_answers_with_one_warning_and_one_info(
    stand_in: RegistryStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "sfsync.serde.registry")
    registry = registry_at(stand_in)
    threading.Timer(1.0, stand_in.start).start()  # nothing listens for the first second
    started = time.monotonic()
    with registry:
        schema = registry.writer_schema(7)
    assert time.monotonic() - started >= 0.9
    assert schema["name"] == "t.Ping"
    assert stand_in.requests == ["/schemas/ids/7"]  # the only request that reached it: the one that answered
    lines = [(level, text) for level, text in outage_lines(caplog) if level >= logging.INFO]
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO]  # not a line per attempt
    assert lines[0][1].startswith("schema registry unreachable, retrying until ")
    assert "answers again" in lines[1][1]


def test_past_its_deadline_the_registry_gives_up_with_the_service_unavailable_error_of_one_attempt(
    stand_in: RegistryStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "sfsync.serde.registry")
    registry = registry_at(stand_in, RetryPolicy(timeout_s=0.6, wait_initial_s=0.05, wait_max_s=0.1))
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError) as raised:
        registry.writer_schema(7)
    took = time.monotonic() - started
    assert type(raised.value) is ServiceUnavailableError
    assert str(raised.value) == f"schema registry at {stand_in.url} did not answer (fetching schema id 7): ConnectError"
    assert 0.6 <= took < 5
    assert [level for level, _ in outage_lines(caplog)] == [logging.WARNING]


def test_a_command_makes_one_attempt_whatever_the_retry_setting(stand_in: RegistryStandIn) -> None:
    conn = RegistryConnection(schema_registry_url=stand_in.url, schema_registry_retry_timeout_s=60)
    stand_in.start()
    stand_in.status = 503
    registry = SchemaRegistry.from_settings(conn, ride_out_outages=False)
    with pytest.raises(ServiceUnavailableError, match="HTTP 503"):
        registry.writer_schema(7)
    assert len(stand_in.requests) == 1


def test_a_worker_retries_a_5xx_until_the_registry_answers(stand_in: RegistryStandIn) -> None:
    conn = RegistryConnection(schema_registry_url=stand_in.url, schema_registry_retry_timeout_s=60)
    stand_in.start()
    stand_in.status = 503
    registry = SchemaRegistry.from_settings(conn, ride_out_outages=True)

    def recover() -> None:
        stand_in.status = None

    threading.Timer(0.3, recover).start()
    assert registry.writer_schema(7)["name"] == "t.Ping"
    assert len(stand_in.requests) >= 2


def test_an_unknown_schema_id_is_the_records_fault_and_is_not_retried(stand_in: RegistryStandIn) -> None:
    stand_in.start()
    registry = registry_at(stand_in)
    with pytest.raises(UnknownSchemaError, match="schema id 9 is not in the registry"):
        registry.writer_schema(9)
    assert stand_in.requests == ["/schemas/ids/9"]


def wire(schema_id: int) -> bytes:
    return HEADER.pack(MAGIC, schema_id) + b"\x02"  # the Ping {"n": 1}


async def test_a_decoder_on_an_event_loop_waits_out_an_outage_without_blocking_the_loop(
    stand_in: RegistryStandIn,
) -> None:
    decoder = AvroDecoder(registry_at(stand_in))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    asyncio.get_running_loop().call_later(1.0, stand_in.start)
    fetch = decoder.prefetch(wire(7))
    assert fetch is not None
    await fetch
    ticking.cancel()
    assert ticks >= 50  # the loop ran on through the second the registry was away
    assert decoder.prefetch(wire(7)) is None  # fetched: nothing more to wait for
    assert decoder.decode(wire(7)) == ("Ping", {"n": 1})
    assert stand_in.requests == ["/schemas/ids/7"]


async def test_an_unknown_schema_id_found_by_prefetch_is_raised_by_the_decode_without_asking_again(
    stand_in: RegistryStandIn,
) -> None:
    stand_in.start()
    decoder = AvroDecoder(registry_at(stand_in))
    fetch = decoder.prefetch(wire(9))
    assert fetch is not None
    await fetch  # the record's fault is not the loop's: raised by decode, which parks the record
    with pytest.raises(UnknownSchemaError):
        decoder.decode(wire(9))
    assert stand_in.requests == ["/schemas/ids/9"]
