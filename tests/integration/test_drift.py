"""Start-up checks and drift on real Kafka and the emulated org over HTTP.

- The sink and the poller refuse to start on a mapping the org cannot take (a custom match field that
  is no External ID: before, ``mappings validate`` passed it and the sink died on INVALID_FIELD).
- A field removed from the org while the sink runs (``POST /__admin/fields``) quarantines the mapping
  that writes it: its writes are parked in the DLQ (replayable) with one error-log entry and the
  gauge at 1, another mapping's writes keep being written; once the field is back the quarantine
  lifts and the next writes are written.
- The same while the poller runs: the object whose query names the field is quarantined, another
  object keeps being polled, and polling resumes from the checkpoint once the field is back.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import RunningEmulator, free_port
from sfsync.errors import Category
from sfsync.mapping import load_mappings
from sfsync.ops.dlq import DeadLetterQueue
from sfsync.ops.errorlog import ErrorLogEntry, tail
from sfsync.salesforce.governor import GovernorSettings
from sfsync.serde.registry import SchemaRegistry
from sfsync.sinks.main import build_runner
from sfsync.sinks.metrics import SinkMetrics
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.poller import Poller
from tests.integration.helpers import committed, salesforce_settings, wait_until
from tests.integration.polling import MAPPING, Changes, admin, source_settings
from tests.integration.processes import pipeline_env, salesforce_env
from tests.integration.sink_runner import produce_writes, sink_settings
from tests.kit import write_mappings
from tests.kit.sink import campaign, member

pytestmark = pytest.mark.integration

NOT_AN_EXTERNAL_ID = """\
mappings:
  - name: members
    entity: member
    target: Contact
    match: [{field: Approval_Status__c, from: member.approval_status}]
    create_if_missing: false
    fields:
      - sf: Approval_Status__c
        from: member.approval_status
        value_map: {APPROVED: approved, PENDING: pending, UNAPPROVED: unapproved}
      - {sf: Title, from: member.title, direction: both}
"""
"""Valid but for the org: Approval_Status__c is a picklist, no External ID, and sfsync would upsert on it."""


def entries(services: Any, registry: SchemaRegistry, prefix: str) -> list[ErrorLogEntry]:
    return list(tail({"bootstrap.servers": services.bootstrap}, registry, prefix=prefix, last=None))


@pytest.mark.parametrize("command", ["sink", "poller"])
def test_a_process_with_the_org_refuses_a_custom_match_field_that_is_no_external_id(
    command: str, services: Any, prefix: str, running: RunningEmulator, tmp_path: Path
) -> None:
    path = write_mappings(tmp_path, NOT_AN_EXTERNAL_ID)
    env = pipeline_env(services, prefix, SFSYNC_MAPPING_FILE=str(path), **salesforce_env(running))
    done = subprocess.run(
        [sys.executable, "-m", "sfsync.cli.main", command], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "(against the org)" in done.stderr
    assert "members.match: Contact.Approval_Status__c is not an External ID field" in done.stderr
    written = sum(n for endpoint, n in running.emulator.calls_by_endpoint.items() if "composite" in endpoint)
    assert written == 0  # refused before anything was written


async def test_a_field_removed_while_the_sink_runs_quarantines_its_mapping_and_the_others_keep_flowing(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator
) -> None:
    group = f"sink-{uuid.uuid4().hex[:8]}"
    runner = build_runner(
        sink_settings(services, prefix, group, metrics_port=free_port(), quarantine_recheck_s=1.0),
        salesforce_settings(running),
        governor_settings=GovernorSettings(),
        registry=registry,
        metrics=SinkMetrics(CollectorRegistry()),
    )  # the default mapping: members (Contact, with Title) and events (Campaign) among others
    task = asyncio.create_task(runner.run(signals=False))

    async def metrics() -> str:
        assert runner.metrics_server is not None
        async with httpx.AsyncClient() as http:
            return (await http.get(f"http://127.0.0.1:{runner.metrics_server.port}/metrics")).text

    try:
        produce_writes(services, registry, prefix, [member(1, title="Countess"), campaign("evt-1")])
        await wait_until(lambda: runner.results >= 2, 60, "the first writes")

        await admin(running, "fields", {"sobject": "Contact", "field": "Title", "action": "remove"})
        later = [member(2, title="Dr", n=1), member(3, title="Prof", n=1), campaign("evt-2", n=1)]
        produce_writes(services, registry, prefix, later)
        await wait_until(lambda: runner.results >= 3 and runner.parked >= 2, 60, "the campaign written, members parked")
        assert 'sfsync_mapping_quarantined{mapping="members"} 1.0' in await metrics()
        assert running.emulator.store.count("Campaign") == 2  # the other mapping keeps flowing

        await admin(running, "fields", {"sobject": "Contact", "field": "Title", "action": "restore"})
        await asyncio.sleep(1.2)  # the recheck is due
        produce_writes(services, registry, prefix, [member(4, title="Mx", n=2)])
        await wait_until(lambda: runner.results >= 4, 60, "the member written once the field is back")
        assert 'sfsync_mapping_quarantined{mapping="members"} 0.0' in await metrics()
    finally:
        runner.stop()
        await asyncio.wait_for(task, 30)

    contacts = {r["Email"]: r for r in running.emulator.store.rows("Contact")}
    assert contacts["member4@example.org"]["Title"] == "Mx"
    assert "member2@example.org" not in contacts and "member3@example.org" not in contacts
    assert committed(services.bootstrap, group, prefix + "sfsync.writes") == 6  # parked ones too: no stop

    parked = DeadLetterQueue({"bootstrap.servers": services.bootstrap}, prefix=prefix).list_parked()
    assert sorted(p.key for p in parked) == [
        b"ws-1|Contact:Email:member2@example.org",
        b"ws-1|Contact:Email:member3@example.org",
    ]
    assert {(p.context.code, p.context.mapping, p.context.field) for p in parked} == {
        ("MAPPING_QUARANTINED", "members", "Title")
    }
    logged = entries(services, registry, prefix)
    [quarantine] = [e for e in logged if e.code == "MAPPING_QUARANTINED"]  # one entry, none per parked write
    assert quarantine.category is Category.CONNECTION and quarantine.level == "ERROR"
    assert (quarantine.mapping, quarantine.sobject, quarantine.field) == ("members", "Contact", "Title")
    assert "INVALID_FIELD" in quarantine.message
    [restored] = [e for e in logged if e.code == "MAPPING_RESTORED"]
    assert restored.level == "INFO" and restored.mapping == "members"


TWO_OBJECTS = MAPPING + (
    "  - name: leads\n"
    "    entity: member\n"
    "    target: Lead\n"
    "    match: [{field: Email, from: member.email}]\n"
    "    create_if_missing: false\n"
    "    fields:\n"
    "      - {sf: LastName, from: member.last_name, direction: both}\n"
    "      - {sf: Company, from: member.company, direction: to_product}\n"
)
"""Contacts (whose query selects Title) and Leads (whose query does not), both polled."""


async def test_a_field_removed_while_the_poller_runs_quarantines_that_object_and_the_others_keep_polling(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator, tmp_path: Path
) -> None:
    store = running.emulator.store
    changes = Changes(services, registry, prefix)
    poller = Poller(
        source_settings(services, prefix, quarantine_recheck_s=1.0, reconcile_interval_s=0),
        salesforce_settings(running),
        governor_settings=GovernorSettings(),
        mappings=load_mappings(write_mappings(tmp_path, TWO_OBJECTS)),
        metrics=SourceMetrics(CollectorRegistry()),
    )
    task = asyncio.create_task(poller.run(signals=False))

    def gauge() -> float | None:
        return poller.metrics.registry.get_sample_value("sfsync_poller_quarantined", {"sobject": "Contact"})

    try:
        first = [store.create("Contact", {"LastName": "Ada"}), store.create("Lead", {"LastName": "Bo", "Company": "X"})]
        await changes.until(lambda rs: {r["id"] for r in rs} >= set(first))

        await admin(running, "fields", {"sobject": "Contact", "field": "Title", "action": "remove"})
        contact = store.create("Contact", {"LastName": "Cy"})
        lead = store.create("Lead", {"LastName": "Di", "Company": "Y"})
        await changes.until(lambda rs: lead in {r["id"] for r in rs})  # Leads keep being polled
        await wait_until(lambda: gauge() == 1, 30, "Contact quarantined")
        assert not changes.of(contact)

        await admin(running, "fields", {"sobject": "Contact", "field": "Title", "action": "restore"})
        await changes.until(lambda rs: contact in {r["id"] for r in rs})  # resumed from its checkpoint
        assert gauge() == 0
    finally:
        poller.stop()
        await task
        await poller.close()
        changes.close()

    assert len(changes.of(contact)) == 1 and len(changes.of(lead)) == 1
    logged = entries(services, registry, prefix)
    [quarantine] = [e for e in logged if e.code == "POLL_QUARANTINED"]
    assert quarantine.category is Category.CONNECTION and quarantine.sobject == "Contact"
    assert "Contact.Title" in quarantine.message and quarantine.details["salesforce_code"] == "INVALID_FIELD"
    assert [e.sobject for e in logged if e.code == "POLL_RESTORED"] == ["Contact"]
