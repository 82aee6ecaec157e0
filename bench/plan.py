"""The outbound processor's per-record cost: ``Processor.handle`` vs bare fastavro decode + encode, in one run.

Both sides get the same CommunitySimulator events (the simulator's mix of all product event types),
Avro-encoded in the Confluent wire format before timing; no Kafka and no registry server (the test
kit's in-memory registry, tests/kit/registry.py, serves the schemas):

- ``bare``: fastavro ``schemaless_reader`` of each product record, then ``schemaless_writer`` of
  the ``Write`` records that record causes (taken from a warm-up pass): the codec work alone, the
  ceiling of what the processor could do;
- ``processor``: ``Processor.handle`` (decode -> plan with the shipped default mapping ->
  drop_stale against a record clock -> encode each Write), a fresh clock each round.

The warm-up also checks that every Write the processor encoded is byte for byte what fastavro's
generic ``schemaless_writer`` makes of the same record (``writes_identical_to_fastavro``), and
prints the SHA-256 of all of them (key and value, in order: compare it across versions).

Rounds alternate (bare, processor, ...) and the best round of each is kept. Times are the process's
CPU time (``time.process_time``: the machine is shared, and this is single-threaded work), wall
time alongside. Prints one JSON line. Goal: processor <= 150 µs per event (>= 6,667 events/s on
one core; issue 6 needs 5,000 events/s through the whole pipeline on two).

    python bench/plan.py [--events 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# This file is named like a module it measures (sfsync.processors.outbound.plan): keep its own folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the test kit's in-memory registry (tests/kit/registry.py)

import fastavro  # noqa: E402

from sfsync.mapping import load_mappings  # noqa: E402
from sfsync.processors.outbound.processor import Processor  # noqa: E402
from sfsync.producers.fake import CommunitySimulator  # noqa: E402
from sfsync.serde.codec import HEADER, AvroDecoder, AvroEncoder  # noqa: E402
from sfsync.serde.schema import load_topic_schema  # noqa: E402
from sfsync.topics import PRODUCT_TOPICS, WRITES  # noqa: E402
from tests.kit.registry import FakeRegistry  # noqa: E402

GOAL_US_PER_EVENT = 150.0


Record = tuple[bytes, str, int, int]
"""(value, topic, partition, offset)"""


def records(registry: FakeRegistry, count: int) -> list[Record]:
    by_record: dict[str, tuple[str, AvroEncoder]] = {}
    for spec in PRODUCT_TOPICS:
        topic = spec.name("")
        encoder = AvroEncoder(registry, topic, load_topic_schema(spec.base))  # type: ignore[arg-type]
        for name in encoder.schema.record_names:
            by_record[name] = (topic, encoder)
    out: list[Record] = []
    for offset, event in enumerate(CommunitySimulator(seed=11).stream(count)):
        topic, encoder = by_record[event.RECORD_NAME]
        out.append((encoder.encode_checked(event.RECORD_NAME, event.to_avro()), topic, 0, offset))
    return out


def processor_round(processor: Processor, rows: list[Record]) -> tuple[float, float]:
    """(CPU seconds, wall seconds)"""
    clock: dict[str, Any] = {}
    handle = processor.handle
    started, wall = time.process_time(), time.perf_counter()
    for value, topic, partition, offset in rows:
        handle(value, topic, partition, offset, clock=clock)
    return time.process_time() - started, time.perf_counter() - wall


def bare_round(
    rows: list[tuple[bytes, Any]], write_schema: Any, writes: list[list[dict[str, Any]]], header: bytes
) -> tuple[float, float]:
    """(CPU seconds, wall seconds)"""
    reader, writer = fastavro.schemaless_reader, fastavro.schemaless_writer
    size = HEADER.size
    started, wall = time.process_time(), time.perf_counter()
    for (value, schema), planned in zip(rows, writes, strict=True):
        reader(io.BytesIO(value[size:]), schema, None, return_record_name=True, return_record_name_override=True)
        for write in planned:
            buf = io.BytesIO()
            buf.write(header)
            writer(buf, write_schema, write)
            buf.getvalue()
    return time.process_time() - started, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    registry = FakeRegistry()
    rows = records(registry, args.events)
    writes_encoder = AvroEncoder(registry, WRITES.name(""), load_topic_schema(WRITES.base))  # type: ignore[arg-type]
    # as the app builds it (processors/outbound/app.py): uuids decoded as the text the plan takes
    decoder = AvroDecoder(registry, uuids_as_text=True)  # type: ignore[arg-type]
    processor = Processor(decoder, writes_encoder, load_mappings())  # type: ignore[arg-type]

    # warm-up: also what the bare side encodes (the Writes each record causes, after drop_stale)
    clock: dict[str, Any] = {}
    handled = [processor.handle(v, t, p, o, clock=clock) for v, t, p, o in rows]
    planned = [h.planned for h in handled]
    parked = sum(len(processor.handle(v, t, p, o).parked) for v, t, p, o in rows[:2000])
    header, write_schema = writes_encoder._plain["Write"]  # the prefix and the branch encode_checked writes
    # byte identity: every encoded Write is what fastavro's generic writer makes of the same record
    digest, identical = hashlib.sha256(), True
    for h in handled:
        for (key, data), write in zip(h.writes, h.planned, strict=True):
            buf = io.BytesIO()
            buf.write(header)
            fastavro.schemaless_writer(buf, write_schema, write)
            identical = identical and data == buf.getvalue()
            digest.update(key + b"\0" + data + b"\1")
    bare_rows = [(value, registry.writer_schema(HEADER.unpack_from(value)[1])) for value, *_ in rows]

    bare, ours = [], []
    for _ in range(args.rounds):
        bare.append(bare_round(bare_rows, write_schema, planned, header))
        ours.append(processor_round(processor, rows))
    us = min(cpu for cpu, _ in ours) / args.events * 1e6
    bare_us = min(cpu for cpu, _ in bare) / args.events * 1e6
    wall_us = min(wall for _, wall in ours) / args.events * 1e6
    print(
        json.dumps(
            {
                "bench": "plan",
                "events": args.events,
                "rounds": args.rounds,
                "writes_per_event": round(sum(map(len, planned)) / args.events, 3),
                "parked_in_first_2000": parked,
                "writes_identical_to_fastavro": identical,
                "writes_sha256": digest.hexdigest(),
                "processor_events_per_s": round(1e6 / us),
                "processor_us_per_event": round(us, 1),
                "processor_wall_us_per_event": round(wall_us, 1),
                "bare_fastavro_events_per_s": round(1e6 / bare_us),
                "bare_fastavro_us_per_event": round(bare_us, 1),
                "ratio": round(bare_us / us, 3),
                "goal_us_per_event": GOAL_US_PER_EVENT,
                "meets_goals": us <= GOAL_US_PER_EVENT,
                "python": platform.python_version(),
            }
        )
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
