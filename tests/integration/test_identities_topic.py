"""A person's identity reaches the outbound processor from ``sfsync.identities`` only: product events ->
processor (Faust, own process) -> sink -> emulated org, on a real broker.

A member whose person was in the org as a Lead before sfsync (an Email, no member id) is found by
Email: the sink publishes that identity (the Lead) once to ``sfsync.identities``, the processor learns
it from there, and the member's next event is planned with the Lead searched first. The processor's
consumer group never reads ``sfsync.results`` (no offset committed there), though every write's result
is on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from sfsync.emulator.server import RunningEmulator
from sfsync.keys import record_key
from sfsync.producers import events as ev
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from tests.integration.helpers import caught_up, committed, consume_all, end_offsets, publish_all, wait_until
from tests.integration.processes import Spawned, processor_env
from tests.integration.sink_runner import drain_sink, runner_for

T0 = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


def profile_event(kind: type[Any], minutes: int, **fields: Any) -> Any:
    profile = ev.MemberProfile(
        member_id="u-7", email="grace@example.org", last_name="Hopper", signed_up_at=T0, **fields
    )
    return kind(member=profile, occurred_at=T0 + dt.timedelta(minutes=minutes), workspace_id="ws-1")


async def test_the_processor_learns_a_persons_identity_from_sfsync_identities_and_never_reads_the_results(
    services: Any, prefix: str, registry: SchemaRegistry, running: RunningEmulator, tmp_path: Path
) -> None:
    lead = running.emulator.store.create(
        "Lead", {"LastName": "Hopper", "Company": "Navy", "Email": "grace@example.org"}
    )
    key = record_key("ws-1", "Contact", "Member_Id__c", "u-7")
    app_id = f"proc-{uuid.uuid4().hex[:10]}"
    proc = Spawned(
        "sfsync.processors.outbound.app", "240", env=processor_env(services, prefix, app_id), log=tmp_path / "proc.log"
    )
    group = f"sink-{uuid.uuid4().hex[:8]}"
    runner = runner_for(services, prefix, group, running, registry)
    task = asyncio.create_task(runner.run(signals=False))
    identities, results = prefix + "sfsync.identities", prefix + "sfsync.results"
    try:
        publish_all(services, prefix, [profile_event(ev.UserCreated, 0)])

        def titled(title: str | None) -> bool:
            assert proc.running, proc.log_tail()
            row = running.emulator.store.get("Lead", lead)
            return row is not None and row.get("Title") == title and row.get("LastName") == "Hopper"

        await wait_until(lambda: end_offsets(services.bootstrap, identities) == 1, 90, "the Lead's identity published")
        await wait_until(lambda: caught_up(services.bootstrap, app_id, identities), 60, "the processor read it")
        publish_all(services, prefix, [profile_event(ev.UserProfileUpdate, 1, title="Rear Admiral")])
        await wait_until(lambda: titled("Rear Admiral"), 60, "the update reached the Lead")
        await drain_sink(runner, services.bootstrap, group, prefix + "sfsync.writes")
        assert proc.running, proc.log_tail()
    finally:
        runner.stop()
        report = await asyncio.wait_for(task, 30)
        proc.stop(timeout_s=20)
    assert report.parked == 0 and proc.returncode == 0, proc.log_tail()

    decoder = AvroDecoder(registry)
    writes_topic = prefix + "sfsync.writes"
    planned = end_offsets(services.bootstrap, writes_topic)
    writes = [decoder.decode(m.value())[1] for m in consume_all(services.bootstrap, [writes_topic], planned)]
    assert len(writes) == planned
    person = [w for w in writes if w["key"] == key]
    # planned before the identity was known, then with it: the Lead searched first
    assert [w["search_objects"] for w in person] == [["Contact", "Lead"], ["Lead", "Contact"]]
    published = [decoder.decode(m.value()) for m in consume_all(services.bootstrap, [identities], 1)]
    [(name, identity)] = published  # once, though both writes' results gave it
    assert name == "Identity"
    assert (identity["key"], identity["sobject"], identity["salesforce_id"]) == (key, "Lead", lead)
    assert end_offsets(services.bootstrap, identities) == 1
    assert end_offsets(services.bootstrap, results) == len(writes)  # every write's result is there...
    assert committed(services.bootstrap, app_id, results) == 0  # ...and the processor never read them
