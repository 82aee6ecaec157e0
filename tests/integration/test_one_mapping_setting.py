"""One mapping setting, read the same way by every process: with ``member_object=Lead`` (the default
mapping's switch for members) in one environment, the outbound processor writes Leads, the poller
polls Leads and the inbound processor maps them, so a sales rep's edit on a Lead reaches the product.

Every part runs for real: the outbound processor, the poller and the inbound processor each as its
own process started with the same environment (``SFSYNC_MAPPING_VARS``), the sink in this process,
the emulated org over HTTP. The rep edits the Leads sfsync created directly in the org (the
emulator's admin API, as the Salesforce UI would), not through sfsync.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from sfsync.producers import events as ev
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from tests.integration.helpers import Reader, drain, open_publisher, until
from tests.integration.processes import Spawned, pipeline_env, salesforce_env, spawn, unexpected_tracebacks
from tests.integration.sink_runner import runner_for

pytestmark = pytest.mark.integration

MEMBERS = 5
REP = "rep@acme.test"
MAPPING_VARS = "member_object=Lead,activities=false"  # members only: the test waits for their writes


def profile(i: int, at: dt.datetime) -> ev.MemberProfile:
    return ev.MemberProfile(
        member_id=f"lead-{i}",
        email=f"lead{i}@example.com",
        first_name=f"First{i}",
        last_name=f"Last{i}",
        company=f"Company {i}",
        title="Engineer",
        location=ev.Location(country="DE", state="BE", city="Berlin"),
        signed_up_at=at,
        joined_at=at,
    )


async def test_a_reps_edit_on_a_lead_reaches_the_product_when_every_process_reads_member_object_lead(
    services: Any, prefix: str, registry: SchemaRegistry, running: Any, tmp_path: Path
) -> None:
    store = running.emulator.store
    publisher = open_publisher(services, prefix)  # creates every topic
    # the one environment every process starts with: the mapping setting is in it once
    env = pipeline_env(services, prefix, SFSYNC_MAPPING_VARS=MAPPING_VARS, **salesforce_env(running))
    app_id = uuid.uuid4().hex[:10]
    processor = spawn(
        "sfsync.processors.outbound.app",
        {
            **env,
            "SFSYNC_PROCESSOR_APP_ID": f"proc-{app_id}",
            "SFSYNC_PROCESSOR_SESSION_TIMEOUT_S": "10",
            "SFSYNC_PROCESSOR_COMMIT_INTERVAL_S": "0.5",
            "SFSYNC_PROCESSOR_METRICS_PORT": "0",
        },
        tmp_path / "processor",
    )
    inbound = spawn(
        "sfsync.processors.inbound.app",
        {
            **env,
            "SFSYNC_INBOUND_APP_ID": f"inbound-{app_id}",
            "SFSYNC_INBOUND_SESSION_TIMEOUT_S": "10",
            "SFSYNC_INBOUND_COMMIT_INTERVAL_S": "0.5",
            "SFSYNC_INBOUND_METRICS_PORT": "0",
            "SFSYNC_INBOUND_WRITER_USER_IDS": str(store.integration_user_id),
        },
        tmp_path / "inbound",
    )
    poller = Spawned(
        "sfsync.cli.main",
        "poller",
        env={
            **env,
            "SFSYNC_SOURCE_POLL_INTERVAL_S": "0.2",
            "SFSYNC_SOURCE_MAX_IDLE_INTERVAL_S": "0.5",
            "SFSYNC_SOURCE_LOOKBACK_S": "2",
            "SFSYNC_SOURCE_DELETE_LOG_INTERVAL_S": "0",
            "SFSYNC_SOURCE_RECONCILE_INTERVAL_S": "0",
            "SFSYNC_SOURCE_SESSION_TIMEOUT_MS": "6000",
            "SFSYNC_SOURCE_TRANSACTION_TIMEOUT_S": "10",
            "SFSYNC_SOURCE_METRICS_PORT": "0",
        },
        log=tmp_path / "poller.log",
    )
    children = {"processor": processor, "inbound": inbound, "poller": poller}
    # the sink, in this process, runs this process's mapping setting (the default): it only checks it
    sink = runner_for(services, prefix, f"sink-{app_id}", running, registry)
    task = asyncio.create_task(sink.run(signals=False))
    reader = Reader(services.bootstrap, prefix + "product.members.inbound")
    codes: dict[str, int] = {}
    try:
        # 1. the product creates members: the processor plans them as Leads, the sink writes them
        created_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        for i in range(MEMBERS):
            publisher.publish(
                ev.UserCreated(workspace_id="ws-1", occurred_at=created_at, member=profile(i, created_at))
            )
        publisher.flush()
        await until(lambda: sink.results >= MEMBERS, 150, f"{MEMBERS} members written")
        leads = {r["Member_Id__c"]: r for r in store.rows("Lead")}
        assert sorted(leads) == [f"lead-{i}" for i in range(MEMBERS)] and store.rows("Contact") == []
        assert {r["Company"] for r in leads.values()} == {f"Company {i}" for i in range(MEMBERS)}

        # 2. the inbound side links them: salesforce:id from the sink's results, the owner from the
        # poller's changes (read back from the Leads, not the Contacts)
        assert await asyncio.to_thread(reader.until, 2 * MEMBERS, 120) == 2 * MEMBERS, "the identity links"

        # 3. a sales rep edits every Lead in the org
        async with httpx.AsyncClient(base_url=running.base_url) as http:
            records = [
                {"sobject": "Lead", "id": leads[f"lead-{i}"]["Id"], "values": {"Title": f"Rep {i}", "City": "Hamburg"}}
                for i in range(MEMBERS)
            ]
            reply = await http.post("/__admin/edit", json={"user": REP, "records": records})
        assert reply.status_code == 200, reply.text
        rep_id = reply.json()["by"]
        delivered = await asyncio.to_thread(reader.until, 3 * MEMBERS, 90)
        assert delivered == 3 * MEMBERS, f"{delivered} records on product.members.inbound, not {3 * MEMBERS}"
        await asyncio.to_thread(drain, reader)  # and nothing more comes
    finally:
        sink.stop()
        await task
        reader.close()
        publisher.close()
        for name, child in children.items():
            codes[name] = child.stop()
    for name, child in children.items():
        assert codes[name] == 0, f"{name} stopped with {codes[name]}:\n{child.log_tail()}"
        assert unexpected_tracebacks(child.output()) == [], child.log_tail()
    assert "polling Lead" in poller.output() and "polling Contact" not in poller.output()

    decoder = AvroDecoder(registry)
    records_out = [decoder.decode(m.value()) for m in reader.messages]
    assert Counter(name for name, _ in records_out) == {"MemberIdentityLink": 2 * MEMBERS, "MemberFieldUpdate": MEMBERS}
    links = Counter(link for name, value in records_out if name == "MemberIdentityLink" for link in value["links"])
    assert links == {"salesforce:id": MEMBERS, "salesforce:owner_id": MEMBERS}  # no account_id: Contact only
    updates = {value["member_id"]: value for name, value in records_out if name == "MemberFieldUpdate"}
    assert sorted(updates) == sorted(leads)
    for member, update in updates.items():
        i = int(member.removeprefix("lead-"))
        assert update["sobject"] == "Lead" and update["mapping"] == "members"
        assert update["salesforce_id"] == leads[member]["Id"] and update["last_modified_by_id"] == rep_id
        assert update["fields"] == {"member.title": f"Rep {i}", "member.location.city": "Hamburg"}, update
