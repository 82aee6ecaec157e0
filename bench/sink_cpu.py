"""The Salesforce sink's CPU per record: decode + ``SalesforceSink.put`` + encode of realistic writes.

Workload: the shipped default mapping over ``product.members`` (as ``bench/e2e.py``): ``--members``
UserCreated events, then ``--events`` UserProfileUpdate events of random existing members, planned
by the processor's pure planner (:func:`sfsync.processors.outbound.plan.plan` + ``drop_stale``) and Avro-encoded
as the processor sends them (about two writes per event: the Contact update matched by Email and
a Community_Activity__c upsert). No Kafka and no registry server (the test kit's in-memory registry,
tests/kit/registry.py, serves the schemas); the org is the emulator, served over loopback HTTP from a
thread of this process.

Warm-up (untimed): the sign-ups' writes (Contacts created, the sink's describe cache warm), then the
garbage collector set as the sink process sets it before its first batch
(``sfsync.sinks.main.tune_collector_for_batches``, when it exists). Then
``--rounds`` rounds over the update writes, each in batches of ``--batch-size`` as the worker hands
them over: per batch, decode every record as the worker does (``sfsync.sinks.loop.write_decoder`` when
it exists, else ``AvroDecoder``), ``await sink.put``, encode every WriteResult as the worker does
(``sfsync.sinks.loop.WriteResultEncoder`` when it exists, else ``AvroEncoder``). The CPU time is this
thread's (``time.thread_time``): the sink's own work, httpx included, the emulator's thread left
out. The best round is kept (the machine is shared); the split (decode / put / encode) is from it.
``gc_us_per_write`` is the part of it spent in this thread's garbage collections: the emulator's
records share the heap here, which makes full collections dearer than in the sink's own process.

Prints one JSON line; ``us_per_write`` is the figure to compare (``us_per_event`` = per product
event). To measure the code as committed (the script falls back to the plain codecs there), run
this file from a ``git archive HEAD`` copy::

    python bench/sink_cpu.py [--members 2000] [--events 4000] [--rounds 3] [--batch-size 200]
    rm -rf /tmp/sfsync-head && mkdir /tmp/sfsync-head && git archive HEAD | tar -x -C /tmp/sfsync-head \\
      && cp bench/sink_cpu.py /tmp/sfsync-head/bench/ && (cd /tmp/sfsync-head && python bench/sink_cpu.py)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
# This folder holds bench/emulator.py and bench/plan.py, named like packages: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from sfsync.emulator.server import serve_in_thread  # noqa: E402
from sfsync.mapping import load_mappings  # noqa: E402
from sfsync.processors.outbound.plan import drop_stale, plan  # noqa: E402
from sfsync.salesforce import SalesforceClient, StaticTokenAuth  # noqa: E402
from sfsync.salesforce.settings import SalesforceSettings  # noqa: E402
from sfsync.serde.codec import AvroDecoder, AvroEncoder  # noqa: E402
from sfsync.serde.schema import load_topic_schema  # noqa: E402
from sfsync.sinks import loop as sink_worker  # noqa: E402
from sfsync.sinks import main as sink_process  # noqa: E402
from sfsync.sinks.contract import ErrorEntry, IncomingWrite  # noqa: E402
from sfsync.sinks.settings import SinkSettings  # noqa: E402
from sfsync.sinks.writer import SalesforceSink  # noqa: E402
from tests.kit.registry import FakeRegistry  # noqa: E402

WRITES_TOPIC = "sfsync.writes"
RESULTS_TOPIC = "sfsync.results"
MEMBERS_TOPIC = "product.members"


def _sibling(name: str) -> Any:
    """bench/<name>.py's helpers (the bench folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_events = _sibling("outbound").make_events  # sign-ups, then profile updates of random members


@dataclasses.dataclass(frozen=True)
class _Source:
    topic: str
    partition: int
    offset: int


def planned_writes(registry: FakeRegistry, events: list[Any], clock: dict[str, Any], first_offset: int) -> list[bytes]:
    """The encoded Write records the processor sends for ``events`` (read at offsets from ``first_offset``)."""
    members = AvroEncoder(registry, MEMBERS_TOPIC, load_topic_schema(MEMBERS_TOPIC))  # type: ignore[arg-type]
    writes = AvroEncoder(registry, WRITES_TOPIC, load_topic_schema(WRITES_TOPIC))  # type: ignore[arg-type]
    decoder = AvroDecoder(registry)  # type: ignore[arg-type]
    mappings = load_mappings()
    out: list[bytes] = []
    for i, event in enumerate(events):
        name, decoded = decoder.decode(members.encode_checked(event.RECORD_NAME, event.to_avro()))
        planned = plan(name, decoded, _Source(MEMBERS_TOPIC, 0, first_offset + i), mappings)
        for write in planned.writes:
            fresh, after = drop_stale(write, clock.get(str(write["key"])) or {})
            if fresh is None:
                continue
            clock[str(write["key"])] = after
            out.append(writes.encode_checked("Write", fresh))
    return out


def write_decoder(registry: FakeRegistry) -> Any:
    """The decoder the sink worker uses."""
    return sink_worker.write_decoder(registry)


def result_encoder(registry: FakeRegistry) -> Any:
    """The encoder the sink worker uses for WriteResults."""
    avro = AvroEncoder(registry, RESULTS_TOPIC, load_topic_schema(RESULTS_TOPIC))  # type: ignore[arg-type]
    return sink_worker.WriteResultEncoder(avro)


async def _noop_park(write: IncomingWrite, error: Exception) -> None:
    raise RuntimeError(f"unexpected park of {write.write.get('key')}: {error}")


async def _noop_entry(entry: ErrorEntry) -> None:
    return None


async def one_pass(
    sink: SalesforceSink, decoder: Any, encoder: Any, values: list[bytes], batch_size: int, offset0: int
) -> dict[str, float]:
    """Decode, put and encode ``values`` in batches; this thread's CPU seconds per stage."""
    cpu = time.thread_time
    spent = {"decode": 0.0, "put": 0.0, "encode": 0.0, "results": 0.0, "api_calls": 0.0, "gc": 0.0}
    gc_started: list[float] = []

    def gc_time(phase: str, info: dict[str, Any]) -> None:
        if threading.current_thread() is threading.main_thread():  # the emulator's thread collects too
            if phase == "start":
                gc_started.append(cpu())
            elif gc_started:
                spent["gc"] += cpu() - gc_started.pop()

    gc.callbacks.append(gc_time)
    try:
        await _batches(sink, decoder, encoder, values, batch_size, offset0, spent)
    finally:
        gc.callbacks.remove(gc_time)
    return spent


async def _batches(
    sink: SalesforceSink,
    decoder: Any,
    encoder: Any,
    values: list[bytes],
    batch_size: int,
    offset0: int,
    spent: dict[str, float],
) -> None:
    cpu = time.thread_time
    offset = offset0
    for start in range(0, len(values), batch_size):
        chunk = values[start : start + batch_size]
        t0 = cpu()
        batch = []
        for value in chunk:
            name, decoded = decoder.decode(value)
            if name != "Write":
                raise RuntimeError(f"decoded a {name}, not a Write")
            batch.append(IncomingWrite(decoded, WRITES_TOPIC, 0, offset, str(decoded["key"]).encode(), value))
            offset += 1
        t1 = cpu()
        outcome = await sink.put(batch)
        t2 = cpu()
        for result in outcome.results:
            encoder.encode("WriteResult", result)
        t3 = cpu()
        if outcome.pending or outcome.parked:
            raise RuntimeError(f"{len(outcome.pending)} pending, {len(outcome.parked)} parked: not a clean run")
        spent["decode"] += t1 - t0
        spent["put"] += t2 - t1
        spent["encode"] += t3 - t2
        spent["results"] += len(outcome.results)
        spent["api_calls"] += outcome.api_calls


async def run(args: argparse.Namespace) -> dict[str, Any]:
    registry = FakeRegistry()
    created, updates = make_events(args.members, args.events)
    clock: dict[str, Any] = {}
    warm = planned_writes(registry, created, clock, 0)
    timed = planned_writes(registry, updates, clock, len(created))
    decoder = write_decoder(registry)
    encoder = result_encoder(registry)
    running = serve_in_thread()
    try:
        token = running.emulator.auth.issue_session().access_token
        settings = SalesforceSettings(
            instance_url=running.base_url, auth_flow="access_token", access_token=SecretStr(token)
        )
        auth = StaticTokenAuth(access_token=SecretStr(token), instance_url=running.base_url)
        async with SalesforceClient(settings, auth=auth) as client:
            sink = SalesforceSink(
                client,
                settings=SinkSettings(batch_size=args.batch_size),
                on_parked=_noop_park,
                on_error_entry=_noop_entry,
            )
            await one_pass(sink, decoder, encoder, warm, args.batch_size, 0)
            tune_collector = getattr(sink_process, "tune_collector_for_batches", None)
            if tune_collector is not None:
                tune_collector()
            rounds = []
            for r in range(args.rounds):
                rounds.append(await one_pass(sink, decoder, encoder, timed, args.batch_size, (r + 1) * len(timed)))
    finally:
        running.stop()
    best = min(rounds, key=lambda s: s["decode"] + s["put"] + s["encode"])
    n = len(timed)
    total = best["decode"] + best["put"] + best["encode"]
    return {
        "bench": "sink_cpu",
        "members": args.members,
        "events": args.events,
        "writes": n,
        "writes_per_event": round(n / args.events, 3),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "results_per_round": int(best["results"]),
        "api_calls_per_round": int(best["api_calls"]),
        "us_per_write": round(total / n * 1e6, 1),
        "us_per_event": round(total / args.events * 1e6, 1),
        "decode_us_per_write": round(best["decode"] / n * 1e6, 1),
        "put_us_per_write": round(best["put"] / n * 1e6, 1),
        "encode_us_per_write": round(best["encode"] / n * 1e6, 1),
        "gc_us_per_write": round(best["gc"] / n * 1e6, 1),
        "all_rounds_us_per_write": [round((s["decode"] + s["put"] + s["encode"]) / n * 1e6, 1) for s in rounds],
        "decoder": "sfsync.sinks.loop.write_decoder" if hasattr(sink_worker, "write_decoder") else "AvroDecoder",
        "encoder": type(encoder).__name__,
        "collector_tuned": hasattr(sink_process, "tune_collector_for_batches"),
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--members", type=int, default=2000)
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
