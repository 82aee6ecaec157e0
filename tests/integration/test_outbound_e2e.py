"""Outbound end to end: fake community events -> processor (Faust, own process) -> sink -> org.

300 events of a seeded community are published on real Kafka, planned by ``python -m sfsync.processors.outbound.app``
and written by the sink into an emulated org over real HTTP. The org is then compared with the state
the default mapping implies, worked out here from the events alone (``plan()`` is not used); a second
sink with a new consumer group replays every write and must leave the org exactly as it was.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

from sfsync.emulator.server import RunningEmulator, serve_in_thread
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.registry import SchemaRegistry
from tests.integration.helpers import processor_done, publish_all, wait_until
from tests.integration.outbound_org import actual_org, expected_org
from tests.integration.processes import Spawned, processor_env
from tests.integration.sink_runner import drain_sink, runner_for

SEED = 20261125
EVENT_COUNT = 300
# what the org changes on every write whatever the values: not part of a record's content
AUDIT_FIELDS = {"LastModifiedDate", "SystemModstamp", "LastModifiedById", "LastViewedDate", "LastReferencedDate"}


# ---------------------------------------------------------------------- Kafka bookkeeping


# ---------------------------------------------------------------------- what the org should hold


def org_snapshot(running: RunningEmulator) -> dict[str, dict[str, dict[str, Any]]]:
    """Every record of the synced objects, by Id, without the audit fields a write always touches."""
    store = running.emulator.store
    return {
        sobject: {r["Id"]: {k: v for k, v in r.items() if k not in AUDIT_FIELDS} for r in store.rows(sobject)}
        for sobject in ("Contact", "Campaign", "CampaignMember", "Case", "Community_Activity__c")
    }


# ---------------------------------------------------------------------- the test
async def test_community_events_end_in_the_org_as_the_default_mapping_says_and_a_replay_changes_nothing(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    events = list(CommunitySimulator(seed=SEED).stream(EVENT_COUNT))
    per_topic = publish_all(services, prefix, events)

    app_id = f"proc-{uuid.uuid4().hex[:10]}"
    writes_topic = prefix + "sfsync.writes"
    running = None
    proc = Spawned(
        "sfsync.processors.outbound.app",
        "240",
        env=processor_env(services, prefix, app_id),
        log=tmp_path / "processor.log",
    )
    try:
        running = serve_in_thread()
        group = f"sink-{uuid.uuid4().hex[:8]}"
        runner = runner_for(services, prefix, group, running, registry)
        task = asyncio.create_task(runner.run(signals=False))
        try:
            await wait_until(
                lambda: processor_done(services.bootstrap, app_id, prefix, per_topic),
                50,
                "the processor committed every product event and ordered its writes",
                0.5,
            )
            assert proc.running, proc.log_tail()
            await drain_sink(runner, services.bootstrap, group, writes_topic)
        finally:
            runner.stop()
            report = await asyncio.wait_for(task, 30)
        assert report.parked == 0 and report.auth_failures == 0

        expected = expected_org(events)
        got = actual_org(running)
        counts = got.pop("counts")
        for name, counter in counts.items():
            duplicated = {k: n for k, n in counter.items() if n > 1}
            assert not duplicated, f"{name}: more than one record for {duplicated}"
        assert got["contacts"] == expected["contacts"]
        assert got["campaigns"] == expected["campaigns"]
        assert got["members"] == expected["members"]
        assert got["cases"] == expected["cases"]
        assert got["activities"] == expected["activities"]

        # a second sink replays every write from the start: the org must not change at all
        before = org_snapshot(running)
        again = f"sink-{uuid.uuid4().hex[:8]}"
        replay = runner_for(services, prefix, again, running, registry)
        task = asyncio.create_task(replay.run(signals=False))
        try:
            await drain_sink(replay, services.bootstrap, again, writes_topic)
        finally:
            replay.stop()
            replayed = await asyncio.wait_for(task, 30)
        assert replayed.parked == 0 and replayed.auth_failures == 0
        after = org_snapshot(running)
        assert {s: len(r) for s, r in after.items()} == {s: len(r) for s, r in before.items()}
        assert after == before
    finally:
        proc.stop(timeout_s=20)
        if running is not None:
            running.stop()
    assert proc.returncode == 0, proc.log_tail()
    assert "Traceback" not in proc.output(), proc.log_tail()
