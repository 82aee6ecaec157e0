"""Emulator throughput: records/s through sObject Collections upserts, and simple requests/s.

The emulator runs as its own process (`sfsync emulator`, as the benchmarks and the demo use it);
the load comes from this process over loopback HTTP, several requests in flight: upserts with httpx
(as our client sends them), simple GETs with aiohttp (httpx alone tops out near 1,000 requests/s on
one core, which would measure the load generator). The emulator's own count of served requests is
checked against what was sent.
Prints one JSON line. Goals on this 2-core machine: >= 20,000 records/s, >= 1,000 requests/s.

    python bench/emulator.py [--records 100000] [--requests 5000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# This file is named like the package it measures: keep its own folder off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402

from sfsync.devtools.stack import wait_http  # noqa: E402
from sfsync.emulator.server import free_port  # noqa: E402
from sfsync.errors import ServiceUnavailableError  # noqa: E402


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sfsync.cli.main", "emulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/services/data/", 30, what="the emulator")
    except ServiceUnavailableError as exc:
        proc.kill()
        raise SystemExit(f"{exc}: {proc.stderr.read().decode() if proc.stderr else ''}") from None
    return proc


async def upserts(client: httpx.AsyncClient, records: int, concurrency: int) -> float:
    batches = [
        [
            {
                "attributes": {"type": "Contact"},
                "Email": f"bench{b * 200 + i}@example.com",
                "FirstName": "Bench",
                "LastName": f"Member {b * 200 + i}",
                "Title": "Engineer",
            }
            for i in range(200)
        ]
        for b in range(records // 200)
    ]
    queue: asyncio.Queue[list[dict[str, object]]] = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def worker() -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            response = await client.patch(
                "/services/data/v62.0/composite/sobjects/Contact/Email", json={"allOrNone": False, "records": batch}
            )
            response.raise_for_status()
            assert all(item["success"] for item in response.json())

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started


async def simple_requests(base: str, token: str, count: int, concurrency: int, record_id: str) -> float:
    """GETs of one record's fields. The load comes from aiohttp: lighter than httpx per request, so on
    two cores the figure is the emulator's, not the load generator's."""
    import aiohttp

    remaining = count
    url = f"{base}/services/data/v62.0/sobjects/Contact/{record_id}"
    headers = {"Authorization": f"Bearer {token}"}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            async with session.get(url, params={"fields": "Id,Email,LastName"}, headers=headers) as response:
                response.raise_for_status()
                await response.read()

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        return time.perf_counter() - started


async def run(port: int, records: int, requests: int, concurrency: int) -> dict[str, object]:
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=60) as admin:
        token = (await admin.post("/__admin/session", json={})).json()["access_token"]
        await admin.post("/__admin/limits", json={"daily_api_limit": 10_000_000})
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=limits, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        insert_s = await upserts(client, records, concurrency)  # first pass creates
        update_s = await upserts(client, records, concurrency)  # second pass matches and updates
        first = await client.get("/services/data/v62.0/query", params={"q": "SELECT Id FROM Contact LIMIT 1"})
        record_id = first.json()["records"][0]["Id"]
    simple_s = await simple_requests(base, token, requests, concurrency, record_id)
    async with httpx.AsyncClient(base_url=base, timeout=60) as admin:
        stats = (await admin.get("/__admin/stats")).json()
    served = stats["by_endpoint"].get("GET sobjects/{sobject}/{id}", 0)
    if served != requests:  # the figure must be what the emulator itself counted
        raise SystemExit(f"the emulator served {served} record GETs, expected {requests}")
    return {
        "bench": "emulator",
        "upsert_records": records,
        "upsert_create_records_per_s": round(records / insert_s),
        "upsert_update_records_per_s": round(records / update_s),
        "simple_requests": requests,
        "simple_requests_per_s": round(requests / simple_s),
        "simple_requests_counted_by_emulator": served,
        "concurrency": concurrency,
        "goal_records_per_s": 20_000,
        "goal_requests_per_s": 1_000,
        "meets_goals": min(records / insert_s, records / update_s) >= 20_000 and requests / simple_s >= 1_000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    port = free_port()
    proc = start_emulator(port)
    try:
        print(json.dumps(asyncio.run(run(port, args.records, args.requests, args.concurrency))))
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
