"""The outbound processor vs Quix Streams running the same mapping over the same input topic, in one run.

The input: ``--events`` CommunitySimulator events of ``product.members`` (sign-ups, profile updates,
onboarding, spaces, clubs...), Avro in the Confluent wire format, published beforehand with
:class:`sfsync.producers.publisher.Publisher` to a topic of this run's own prefix (6 partitions, keyed by
member id). Then, one after the other, each side reads the whole topic with a consumer group of its
own:

- ``sfsync``: the outbound processor as it runs in production, ``python -m sfsync.processors.outbound.app`` (Faust,
  its own process), default settings except the processing guarantee (``--guarantee``, the same on
  both sides; default ``at_least_once``, sfsync's default) and the commit interval (``--commit-interval``,
  default: the production default) and ``SFSYNC_PROCESSOR_METRICS_PORT=0``; its writes go to the
  run's ``sfsync.writes``.
- ``quixstreams``: a Quix Streams ``Application`` (this file with ``--peer-worker``, run by the
  interpreter of its own virtual environment: quixstreams pins confluent-kafka < 2.13, sfsync 2.16)
  doing what ``Processor.handle`` does: decode with the same Avro decoder (the writer schemas fetched
  from the registry once, here, and handed over), :func:`sfsync.processors.outbound.plan.plan` with the shipped
  default mapping, :func:`sfsync.processors.outbound.plan.drop_stale` against a record clock kept in Quix state
  (RocksDB + changelog topic, keyed by member id: exact for this topic, where every record a member
  event writes is that member's Contact or the event's own activity), encode each Write and produce
  it to an output topic of its own, keyed by the write's record key; the same processing guarantee
  and commit interval as ours. Neither side knows any identity (no
  ``sfsync.results``): both plan the same writes, checked by counting them.

Timing, the same for both and taken from outside: from the first record on the side's output topic
(its high watermark leaves 0: consumption has started) to the moment the side's group has committed
every input partition's end offset (every event planned, its writes sent, its offset committed).
Process start-up (Faust's or Quix's rebalance and table recovery) is reported apart (``startup_s``).

The work itself is measured apart, in this process, over the same events (``work_us_per_event``:
``Processor.handle``, which is what both sides run per event, without Kafka or a runtime); each side's
``runtime_overhead_us_per_event`` is its CPU per event beyond that: the runtime's per-message path (and, on
sfsync's side, the repartition hop between planning and ordering).

Prints one JSON line: events/s and CPU per event of each, ``cpu_ratio`` = Quix Streams' CPU per event /
sfsync's (goal >= 1.0: sfsync spends no more per event), ``overhead_ratio`` the same over the runtime
overheads, ``ratio`` = sfsync / quixstreams events/s, both configurations. The Quix environment is
created once under ``~/.cache/sfsync/venvs/quixstreams``
(``SFSYNC_QUIX_VENV`` moves it) and reused while its requirements stay the same.

    python bench/processor_peer.py [--events 20000] [--commit-interval 2.8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
# This file's folder holds bench/plan.py and bench/emulator.py, named like modules: keep it off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

INPUT_BASE = "product.members"
PEER_OUTPUT_BASE = "peer.writes"
PEER_DLQ_BASE = "peer.dlq"
QUIX_VENV = Path(os.environ.get("SFSYNC_QUIX_VENV", Path.home() / ".cache" / "sfsync" / "venvs" / "quixstreams"))
# quixstreams pins pydantic < 2.14 and pydantic-settings < 2.16 itself; the rest is what sfsync's pure
# planning code imports (sfsync.mapping, sfsync.serde, sfsync.processors.outbound.plan), at sfsync's versions.
QUIX_REQUIREMENTS = (
    "quixstreams==3.28.1",
    "fastavro==1.13.1",
    "common-expression-language==0.10.0",
    "pyyaml==6.0.3",
    "orjson==3.13.0",
    "lark==1.3.1",
)
GOAL_RATIO = 1.0


# ====================================================================== the peer (Quix's venv)
class _Source(NamedTuple):
    topic: str
    partition: int
    offset: int


class PrefetchedRegistry:
    """The registry calls the Avro codecs make, answered from what the bench fetched once."""

    def __init__(self, schemas: dict[str, str], subjects: dict[str, int]) -> None:
        import fastavro

        self._by_id = {int(i): fastavro.parse_schema(json.loads(s)) for i, s in schemas.items()}
        self._subjects = subjects

    def writer_schema(self, schema_id: int) -> Any:
        return self._by_id[schema_id]

    def register(self, subject: str, schema_str: str) -> int:
        return self._subjects[subject]


class _Out(bytes):
    """An output record's value, carrying its key and topic (Quix routes on the value alone)."""

    key: bytes
    topic: Any


def peer_worker(config_path: str) -> None:
    """The Quix Streams application (run by the Quix venv's interpreter; sfsync's checkout on PYTHONPATH)."""
    from quixstreams import Application, message_context

    from sfsync.errors import SkippableRecordError
    from sfsync.mapping import load_mappings
    from sfsync.processors.outbound.plan import drop_stale, plan
    from sfsync.serde.codec import AvroDecoder, AvroEncoder
    from sfsync.serde.schema import load_topic_schema
    from sfsync.topics import WRITES

    cfg = json.loads(Path(config_path).read_text())
    registry = PrefetchedRegistry(cfg["schemas"], cfg["subjects"])
    decoder = AvroDecoder(registry, uuids_as_text=True)  # type: ignore[arg-type]  # as the processor decodes
    encoder = AvroEncoder(registry, cfg["output"], load_topic_schema(WRITES.base))  # type: ignore[arg-type]
    mappings = load_mappings(None)

    app = Application(
        broker_address=cfg["bootstrap"],
        consumer_group=cfg["group"],
        auto_offset_reset="earliest",
        commit_interval=cfg["commit_interval_s"],
        processing_guarantee=cfg["guarantee"],
        state_dir=cfg["state_dir"],
        loglevel="WARNING",
    )
    source = app.topic(cfg["input"], key_deserializer="bytes", value_deserializer="bytes")
    output = app.topic(cfg["output"], key_serializer="bytes", value_serializer="bytes")
    dlq = app.topic(cfg["dlq"], key_serializer="bytes", value_serializer="bytes")

    def out(data: bytes, key: bytes, topic: Any) -> _Out:
        item = _Out(data)
        item.key, item.topic = key, topic
        return item

    def handle(value: bytes, key: bytes, timestamp: int, headers: Any, state: Any) -> list[_Out]:
        ctx = message_context()
        try:
            event_type, event = decoder.decode(value)
        except SkippableRecordError:
            return [out(value, key, dlq)]
        try:
            planned = plan(event_type, event, _Source(ctx.topic, ctx.partition, ctx.offset), mappings)
        except Exception:  # noqa: BLE001 - parked, as Processor.handle does
            return [out(value, key, dlq)]
        sent: list[_Out] = [out(value, key, dlq) for _ in planned.rejects]
        for write in planned.writes:
            record_key = str(write["key"])
            before = state.get(record_key) or {}
            fresh, after = drop_stale(write, before)
            if fresh is None:
                continue
            try:
                data = encoder.encode_checked("Write", fresh)
            except SkippableRecordError:
                sent.append(out(value, key, dlq))
                continue
            if after != before:
                state.set(record_key, after)
            sent.append(out(data, record_key.encode(), output))
        return sent

    sdf = app.dataframe(source)
    sdf = sdf.apply(handle, stateful=True, expand=True, metadata=True)
    sdf.to_topic(lambda value, key, timestamp, headers: value.topic, key=lambda value: value.key)
    app.run()


# ====================================================================== the bench (sfsync's venv)
def ensure_quix_venv() -> Path:
    """The Quix venv's interpreter; created (or refreshed) when missing or its requirements changed."""
    python = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / ".sfsync-requirements"
    wanted = "\n".join(QUIX_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"creating {QUIX_VENV} ...", file=sys.stderr)
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(QUIX_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *QUIX_REQUIREMENTS], check=True)
    stamp.write_text(wanted)
    return python


def installed_version(python: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


def member_events(count: int, seed: int) -> list[Any]:
    """The first ``count`` events of a seeded community that go to ``product.members``."""
    from sfsync.producers.fake import CommunitySimulator

    sim = CommunitySimulator(seed=seed)
    events: list[Any] = []
    while len(events) < count:
        event = sim.next_event()
        if event.TOPIC == INPUT_BASE:
            events.append(event)
    return events


def work_us_per_event(events: list[Any], rounds: int = 3) -> float:
    """The work both sides do per event, without a runtime: ``Processor.handle`` (decode -> plan with the shipped
    mapping -> drop_stale -> encode each Write) over the same events, in this process, with the test kit's
    in-memory registry; CPU µs per event, the best of ``rounds``."""
    from sfsync.mapping import load_mappings
    from sfsync.processors.outbound.processor import Processor
    from sfsync.serde.codec import AvroDecoder, AvroEncoder
    from sfsync.serde.schema import load_topic_schema
    from sfsync.topics import MEMBERS, WRITES
    from tests.kit.registry import FakeRegistry

    registry = FakeRegistry()
    members = AvroEncoder(registry, MEMBERS.name(""), load_topic_schema(MEMBERS.base))  # type: ignore[arg-type]
    writes = AvroEncoder(registry, WRITES.name(""), load_topic_schema(WRITES.base))  # type: ignore[arg-type]
    processor = Processor(AvroDecoder(registry, uuids_as_text=True), writes, load_mappings())  # type: ignore[arg-type]
    rows = [members.encode_checked(e.RECORD_NAME, e.to_avro()) for e in events]
    best = float("inf")
    for _ in range(rounds + 1):  # the first warms up
        clock: dict[str, Any] = {}
        started = time.process_time()
        for offset, value in enumerate(rows):
            processor.handle(value, MEMBERS.name(""), 0, offset, clock=clock)
        best = min(best, time.process_time() - started)
    return best / len(rows) * 1e6


def open_publisher(settings: Any) -> Any:
    """A Publisher, once the topics just created show in the broker's metadata."""
    from sfsync.errors import FatalError
    from sfsync.producers.publisher import Publisher

    deadline = time.monotonic() + 15
    while True:
        try:
            return Publisher(settings)
        except FatalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Timing(NamedTuple):
    startup_s: float
    """Process start -> first output record."""
    seconds: float
    """First output record -> every input offset committed."""
    cpu_s: float
    """CPU time (user + system, all threads) the process used meanwhile."""


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch(
    kafka: dict[str, Any],
    group: str,
    source: str,
    output: str,
    proc: subprocess.Popen[bytes],
    timeout_s: float,
    then: str | None = None,
) -> Timing:
    """Time ``proc`` (just started) over ``source`` by its group's committed offsets and ``output``'s watermarks;
    ``then``: a topic the group writes from ``source`` and reads after it (sfsync's planned writes, which its
    ordering agent reads): its first record starts the timing too, and the run is done once the group's
    committed offsets reach its end offsets as well (``source`` done, that end stays)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**kafka, "group.id": group, "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(timeout=10).topics
        sources = [TopicPartition(source, p) for p in sorted(meta[source].partitions)]
        outputs = [TopicPartition(output, p) for p in sorted(meta[output].partitions)]
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in sources]
        started = time.monotonic()
        deadline = started + timeout_s
        first, cpu_first = None, 0.0
        while True:
            now = time.monotonic()
            if proc.poll() is not None:
                raise SystemExit(f"{group}: the processor exited ({proc.returncode})")
            if now > deadline:
                raise SystemExit(f"{group}: not done in {timeout_s:.0f}s")
            if first is None and (
                any(consumer.get_watermark_offsets(tp, timeout=10)[1] > 0 for tp in outputs)
                or (then is not None and _written(consumer, then))
            ):  # its first output: sfsync's first planned write, or its first ordered one
                first, cpu_first = now, cpu_seconds(proc.pid)
            if first is not None:
                committed = [max(tp.offset, 0) for tp in consumer.committed(sources, timeout=10)]
                if committed == ends and (then is None or _caught_up(consumer, then)):
                    return Timing(round(first - started, 2), now - first, cpu_seconds(proc.pid) - cpu_first)
            time.sleep(0.05)
    finally:
        consumer.close()


def _written(consumer: Any, topic: str) -> bool:
    """Whether ``topic`` exists and holds a record (not yet, while a topic just created has no leader)."""
    from confluent_kafka import KafkaException, TopicPartition

    found = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        return False
    try:
        return any(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] > 0 for p in found.partitions
        )
    except KafkaException:  # NOT_LEADER_FOR_PARTITION right after the side created it
        return False


def _caught_up(consumer: Any, topic: str) -> bool:
    """Whether the consumer's group committed every partition of ``topic`` up to its end offset."""
    from confluent_kafka import TopicPartition

    found = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if found is None or found.error is not None:
        return False
    partitions = [TopicPartition(topic, p) for p in sorted(found.partitions)]
    ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in partitions]
    return [max(tp.offset, 0) for tp in consumer.committed(partitions, timeout=10)] == ends


def count_records(kafka: dict[str, Any], topic: str) -> int:
    """Committed records on ``topic`` (read_committed, transaction markers not counted)."""
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    consumer = Consumer(
        {
            **kafka,
            "group.id": f"bench-count-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        done: set[int] = set()
        count = 0
        deadline = time.monotonic() + 60
        while len(done) < len(partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(10_000, timeout=0.5):
                if msg.error() is None:
                    count += 1
                elif msg.error().code() == KafkaError._PARTITION_EOF:
                    done.add(msg.partition())
        return count
    finally:
        consumer.close()


def delete_topics(kafka: dict[str, Any], marks: tuple[str, ...]) -> None:
    """Delete this run's topics (inputs, outputs, both sides' changelogs) from the shared broker."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka)
    names = [t for t in admin.list_topics(timeout=10).topics if any(m in t for m in marks)]
    for future in admin.delete_topics(names, operation_timeout=30).values() if names else ():
        with contextlib.suppress(Exception):
            future.result(timeout=30)


def run_ours(
    kafka: dict[str, Any],
    prefix: str,
    app_id: str,
    commit_interval: float,
    work: Path,
    timeout_s: float,
    *,
    command: tuple[str, ...] = ("-m", "sfsync.processors.outbound.app"),
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run the processor (``command`` after the interpreter) until it committed the whole input topic, and its
    ordering agent the whole of its planned writes."""
    from sfsync.topics import WRITES, planned_writes

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "SFSYNC_TOPIC_PREFIX": prefix,
        "SFSYNC_PROCESSOR_APP_ID": app_id,
        "SFSYNC_PROCESSOR_SESSION_TIMEOUT_S": "10",
        "SFSYNC_PROCESSOR_COMMIT_INTERVAL_S": str(commit_interval),
        "SFSYNC_PROCESSOR_METRICS_PORT": "0",
        **(extra_env or {}),
    }
    (work / app_id).mkdir()
    with (work / f"{app_id}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, *command, str(timeout_s + 60)],  # stops by itself should we die
            cwd=work / app_id,  # Faust's table data directory lands here
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            planned = planned_writes(app_id, WRITES.partitions).name(prefix)
            timing = watch(kafka, app_id, prefix + INPUT_BASE, WRITES.name(prefix), proc, timeout_s, then=planned)
        except BaseException:
            print((work / f"{app_id}.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            stop(proc)
    return {"timing": timing, "writes": count_records(kafka, WRITES.name(prefix))}


def run_peer(python: Path, kafka: dict[str, Any], cfg: dict[str, Any], work: Path, timeout_s: float) -> dict[str, Any]:
    config_path = work / "peer.json"
    config_path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = str(ROOT)  # sfsync's pure modules; nothing of sfsync's venv
    with (work / "peer.log").open("wb") as log:
        proc = subprocess.Popen(
            [str(python), str(Path(__file__).resolve()), "--peer-worker", str(config_path)],
            cwd=work,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            timing = watch(kafka, cfg["group"], cfg["input"], cfg["output"], proc, timeout_s)
        except BaseException:
            print((work / "peer.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        finally:
            stop(proc)
    return {"timing": timing, "writes": count_records(kafka, cfg["output"])}


def figures(side: dict[str, Any], events: int) -> dict[str, Any]:
    timing: Timing = side["timing"]
    return {
        "events_per_s": round(events / timing.seconds, 1),
        "seconds": round(timing.seconds, 2),
        "startup_s": timing.startup_s,
        "cpu_s": round(timing.cpu_s, 2),
        "cpu_us_per_event": round(timing.cpu_s / events * 1e6),
        "writes": side["writes"],
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from sfsync.kafka.admin import ensure_topics
    from sfsync.processors.outbound.settings import ProcessorSettings
    from sfsync.serde.registry import SchemaRegistry
    from sfsync.serde.schema import load_topic_schema
    from sfsync.settings import PublisherSettings, load
    from sfsync.topics import PRODUCT_TOPICS, WRITES, TopicSpec

    python = ensure_quix_venv()
    uid = uuid.uuid4().hex[:8]
    prefix = f"bench-peer-{uid}."
    app_id, group = f"bench-peer-ours-{uid}", f"bench-peer-quix-{uid}"
    os.environ["SFSYNC_TOPIC_PREFIX"] = prefix
    settings = load(PublisherSettings, "publisher")
    kafka = settings.kafka_client_config()
    output, dlq = TopicSpec(PEER_OUTPUT_BASE, "record key"), TopicSpec(PEER_DLQ_BASE, "original key", partitions=1)
    ensure_topics(kafka, (*PRODUCT_TOPICS, WRITES, output, dlq), prefix)
    source = prefix + INPUT_BASE
    commit_interval = args.commit_interval or ProcessorSettings.model_fields["commit_interval_s"].default
    try:
        with open_publisher(settings) as publisher:
            for event in member_events(args.events, args.seed):
                publisher.publish(event)
            publisher.flush()
        with SchemaRegistry.from_settings(
            settings, ride_out_outages=False
        ) as registry:  # the peer's schemas, fetched once
            latest = registry._call("latest input schema", registry._client.get_latest_version, f"{source}-value")
            out_subject = f"{output.name(prefix)}-value"
            peer_cfg = {
                "bootstrap": kafka["bootstrap.servers"],
                "group": group,
                "input": source,
                "output": output.name(prefix),
                "dlq": dlq.name(prefix),
                "guarantee": args.guarantee.replace("_", "-"),
                "commit_interval_s": commit_interval,
                "state_dir": str(work / "quix-state"),
                "schemas": {str(latest.schema_id): latest.schema.schema_str},
                "subjects": {out_subject: registry.register(out_subject, load_topic_schema(WRITES.base).schema_str)},
            }
        ours = run_ours(
            kafka, prefix, app_id, commit_interval, work, args.timeout,
            extra_env={"SFSYNC_PROCESSOR_PROCESSING_GUARANTEE": args.guarantee},
        )  # fmt: skip
        peer = run_peer(python, kafka, peer_cfg, work, args.timeout)
    finally:
        delete_topics(kafka, (prefix, app_id, group))
    mine, theirs = figures(ours, args.events), figures(peer, args.events)
    ratio = round(mine["events_per_s"] / theirs["events_per_s"], 2)
    work_us = work_us_per_event(member_events(args.events, args.seed))
    for side in (mine, theirs):  # what the runtime (and, on our side, the repartition hop) costs beyond the work
        side["runtime_overhead_us_per_event"] = round(side["cpu_us_per_event"] - work_us)
    overhead_ratio = round(theirs["runtime_overhead_us_per_event"] / max(mine["runtime_overhead_us_per_event"], 1), 2)
    cpu_ratio = round(theirs["cpu_us_per_event"] / mine["cpu_us_per_event"], 2)
    return {
        "bench": "processor_peer",
        "events": args.events,
        "input": f"{INPUT_BASE} (CommunitySimulator seed {args.seed}, 6 partitions)",
        "mapping": "default (shipped), plan() + drop_stale, no identities known",
        "sfsync": {
            **mine,
            "runtime": f"faust-streaming {installed_version(Path(sys.executable), 'faust-streaming')}",
            "processing_guarantee": args.guarantee,
            "commit_interval_s": commit_interval,
        },
        "quixstreams": {
            **theirs,
            "runtime": f"quixstreams {installed_version(python, 'quixstreams')}",
            "processing_guarantee": args.guarantee.replace("_", "-"),
            "commit_interval_s": commit_interval,
        },
        "same_writes": mine["writes"] == theirs["writes"],
        "work_us_per_event": round(work_us, 1),
        "cpu_ratio": cpu_ratio,
        "overhead_ratio": overhead_ratio,
        "ratio": ratio,
        "goal_cpu_ratio": GOAL_RATIO,
        "meets_goals": cpu_ratio >= GOAL_RATIO and mine["writes"] == theirs["writes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument(
        "--commit-interval", type=float, default=0.0, help="seconds, both sides (default: the processor's default)"
    )
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds per side")
    parser.add_argument(
        "--guarantee",
        choices=("at_least_once", "exactly_once"),
        default="at_least_once",
        help="both sides run under it (sfsync's default: at_least_once)",
    )
    parser.add_argument("--peer-worker", metavar="CONFIG", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_worker:
        peer_worker(args.peer_worker)
        return
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        result = run(args, Path(tmp))
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
