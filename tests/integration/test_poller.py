"""The poller end to end: the emulator over real HTTP (OAuth client credentials), real Kafka
transactions and registry. Sales-rep edits reach ``salesforce.changes``; records sharing one
SystemModstamp across a page boundary come once each; soft, purged and undeleted records are seen;
a poller SIGKILLed mid-stream and restarted loses nothing and repeats nothing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from sfsync.emulator.server import RunningEmulator, serve_in_thread
from sfsync.errors import FatalError
from sfsync.kafka.admin import ensure_topics
from sfsync.mapping import load_mappings
from sfsync.salesforce.governor import GovernorSettings
from sfsync.sources.metrics import SourceMetrics
from sfsync.sources.poller import Poller, checkpoint_spec, partition_for, read_checkpoint
from sfsync.sources.rules import Checkpoint, to_ms
from sfsync.sources.settings import SourceSettings
from tests.integration.helpers import consume_all, salesforce_settings
from tests.integration.polling import MAPPING, Changes, admin, source_settings
from tests.integration.processes import Spawned, pipeline_env, salesforce_env
from tests.kit import WallClock, write_mappings

pytestmark = pytest.mark.integration


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def running(clock: WallClock) -> Iterator[RunningEmulator]:
    emulator = serve_in_thread(clock=clock, faults="latency=15ms")
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    return write_mappings(tmp_path, MAPPING)


def new_poller(services: Any, prefix: str, running: RunningEmulator, mapping_file: Path, **overrides: Any) -> Poller:
    return Poller(
        source_settings(services, prefix, **overrides),
        salesforce_settings(running),
        governor_settings=GovernorSettings(),
        mappings=load_mappings(mapping_file),
        metrics=SourceMetrics(CollectorRegistry()),
    )


async def test_rep_edits_and_shared_modstamps_across_pages_are_emitted_once(
    services, prefix, registry, running, clock, mapping_file
) -> None:
    store = running.emulator.store
    account = store.create("Account", {"Name": "Acme Ltd"})
    clock.pin()  # 410 contacts, one SystemModstamp: query pages of 200 and commits of 7 rows split them
    ids = [
        store.create("Contact", {"LastName": f"Person{n}", "Email": f"p{n}@acme.test", "AccountId": account})
        for n in range(410)
    ]
    internal = store.create("Contact", {"LastName": "Staff", "Title": "internal"})
    clock.release()
    changes = Changes(services, registry, prefix)
    poller = new_poller(services, prefix, running, mapping_file, page_size=7, query_batch_size=200)
    task = asyncio.create_task(poller.run(signals=False))
    try:
        await changes.until(lambda rs: len(rs) >= len(ids))
        assert sorted(r["id"] for r in changes.records) == sorted(ids)
        assert {r["change_type"] for r in changes.records} == {"CREATE"}
        assert changes.records[0]["fields"]["Account.Name"] == "Acme Ltd"
        assert len({r["system_modstamp"] for r in changes.records}) == 1
        query_pages = sum(n for e, n in running.emulator.calls_by_endpoint.items() if "query" in e.lower())
        assert query_pages >= 3, running.emulator.calls_by_endpoint  # the cursor crossed page boundaries

        clock.pin()  # a sales rep edits four of them within one millisecond
        edited = []
        for n in (1, 2, 4, 6):
            reply = await admin(
                running,
                "edit",
                {"user": "rep@acme.test", "sobject": "Contact", "id": ids[n], "values": {"FirstName": f"Rep{n}"}},
            )
            edited.append(ids[n])
        clock.release()
        rep_id = reply["by"]
        await changes.until(lambda rs: len(rs) >= len(ids) + 4)
        updates = [r for r in changes.records if r["change_type"] == "UPDATE"]
        assert sorted(r["id"] for r in updates) == sorted(edited)
        assert {r["last_modified_by_id"] for r in updates} == {rep_id}
        assert {r["fields"]["FirstName"] for r in updates} == {"Rep1", "Rep2", "Rep4", "Rep6"}
        assert len({r["system_modstamp"] for r in updates}) == 1
        latency = [r["polled_at"] - r["system_modstamp"] for r in updates]
        assert max(latency).total_seconds() < 10  # generous: shared 2-core machine

        await asyncio.sleep(3)  # several more polls re-read the lookback window
        changes.drain()
        keys = [r["change_id"] for r in changes.records]
        assert len(keys) == len(set(keys)) == len(ids) + 4
        assert not changes.of(internal)  # the inbound filter kept it out
        assert poller.report.api_calls > 0
        assert poller.metrics.changes.labels(sobject="Contact", change_type="UPDATE")._value.get() == 4
    finally:
        poller.stop()
        await task
        await poller.close()
        changes.close()


async def test_soft_deletes_undeletes_and_purges_are_detected(
    services, prefix, registry, running, mapping_file
) -> None:
    store = running.emulator.store
    ids = [store.create("Contact", {"LastName": f"D{n}", "Email": f"d{n}@acme.test"}) for n in range(3)]
    changes = Changes(services, registry, prefix)
    poller = new_poller(services, prefix, running, mapping_file)
    task = asyncio.create_task(poller.run(signals=False))
    try:
        await changes.until(lambda rs: len(rs) >= 3)
        store.delete("Contact", ids[0])  # to the recycle bin: /queryAll shows IsDeleted
        await changes.until(lambda rs: any(r["change_type"] == "DELETE" for r in changes.of(ids[0])))
        store.undelete(ids[0])
        await changes.until(lambda rs: any(r["change_type"] == "UNDELETE" for r in changes.of(ids[0])))
        store.purge(ids[1])  # hard delete straight away: never visible as IsDeleted
        await changes.until(lambda rs: any(r["change_type"] == "DELETE" for r in changes.of(ids[1])))
        store.delete("Contact", ids[2])
        await changes.until(lambda rs: any(r["change_type"] == "DELETE" for r in changes.of(ids[2])))
        store.purge(ids[2])  # emptied from the recycle bin after its DELETE: nothing new
        await asyncio.sleep(2.5)  # reconciliation runs every second
        changes.drain()
        assert [r["change_type"] for r in changes.of(ids[0])] == ["CREATE", "DELETE", "UNDELETE"]
        assert [r["change_type"] for r in changes.of(ids[1])] == ["CREATE", "DELETE"]
        assert [r["change_type"] for r in changes.of(ids[2])] == ["CREATE", "DELETE"]
        assert all(r["fields"] == {} for r in changes.records if r["change_type"] == "DELETE")
    finally:
        poller.stop()
        await task
        await poller.close()
        changes.close()


async def test_poller_killed_mid_stream_restarts_without_loss_or_duplicates(
    services, prefix, registry, running, clock, mapping_file, tmp_path
) -> None:
    store = running.emulator.store
    ids = []
    for _batch in range(8):  # 8 x 25 records, each batch sharing one SystemModstamp
        clock.pin()
        ids += [store.create("Contact", {"LastName": f"K{len(ids)}"}) for _ in range(25)]
        clock.release()
        time.sleep(0.01)
    env = pipeline_env(
        services,
        prefix,
        SFSYNC_MAPPING_FILE=str(mapping_file),
        SFSYNC_SOURCE_PAGE_SIZE="2",
        SFSYNC_SOURCE_METRICS_PORT="0",
        SFSYNC_SOURCE_SESSION_TIMEOUT_MS="6000",
        **salesforce_env(running),
    )
    changes = Changes(services, registry, prefix)
    child = Spawned("sfsync.cli.main", "poller", env=env, log=tmp_path / "poller.log")
    try:
        await changes.until(lambda rs: len(rs) >= 16, timeout_s=90)
        child.kill()
        changes.drain()
        before = len(changes.records)
        assert before < len(ids), "the poller finished before it was killed: the test proves nothing"
        assert "polling Contact" in child.output()
        poller = new_poller(services, prefix, running, mapping_file, page_size=2)
        report = await poller.run(idle_exit_s=3, signals=False)
        await poller.close()
        await changes.until(lambda rs: len(rs) >= len(ids))
        await asyncio.sleep(0.5)
        changes.drain()
        keys = [r["change_id"] for r in changes.records]
        assert len(keys) == len(set(keys)) == len(ids), f"{len(keys)} changes, {len(set(keys))} distinct"
        assert {r["id"] for r in changes.records} == set(ids)
        assert report.changes == len(ids) - before
        checkpoint = read_checkpoint(
            {"bootstrap.servers": services.bootstrap},
            prefix + "sfsync.poller.checkpoints",
            partition_for("Contact", 6),
            "Contact",
        )
        assert checkpoint is not None and checkpoint.known == set(ids)  # the known-id buckets survived the kill
        assert checkpoint.cursor_ms == max(to_ms(r["system_modstamp"]) for r in changes.records)
    finally:
        child.kill()
        changes.close()


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


async def test_two_replicas_share_objects_one_poller_each_and_fail_over(
    services, prefix, registry, running, tmp_path
) -> None:
    mapping_file = tmp_path / "two.yaml"
    mapping_file.write_text(TWO_OBJECTS)
    store = running.emulator.store
    contact = store.create("Contact", {"LastName": "Ada"})
    lead = store.create("Lead", {"LastName": "Grace", "Company": "Navy"})
    changes = Changes(services, registry, prefix)
    # 2 checkpoint partitions: Contact -> 0, Lead -> 1 (tests/unit/test_poller_loop.py pins the hash)
    first = new_poller(services, prefix, running, mapping_file, checkpoint_partitions=2)
    second = new_poller(services, prefix, running, mapping_file, checkpoint_partitions=2)
    tasks = [asyncio.create_task(first.run(signals=False))]
    overlaps = []

    async def watch() -> None:
        while True:
            overlaps.append(set(first.objects) & set(second.objects))
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    try:
        await changes.until(lambda rs: {r["id"] for r in rs} >= {contact, lead})
        assert set(first.objects) == {"Contact", "Lead"}
        tasks.append(asyncio.create_task(second.run(signals=False)))
        deadline = time.monotonic() + 60
        while not (first.objects and second.objects):
            assert time.monotonic() < deadline, (first.objects, second.objects)
            await asyncio.sleep(0.1)
        assert {*first.objects, *second.objects} == {"Contact", "Lead"}
        await admin(
            running,
            "edit",
            {"user": "rep@acme.test", "sobject": "Contact", "id": contact, "values": {"FirstName": "A"}},
        )
        await admin(
            running, "edit", {"user": "rep@acme.test", "sobject": "Lead", "id": lead, "values": {"Company": "USN"}}
        )
        await changes.until(lambda rs: len(rs) >= 4)

        first.stop()  # replica one leaves: two takes every object over, from one's checkpoints
        await tasks[0]
        await first.close()
        deadline = time.monotonic() + 60
        while set(second.objects) != {"Contact", "Lead"}:
            assert time.monotonic() < deadline, second.objects
            await asyncio.sleep(0.1)
        await admin(
            running, "edit", {"user": "rep@acme.test", "sobject": "Lead", "id": lead, "values": {"Company": "Yale"}}
        )
        await admin(
            running,
            "edit",
            {"user": "rep@acme.test", "sobject": "Contact", "id": contact, "values": {"FirstName": "B"}},
        )
        await changes.until(lambda rs: len(rs) >= 6)
        await asyncio.sleep(2)
        changes.drain()
        keys = [r["change_id"] for r in changes.records]
        assert len(keys) == len(set(keys)) == 6
        assert [r["fields"].get("Company") for r in changes.of(lead)] == ["Navy", "USN", "Yale"]
        assert not any(overlaps), "an object was polled by both replicas at once"
    finally:
        watcher.cancel()
        first.stop()
        second.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await first.close()
        await second.close()
        changes.close()


def test_a_zombie_producer_is_fenced_by_its_successor(services, prefix) -> None:
    from sfsync.kafka.admin import ensure_topics
    from sfsync.sources.poller import FencedError, Transactions
    from sfsync.topics import TopicSpec

    kafka = {"bootstrap.servers": services.bootstrap}
    topic = prefix + "fencing"
    ensure_topics(kafka, [TopicSpec("fencing", "-", partitions=1)], prefix)
    zombie = Transactions(kafka, f"{prefix}sfsync-poller.Contact", 10)
    zombie.commit([(topic, b"k", b"before", None)])
    successor = Transactions(kafka, f"{prefix}sfsync-poller.Contact", 10)
    with pytest.raises(FencedError, match="fenced"):
        zombie.commit([(topic, b"k", b"zombie", None)])
    successor.commit([(topic, b"k", b"after", None)])
    values = [m.value() for m in consume_all(services.bootstrap, [topic], 2, timeout_s=30, read_committed=True)]
    assert values == [b"before", b"after"]


async def test_a_record_visible_late_below_the_cursor_is_emitted_once(
    services, prefix, registry, running, mapping_file
) -> None:
    """The emulator's late visibility (a write keeps its transaction's SystemModstamp but commits
    ``visibility_delay_ms`` later): the lookback window must cover the delay."""
    store = running.emulator.store
    late, early = (store.create("Contact", {"LastName": name}) for name in ("Late", "Early"))
    changes = Changes(services, registry, prefix)
    poller = new_poller(services, prefix, running, mapping_file, lookback_s=3.0, max_idle_interval_s=0.2)
    task = asyncio.create_task(poller.run(signals=False))
    try:
        await changes.until(lambda rs: len(rs) >= 2)

        async def edit(record_id: str, name: str, delay_ms: int | None, after_s: float) -> None:
            await asyncio.sleep(after_s)
            payload: dict[str, Any] = {"user": "rep@acme.test", "sobject": "Contact", "id": record_id}
            payload["values"] = {"FirstName": name}
            if delay_ms is not None:
                payload["visibility_delay_ms"] = delay_ms
            await admin(running, "edit", payload)

        await asyncio.gather(edit(late, "Slow", 1500, 0), edit(early, "Quick", None, 0.1))
        await changes.until(lambda rs: any(r["fields"].get("FirstName") == "Slow" for r in rs))
        await asyncio.sleep(2)
        changes.drain()
        slow = [r for r in changes.of(late) if r["change_type"] == "UPDATE"]
        quick = [r for r in changes.of(early) if r["change_type"] == "UPDATE"]
        assert len(slow) == 1 and len(quick) == 1
        assert slow[0]["system_modstamp"] < quick[0]["system_modstamp"]  # it appeared below the cursor
        assert slow[0]["polled_at"] > quick[0]["polled_at"]
    finally:
        poller.stop()
        await task
        await poller.close()
        changes.close()


def test_a_checkpoint_partition_with_records_of_other_writers_reads_as_the_checkpoint_or_a_fatal_error(
    services, prefix
) -> None:
    kafka = {"bootstrap.servers": services.bootstrap}
    settings = SourceSettings(topic_prefix=prefix)
    ensure_topics(kafka, [checkpoint_spec(settings)], prefix)
    topic = prefix + settings.checkpoint_topic
    partition = partition_for("Contact", settings.checkpoint_partitions)
    producer = Producer(kafka)
    producer.produce(topic, Checkpoint("Contact", cursor_ms=5).to_bytes(), b"Contact", partition=partition)
    producer.produce(topic, b"x", b"\xff\xfe not UTF-8", partition=partition)  # another writer's key
    producer.produce(topic, b"[]", b"Lead", partition=partition)  # not a checkpoint
    assert producer.flush(10) == 0

    checkpoint = read_checkpoint(kafka, topic, partition, "Contact")
    assert checkpoint is not None and checkpoint.cursor_ms == 5
    with pytest.raises(FatalError, match=r"checkpoint of Lead .* cannot be read: a checkpoint is a JSON object"):
        read_checkpoint(kafka, topic, partition, "Lead")
