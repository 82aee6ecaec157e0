"""The poller in integration tests: a mapping of Contacts both ways, its settings on the test's topics,
the committed ``salesforce.changes`` it produced, and the emulator's admin API (rep edits, deletes...)."""

from __future__ import annotations

import asyncio
import textwrap
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from confluent_kafka import Consumer

from sfsync.emulator.server import RunningEmulator
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.sources.settings import SourceSettings

MAPPING = textwrap.dedent(
    """
    version: 1
    mappings:
      - name: members
        entity: member
        target: Contact
        match: [{field: Email, from: member.email}]
        inbound_filter: "record.Title != 'internal'"
        fields:
          - {sf: Email, from: member.email, direction: both}
          - {sf: FirstName, from: member.first_name, direction: both}
          - {sf: LastName, from: member.last_name, default: "[none]", direction: both}
          - {sf: Title, from: member.title, direction: to_product}
          - {sf: Account.Name, from: member.company, direction: to_product}
    """
)


def source_settings(services: Any, prefix: str, **overrides: Any) -> SourceSettings:
    values: dict[str, Any] = {
        "bootstrap_servers": services.bootstrap,
        "schema_registry_url": services.registry,
        "topic_prefix": prefix,
        "poll_interval_s": 0.2,
        "max_idle_interval_s": 0.5,
        "lookback_s": 2.0,
        "page_size": 3,
        "delete_log_interval_s": 0,
        "reconcile_interval_s": 1.0,
        "session_timeout_ms": 6000,
        "transaction_timeout_s": 10,
        "metrics_port": 0,
        **overrides,
    }
    return SourceSettings(**values)


class Changes:
    """Committed records of salesforce.changes (read_committed), decoded, as they arrive."""

    def __init__(self, services: Any, registry: SchemaRegistry, prefix: str) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": services.bootstrap,
                "group.id": f"test-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        self.consumer.subscribe([prefix + "salesforce.changes"])
        self.decoder = AvroDecoder(registry)
        self.records: list[dict[str, Any]] = []

    def drain(self) -> None:
        while True:
            msg = self.consumer.poll(0)
            if msg is None:
                return
            if msg.error() is None:
                _, value = self.decoder.decode(msg.value())
                assert msg.key() == f"{value['sobject']}:{value['id']}".encode()
                self.records.append(value)

    async def until(self, done: Callable[[list[dict[str, Any]]], bool], timeout_s: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            self.drain()
            if done(self.records):
                return self.records
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; got {[(r['id'], r['change_type']) for r in self.records]}")
            await asyncio.sleep(0.05)

    def of(self, record_id: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["id"] == record_id]

    def close(self) -> None:
        self.consumer.close()


async def admin(running: RunningEmulator, path: str, payload: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=running.base_url) as http:
        response = await http.post(f"/__admin/{path}", json=payload)
    assert response.status_code == 200, response.text
    return response.json()
