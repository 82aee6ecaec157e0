"""A record Salesforce refuses on its own (a failing trigger or Flow, an inactive owner, no access
to a record it refers to) is parked with its code; the batch's other records are written and the
partition's offset moves past it. The real sink core on the emulator in process; the refusals come
from the kit's :class:`FaultyOrg`, as Salesforce answers them: one record's ``statusCode`` in a
sObject Collections result.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from sfsync.emulator.server import build
from sfsync.errors import Category
from sfsync.ops.errorlog import category_and_code
from sfsync.salesforce.errors import SalesforceRecordError
from tests.kit import FaultyOrg
from tests.kit.sink import TOPIC, Harness, Recorder, make_sink, member

REFUSED = "member1@example.org"

PER_RECORD_CODES = [
    ("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "Contact_After: execution of AfterInsert caused by: System.DmlException"),
    ("INACTIVE_OWNER_OR_USER", "operation performed with inactive user [005000000000001] as owner of contact"),
    ("INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY", "insufficient access rights on cross-reference id"),
]


@pytest.fixture
async def faulty() -> AsyncIterator[tuple[Harness, FaultyOrg]]:
    emulator = build()
    rec = Recorder()
    wrapped: list[FaultyOrg] = []

    def wrap(transport: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        wrapped.append(FaultyOrg(transport))
        return wrapped[0]

    client, sink = make_sink(emulator, rec, wrap=wrap)
    async with client:
        yield Harness(emulator, client, sink, rec), wrapped[0]


def is_refused(record: Any) -> bool:
    return record.get("Email") == REFUSED


@pytest.mark.parametrize(("code", "message"), PER_RECORD_CODES, ids=[c for c, _ in PER_RECORD_CODES])
async def test_a_record_salesforce_refuses_on_its_own_is_parked_and_the_batch_goes_on(
    faulty: tuple[Harness, FaultyOrg], code: str, message: str
) -> None:
    h, org = faulty
    org.refuse(is_refused, code, message)

    outcome = await h.sink.put(h.incoming(member(1), member(2), member(3)))

    assert sorted(r["key"] for r in outcome.results) == [member(2)["key"], member(3)["key"]]
    [(parked, error)] = h.rec.parked
    assert parked.write["key"] == member(1)["key"]
    assert isinstance(error, SalesforceRecordError)
    assert category_and_code(error) == (Category.SYNC, code)
    assert outcome.committed == {(TOPIC, 0): 3}  # past the parked record: the stream goes on
    assert sorted(r["Email"] for r in await h.query("SELECT Email FROM Contact")) == [
        "member2@example.org",
        "member3@example.org",
    ]
