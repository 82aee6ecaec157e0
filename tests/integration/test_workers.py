"""N workers: two outbound processors and two sinks, each pair one consumer group, with a rebalance
mid-run, leave the org exactly as the events imply (what one processor and one sink leave:
``test_outbound_e2e.py``, ``test_crash_recovery.py``).

Every part is real and its own process: ``python -m sfsync.processors.outbound.app`` twice (one app
id), ``sfsync sink`` twice (one group), real Kafka (topics of 6 partitions), the emulated org over
HTTP. While they work through a seeded community's events, one processor and one sink are SIGKILLed
and a third of each is started: their partitions move to the others (and then to the new ones).

Then the tables, across workers: sales reps edit the Title of some members in Salesforce, and the
inbound side's ``SalesforceEdit`` records for those edits arrive on ``sfsync.salesforce_edits`` (keyed
by write key, partitioned as the inbound app's Faust producer does). A product update stamped before
an edit must not overwrite the rep's value; one stamped after it must. The edit and the member's
events meet only if the worker that orders a record's writes holds that record's clock: with the
planned writes not repartitioned by record key (or not partitioned like Faust), half of the members'
events are planned on the other worker, and the rep's value is overwritten.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from sfsync.emulator.server import RunningEmulator, serve_in_thread
from sfsync.kafka.clients import new_producer
from sfsync.kafka.delivery import Outbox
from sfsync.mapping import load_mappings
from sfsync.processors.outbound.plan import plan
from sfsync.producers import events as ev
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroEncoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import PRODUCT_TOPICS, SALESFORCE_EDITS, WRITES
from tests.integration.helpers import PARTITIONS, Offsets, make_topics, processor_done, publish_all, wait_until
from tests.integration.outbound_org import assert_org, expected_org
from tests.integration.processes import Spawned, pipeline_env, processor_env, salesforce_env, unexpected_tracebacks
from tests.kit.events import decoded

EVENTS = 5000
EDITED = 24  # members whose Title a rep edits: half get a product update stamped before, half after
KILL_PROCESSOR_AT = 0.1  # share of the events the processors committed when one of them is killed
KILL_SINK_AT = 300  # writes the sinks committed when one of them is killed


class Workers:
    """The processors and sinks of the test, by name; each logs to its own file in ``folder``."""

    def __init__(self, folder: Path, processor_env: dict[str, str], sink_env: dict[str, str]) -> None:
        self.folder, self.envs = folder, {"processor": processor_env, "sink": sink_env}
        self.running: dict[str, Spawned] = {}
        self.killed: dict[str, Spawned] = {}

    def start(self, name: str) -> None:
        kind = name.rstrip("0123456789")
        module, args = (
            ("sfsync.processors.outbound.app", ["240"]) if kind == "processor" else ("sfsync.cli.main", ["sink"])
        )
        home = self.folder / name  # its own working directory (Faust's data directory)
        home.mkdir()
        self.running[name] = Spawned(module, *args, env=self.envs[kind], log=home / "out.log")

    def kill(self, name: str) -> None:
        """SIGKILL, as a crashed or evicted pod: nothing flushed, nothing committed."""
        self.killed[name] = worker = self.running.pop(name)
        worker.kill()

    def check(self) -> None:
        for name, worker in self.running.items():
            assert worker.running, f"{name} stopped:\n{worker.log_tail()}"

    def stop(self) -> dict[str, int]:
        return {name: worker.stop(timeout_s=30) for name, worker in self.running.items()}

    def kill_all(self) -> None:
        for worker in self.running.values():
            worker.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{w.log_tail(1500)}" for n, w in {**self.running, **self.killed}.items())


def java_partition(key: bytes, partitions: int = PARTITIONS) -> int:
    """Where Faust's producer (the inbound app's) puts ``key``: aiokafka's DefaultPartitioner, murmur2."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(key, every, every))


def last_profiles(events: list[Any]) -> dict[str, Any]:
    """Each member's last MemberProfile (from UserCreated / UserProfileUpdate), members deleted left out."""
    profiles: dict[str, Any] = {}
    for event in events:
        kind = type(event).__name__
        if kind in ("UserCreated", "UserProfileUpdate"):
            profiles[event.member.member_id] = event.member
        elif kind == "UserDeleted":
            profiles.pop(event.member.member_id, None)
    return profiles


def person_key(profile: Any) -> str:
    """The write key of a member's person record under the default mapping (what a SalesforceEdit carries)."""

    class Source:
        topic, partition, offset = "", 0, 0

    update = ev.UserProfileUpdate(workspace_id="ws-demo", member=profile, changed_fields=["title"])
    planned = plan(update.RECORD_NAME, decoded(update), Source(), load_mappings())
    return str(planned.writes[0]["key"])


def rep_edits(
    running: RunningEmulator,
    registry: SchemaRegistry,
    bootstrap: str,
    prefix: str,
    profiles: list[Any],
    at: dt.datetime,
) -> dict[str, str]:
    """Reps set the Title of the Contacts of ``profiles`` at ``at``; their SalesforceEdits go to
    ``sfsync.salesforce_edits`` as the inbound app sends them. The Title each Contact now has, by email."""
    store = running.emulator.store
    ids = {r["Email"]: r["Id"] for r in store.rows("Contact")}
    topic = SALESFORCE_EDITS.name(prefix)
    encoder = AvroEncoder(registry, topic, load_topic_schema(SALESFORCE_EDITS.base))
    outbox = Outbox(new_producer({"bootstrap.servers": bootstrap}, "test-edits"), label=topic, timeout_s=30)
    titles = {}
    for n, profile in enumerate(profiles):
        email = profile.email
        titles[email] = f"Rep's title {n}"
        store.update("Contact", ids[email], {"Title": titles[email]})
        key = person_key(profile).encode()
        edit = {
            "edit_id": str(uuid.uuid4()),
            "key": key.decode(),
            "mapping": "members",
            "sobject": "Contact",
            "salesforce_id": ids[email],
            "fields": ["Title"],
            "edited_at": int(at.timestamp() * 1000),
        }
        outbox.send(topic, encoder.encode_checked("SalesforceEdit", edit), key, partition=java_partition(key))
    outbox.flush()
    outbox.close(5)
    return titles


async def test_two_processors_and_two_sinks_with_a_rebalance_leave_the_org_as_one_of_each_would(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    events = list(CommunitySimulator(seed=20261207).stream(EVENTS))
    running = serve_in_thread()
    app_id, group = f"{prefix}processor", f"{prefix}sink"
    sink_env = pipeline_env(
        services,
        prefix,
        SFSYNC_SINK_GROUP_ID=group,
        SFSYNC_SINK_BATCH_SIZE="100",
        SFSYNC_SINK_BATCH_MAX_AGE_S="0.3",
        SFSYNC_SINK_POLL_TIMEOUT_S="0.2",
        SFSYNC_SINK_SESSION_TIMEOUT_MS="6000",
        SFSYNC_SINK_MAX_PARENT_WAITS="1000",
        SFSYNC_SINK_RETRY_WAIT_INITIAL_S="0.01",
        SFSYNC_SINK_RETRY_WAIT_MAX_S="0.05",
        SFSYNC_SINK_METRICS_PORT="0",
        **salesforce_env(running),
    )
    proc_env = processor_env(  # commits every 0.1 s: the processors plan ~5,000 events/s, a kill lands mid-run
        services,
        prefix,
        app_id,
        SFSYNC_PROCESSOR_SESSION_TIMEOUT_S="6",
        SFSYNC_PROCESSOR_HEARTBEAT_INTERVAL_S="1",
        SFSYNC_PROCESSOR_COMMIT_INTERVAL_S="0.1",
    )
    workers = Workers(tmp_path, proc_env, sink_env)
    offsets = Offsets(services.bootstrap, app_id)
    sink_offsets = Offsets(services.bootstrap, group)
    writes_topic, edits_topic = WRITES.name(prefix), SALESFORCE_EDITS.name(prefix)
    product_topics = [spec.name(prefix) for spec in PRODUCT_TOPICS]

    def planned() -> int:
        return sum(offsets.committed(topic) for topic in product_topics)

    async def settle(per_topic: dict[str, int], what: str) -> None:
        """Until the processors planned and ordered everything and the sinks wrote every write."""

        def done() -> bool:
            workers.check()
            return processor_done(services.bootstrap, app_id, prefix, per_topic) and sink_offsets.caught_up(
                writes_topic
            )

        await wait_until(done, 120, what, 0.5)

    try:
        make_topics(services, prefix)
        for name in ("processor1", "processor2", "sink1", "sink2"):
            workers.start(name)
        per_topic = publish_all(services, prefix, events)
        started = time.monotonic()

        # ---- a rebalance mid-run: one processor and one sink die, a third of each joins
        def processors_halfway() -> bool:
            workers.check()
            return planned() >= KILL_PROCESSOR_AT * len(events)

        await wait_until(processors_halfway, 90, "the processors started planning", 0.1)
        workers.kill("processor1")
        killed_processor_at = planned()
        workers.start("processor3")

        def sinks_writing() -> bool:
            workers.check()
            return sink_offsets.committed(writes_topic) >= KILL_SINK_AT

        await wait_until(sinks_writing, 90, "the sinks started writing", 0.1)
        workers.kill("sink1")
        killed_sink_at = sink_offsets.committed(writes_topic)
        assert killed_processor_at < len(events) and killed_sink_at < sink_offsets.end(writes_topic), (
            f"not killed mid-run: {killed_processor_at}/{len(events)} events, {killed_sink_at} writes"
        )
        workers.start("sink3")
        await settle(per_topic, "every event planned, ordered and written after the rebalance")
        rebalanced_s = time.monotonic() - started
        assert_org(running, expected_org(events))

        # ---- the tables across workers: reps' edits, then product updates stamped before and after them
        profiles = last_profiles(events)
        emails = sorted({p.email for p in profiles.values()})[:EDITED]
        by_email = {p.email: p for p in profiles.values()}
        edited_at = max(e.occurred_at for e in events) + dt.timedelta(hours=1)
        edited = [by_email[email] for email in emails]
        rep_titles = rep_edits(running, registry, services.bootstrap, prefix, edited, edited_at)
        await wait_until(lambda: offsets.caught_up(edits_topic), 60, "the processors learnt every edit", 0.25)
        updates = []
        for n, email in enumerate(emails):
            late = n % 2 == 0
            stamped = edited_at + dt.timedelta(minutes=-30 if late else 30)
            member = dataclasses.replace(by_email[email], title=f"{'late' if late else 'newer'} title {n}")
            updates.append(
                ev.UserProfileUpdate(
                    workspace_id="ws-demo", member=member, changed_fields=["title"], occurred_at=stamped
                )
            )
        for topic, count in publish_all(services, prefix, updates).items():
            per_topic[topic] = per_topic.get(topic, 0) + count
        await settle(per_topic, "the product updates planned, ordered and written")

        expected = expected_org([*events, *updates])
        for n, email in enumerate(emails):
            if n % 2 == 0:  # stamped before the rep's edit: the rep's Title stays
                expected["contacts"][email]["Title"] = rep_titles[email]
        counts = assert_org(running, expected)
        codes = workers.stop()
    finally:
        workers.kill_all()
        offsets.close()
        sink_offsets.close()
        running.stop()
    assert codes == {"processor2": 0, "processor3": 0, "sink2": 0, "sink3": 0}, workers.logs()
    for name, worker in workers.running.items():
        assert not unexpected_tracebacks(worker.output()), f"{name}:\n{worker.log_tail()}"
    print(
        f"\nworkers: {len(events)} events, processor killed after {killed_processor_at}, sink after "
        f"{killed_sink_at} writes; settled in {rebalanced_s:.0f}s; org {counts}"
    )
