"""A member's identity end to end: product events -> processor (Faust, own process) -> sink -> emulated org.

With the shipped default mapping a member is matched on the member id first, then on Email: a member
who is created, changes their email, then updates a field ends as exactly one Contact with the latest
email and field (no ``DUPLICATE_VALUE``, nothing parked); a person who was in the org before sfsync
(an Email, no member id) is found by Email and gets the member id. Each step is published once the
previous one is in the org, so every write goes to Salesforce in a batch of its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from sfsync.emulator.server import RunningEmulator
from sfsync.producers import events as ev
from sfsync.serde.registry import SchemaRegistry
from tests.integration.helpers import publish_all, wait_until
from tests.integration.processes import Spawned, processor_env
from tests.integration.sink_runner import drain_sink, runner_for

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


def profile_event(kind: type[Any], member_id: str, email: str, minutes: int, **fields: Any) -> Any:
    profile = ev.MemberProfile(member_id=member_id, email=email, last_name="Lovelace", signed_up_at=T0, **fields)
    return kind(member=profile, occurred_at=T0 + dt.timedelta(minutes=minutes), workspace_id="ws-1")


def contacts(running: RunningEmulator) -> list[dict[str, Any]]:
    return list(running.emulator.store.rows("Contact"))


def has(running: RunningEmulator, member_id: str, **values: Any) -> bool:
    return any(
        r.get("Member_Id__c") == member_id and all(r.get(k) == v for k, v in values.items()) for r in contacts(running)
    )


async def test_a_member_who_changes_email_stays_one_contact_with_the_latest_email_and_field(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator, tmp_path: Path
) -> None:
    predates = running.emulator.store.create("Contact", {"LastName": "Hopper", "Email": "grace@example.org"})
    app_id = f"proc-{uuid.uuid4().hex[:10]}"
    proc = Spawned(
        "sfsync.processors.outbound.app", "240", env=processor_env(services, prefix, app_id), log=tmp_path / "proc.log"
    )
    group = f"sink-{uuid.uuid4().hex[:8]}"
    runner = runner_for(services, prefix, group, running, registry)
    task = asyncio.create_task(runner.run(signals=False))
    try:
        publish_all(
            services,
            prefix,
            [
                profile_event(ev.UserCreated, "u-1", "ada@old.example.org", 0),
                profile_event(ev.UserProfileUpdate, "u-2", "GRACE@example.org", 0, title="Admiral"),
            ],
        )
        await wait_until(lambda: has(running, "u-1", Email="ada@old.example.org"), 90, "the member was created")
        await wait_until(lambda: has(running, "u-2", Title="Admiral"), 30, "the Contact from before sfsync was found")
        publish_all(services, prefix, [profile_event(ev.UserProfileUpdate, "u-1", "ada@new.example.org", 1)])
        await wait_until(lambda: has(running, "u-1", Email="ada@new.example.org"), 30, "the email change arrived")
        publish_all(
            services, prefix, [profile_event(ev.UserProfileUpdate, "u-1", "ada@new.example.org", 2, title="CTO")]
        )
        await wait_until(lambda: has(running, "u-1", Title="CTO"), 30, "the field update arrived")
        await drain_sink(runner, services.bootstrap, group, prefix + "sfsync.writes")
        assert proc.running, proc.log_tail()
    finally:
        runner.stop()
        report = await asyncio.wait_for(task, 30)
        proc.stop(timeout_s=20)

    assert report.parked == 0 and report.auth_failures == 0
    rows = contacts(running)
    ada = [r for r in rows if r.get("Member_Id__c") == "u-1" or str(r.get("Email", "")).startswith("ada@")]
    assert len(ada) == 1, ada
    assert (ada[0]["Email"], ada[0]["Title"], ada[0]["LastName"]) == ("ada@new.example.org", "CTO", "Lovelace")
    (grace,) = [r for r in rows if r["Id"] == predates]
    assert (grace["Member_Id__c"], grace["Title"]) == ("u-2", "Admiral")
    assert len(rows) == 2
    assert proc.returncode == 0, proc.log_tail()
