"""The earlier writes the written state keeps per field for :func:`is_echo`: newest first, bounded."""

from __future__ import annotations

from sfsync.processors.inbound.echo import ECHO_HISTORY, ECHO_HISTORY_MS, earlier_writes, is_echo
from sfsync.processors.inbound.state import WrittenField


def test_the_entry_before_a_write_leads_its_earlier_writes() -> None:
    assert earlier_writes(None, 1_000) == []
    before: WrittenField = {
        "value": "B", "product_at": 0, "written_at": 900, "earlier": [{"value": "A", "written_at": 800}],
    }  # fmt: skip
    assert earlier_writes(before, 1_000) == [{"value": "B", "written_at": 900}, {"value": "A", "written_at": 800}]
    written: WrittenField = {
        "value": "C",
        "product_at": 0,
        "written_at": 1_000,
        "earlier": earlier_writes(before, 1_000),
    }
    assert is_echo(written, "A", 800) and not is_echo(written, "A", 801)  # A's write was acknowledged before 801


def test_earlier_writes_are_bounded_in_number_and_age() -> None:
    before: WrittenField = {
        "value": "v9", "product_at": 0, "written_at": 9,
        "earlier": [{"value": f"v{n}", "written_at": n} for n in range(8, 0, -1)],
    }  # fmt: skip
    assert [e["value"] for e in earlier_writes(before, 10)] == [f"v{n}" for n in range(9, 9 - ECHO_HISTORY, -1)]
    later = 9 + ECHO_HISTORY_MS + 1  # every earlier write acknowledged more than ECHO_HISTORY_MS before it
    assert earlier_writes(before, later) == []
    old_format: WrittenField = {"value": "x", "product_at": None, "written_at": None}  # no ``earlier`` stored yet
    assert earlier_writes(old_format, 0) == [{"value": "x", "written_at": None}]
