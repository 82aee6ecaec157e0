"""The processor's /metrics on real Kafka: a running ``python -m sfsync.processors.outbound.app`` scraped over HTTP,
and the lag probe against a consumer group's real committed offsets."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from sfsync.emulator.server import free_port
from sfsync.kafka.admin import ensure_topics
from sfsync.mapping import load_mappings
from sfsync.processors.outbound.metrics import LagProbe
from sfsync.processors.outbound.plan import plan
from sfsync.producers.fake import CommunitySimulator
from sfsync.topics import IDENTITIES, PRODUCT_TOPICS, SALESFORCE_EDITS, TopicSpec
from tests.integration.helpers import PARTITIONS, planned_topic, publish_all
from tests.integration.processes import Spawned, processor_env
from tests.kit.outbound import decoded

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    text = httpx.get(url, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


def lags(samples: Samples) -> dict[tuple[str, int], float]:
    return {
        (dict(labels)["topic"], int(dict(labels)["partition"])): value
        for (n, labels), value in samples.items()
        if n == "sfsync_consumer_lag"
    }


def test_the_processor_serves_events_writes_and_consumer_lag_per_partition(
    services: Any, prefix: str, tmp_path: Path
) -> None:
    events = list(CommunitySimulator(seed=5).stream(60))
    per_type = Counter(e.RECORD_NAME for e in events)
    assert len({e.TOPIC for e in events}) >= 2 and len(per_type) >= 3
    publish_all(services, prefix, events)

    mappings = load_mappings()

    class Src:
        topic, partition, offset = "", 0, 0

    per_sobject: Counter[str] = Counter()
    for event in events:
        planned = plan(event.RECORD_NAME, decoded(event), Src(), mappings)
        assert not planned.rejects
        per_sobject.update(str(w["sobject"]) for w in planned.writes)
    assert len(per_sobject) >= 2

    port = free_port()
    app_id = f"proc-{uuid.uuid4().hex[:10]}"
    env = processor_env(
        services, prefix, app_id, SFSYNC_PROCESSOR_METRICS_PORT=str(port), SFSYNC_PROCESSOR_LAG_INTERVAL_S="1"
    )
    every_partition = {
        (spec.name(prefix), p)
        for spec in (*PRODUCT_TOPICS, IDENTITIES, SALESFORCE_EDITS)
        for p in range(spec.partitions)
    } | {(planned_topic(prefix, app_id), p) for p in range(PARTITIONS)}  # its planned writes, ordered
    url = f"http://127.0.0.1:{port}/metrics"
    samples: Samples = {}
    proc = Spawned("sfsync.processors.outbound.app", "120", env=env, log=tmp_path / "processor.log")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.running:
            time.sleep(1)
            try:
                samples = scrape(url)
            except httpx.HTTPError:
                continue  # not serving yet
            done = sum(by_label(samples, "sfsync_processor_events_in_total", "event_type").values()) == len(events)
            caught_up = set(lags(samples)) == every_partition and not any(lags(samples).values())
            if done and caught_up:
                break
    finally:
        proc.stop()
    log = proc.output()
    assert proc.returncode == 0, log[-3000:]

    assert by_label(samples, "sfsync_processor_events_in_total", "event_type") == dict(per_type), log[-3000:]
    planned = by_label(samples, "sfsync_processor_writes_planned_total", "sobject")
    stale = by_label(samples, "sfsync_processor_stale_writes_dropped_total", "sobject")
    assert {s: planned.get(s, 0) + stale.get(s, 0) for s in per_sobject} == dict(per_sobject)
    assert sum(planned.values()) > 0
    assert samples[("sfsync_processor_planning_seconds_count", ())] == len(events)
    # lag per partition of every topic the processor reads, all caught up (committed = end offset)
    assert lags(samples) == dict.fromkeys(every_partition, 0.0), log[-3000:]


def test_the_lag_probe_reads_committed_offsets_against_end_offsets(services: Any, prefix: str) -> None:
    spec = TopicSpec("lagprobe", "none", partitions=2)
    topic = spec.name(prefix)
    ensure_topics({"bootstrap.servers": services.bootstrap}, (spec,), prefix)
    producer = Producer({"bootstrap.servers": services.bootstrap})
    for i in range(5):
        producer.produce(topic, value=b"x%d" % i, partition=0)
    for i in range(2):
        producer.produce(topic, value=b"y%d" % i, partition=1)
    assert producer.flush(30) == 0
    group = f"lag-{uuid.uuid4().hex[:8]}"
    committer = Consumer({"bootstrap.servers": services.bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        committer.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    finally:
        committer.close()

    probe = LagProbe({"bootstrap.servers": services.bootstrap}, group)
    try:
        assert probe.measure([(topic, 0), (topic, 1)]) == {(topic, 0): 3, (topic, 1): 2}
        assert probe.measure([]) == {}
    finally:
        probe.close()
    latest = LagProbe({"bootstrap.servers": services.bootstrap}, group, reset="latest")
    try:
        assert latest.measure([(topic, 1)]) == {(topic, 1): 0}  # nothing committed, would start at the end
    finally:
        latest.close()
