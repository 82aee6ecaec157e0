"""processors/outbound/edits.py: a SalesforceEdit on the outbound record clock (no Kafka)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sfsync.processors.outbound.edits import learn_edit
from sfsync.processors.outbound.plan import drop_stale
from tests.kit.serde import Decoder

T0 = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.UTC)
KEY = "ws-1|Contact:Email:ada@example.com"


def edit(fields: list[str], at: dt.datetime) -> dict[str, Any]:
    return {"edit_id": "Contact:003A:1:members", "key": KEY, "mapping": "members", "sobject": "Contact",
            "salesforce_id": "003A", "fields": fields, "edited_at": at}  # fmt: skip


def write(title: str, at: dt.datetime) -> dict[str, Any]:
    ms = int(at.timestamp() * 1000)
    return {"key": KEY, "operation": "UPSERT", "source": {"occurred_at": ms},
            "fields": {"Title": {"value": title, "policy": "ALWAYS", "updated_at": ms}}}  # fmt: skip


def test_an_edit_on_the_clock_stops_an_older_product_value_and_lets_a_newer_one_through() -> None:
    decoder = Decoder()
    clock: dict[str, Any] = {}
    rep_at = T0 + dt.timedelta(minutes=5)
    assert learn_edit(decoder, decoder.add("sfsync.pipeline.SalesforceEdit", edit(["Title"], rep_at)), clock)
    assert clock == {KEY: {"Title": int(rep_at.timestamp() * 1000)}}
    assert drop_stale(write("Engineer", rep_at - dt.timedelta(seconds=30)), clock[KEY])[0] is None
    assert drop_stale(write("CTO", rep_at + dt.timedelta(seconds=30)), clock[KEY])[0] is not None


def test_a_replay_sets_nothing_and_undecodable_records_are_refused() -> None:
    decoder = Decoder()

    class Recording(dict[str, Any]):
        sets = 0

        def __setitem__(self, key: str, value: Any) -> None:
            Recording.sets += 1
            super().__setitem__(key, value)

    clock = Recording()
    raw = decoder.add("SalesforceEdit", edit(["Title"], T0))
    assert learn_edit(decoder, raw, clock) and learn_edit(decoder, raw, clock)
    assert Recording.sets == 1  # a table set is a changelog record: the replay costs none
    assert not learn_edit(decoder, b"garbage", clock)
    assert not learn_edit(decoder, decoder.add("WriteResult", {"key": KEY}), clock)
