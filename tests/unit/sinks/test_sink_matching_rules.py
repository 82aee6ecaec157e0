"""The sink's pure match-order and record-clock rules (sfsync.sinks.matching and .merge), without Salesforce."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.matching import Candidate, candidates, index_rows, pick, usable
from sfsync.sinks.merge import (
    FieldValue,
    _Segment,
    advance_written,
    drop_older,
    kept_values,
    merge_writes,
    written_times,
)
from sfsync.sinks.writer import _url_length
from tests.kit.sink import T0, TOPIC, member, planned_member, write


def segment(w: dict[str, Any]) -> _Segment:
    ((seg,),) = merge_writes([IncomingWrite(w, TOPIC, 0, 0)]).values()
    return seg


# ---------------------------------------------------------------------- match order
def test_the_member_id_is_looked_for_in_every_object_before_email_is() -> None:
    seg = segment(planned_member("u-1", "Ada@X.org"))
    assert candidates(seg) == [
        Candidate("Contact", ("Member_Id__c",), ("u-1",)),
        Candidate("Lead", ("Member_Id__c",), ("u-1",)),
        Candidate("Contact", ("Email",), ("Ada@X.org",), guard=("Member_Id__c", "u-1")),
        Candidate("Lead", ("Email",), ("Ada@X.org",), guard=("Member_Id__c", "u-1")),
    ]


def test_a_write_without_an_email_is_looked_for_by_member_id_only_and_a_repeated_key_counts_once() -> None:
    assert [c.names for c in candidates(segment(planned_member("u-1", None)))] == [("Member_Id__c",)] * 2
    by_email = member(1, search_objects=["Contact"])
    by_email["match"] = [{"field": "Email", "value": "member1@example.org"}] * 2
    seg = segment(by_email)
    assert candidates(seg) == [Candidate("Contact", ("Email",), ("member1@example.org",))]
    assert usable(seg, ("Email", "x")) and not usable(seg, ("Email", ""))


def test_match_keys_without_an_external_id_are_tried_in_order_without_a_guard() -> None:
    # e.g. Email, then Phone: a record found by Phone may hold another email (that is why Phone is there)
    w = write("ws-1|Contact:Email:a@x.org", "Contact", {}, match=[("Email", "a@x.org"), ("Phone", "555")])
    assert candidates(segment(w)) == [
        Candidate("Contact", ("Email",), ("a@x.org",)),
        Candidate("Contact", ("Phone",), ("555",)),
    ]


def rows(*found: tuple[str, str, str | None]) -> list[dict[str, Any]]:
    return [{"Id": i, "Email": email, "Member_Id__c": member_id} for i, email, member_id in found]


def test_a_key_finds_the_smallest_id_and_a_fallback_only_a_record_without_another_member_id() -> None:
    index = index_rows(
        rows(
            ("003000000000003", "ada@x.org", None),
            ("003000000000001", "ADA@x.org", "u-2"),  # another member sharing the email
            ("003000000000002", "ada@x.org", "U-1"),
            ("003000000000004", "bob@x.org", ""),
        ),
        ["Email"],
    )
    plain = Candidate("Contact", ("Email",), ("Ada@x.org",))
    hit = pick(plain, index)
    assert hit is not None and hit["Id"] == "003000000000001"  # no guard: the smallest Id, whoever it is
    guarded = plain._replace(guard=("Member_Id__c", "u-1"))
    hit = pick(guarded, index)
    assert hit is not None and hit["Id"] == "003000000000002"  # its own member id (compared as Salesforce does)
    other = plain._replace(guard=("Member_Id__c", "u-3"))
    hit = pick(other, index)
    assert hit is not None and hit["Id"] == "003000000000003"  # the one with no member id yet
    bob = Candidate("Contact", ("Email",), ("bob@x.org",), guard=("Member_Id__c", "u-9"))
    hit = pick(bob, index)
    assert hit is not None and hit["Id"] == "003000000000004"  # an empty text counts as no member id
    taken = index_rows(rows(("003000000000001", "ada@x.org", "u-2")), ["Email"])
    assert pick(guarded, taken) is None  # another member's record: not this write's, it creates its own
    assert pick(Candidate("Contact", ("Email",), ("nobody@x.org",)), index) is None


# ---------------------------------------------------------------------- the record clock
def f(value: Any, at: int, policy: str = "ALWAYS") -> FieldValue:
    return {"value": value, "policy": policy, "updated_at": at}


def test_a_field_older_than_the_value_written_to_the_record_is_dropped_a_tie_is_kept() -> None:
    written = {"LastName": T0 + 100, "Title": T0 + 10}
    fields = {"LastName": f("Older", T0 + 50), "Title": f("CTO", T0 + 10), "Email": f("a@x.org", T0 + 1)}
    assert drop_older(fields, written) == {"Title": fields["Title"], "Email": fields["Email"]}
    assert drop_older(fields, {}) == fields


def test_written_times_move_with_real_values_only_never_back() -> None:
    fields = {"LastName": f("New", T0 + 200), "Title": f("Old", T0 + 5), "LeadSource": f("Web", T0 + 300, "IF_EMPTY")}
    after = written_times({"Title": T0 + 10}, fields, ["LastName", "Title", "LeadSource", "Id"])
    # a fill (if_empty) is no newer value; a time never goes back; names not sent do not count
    assert after == {"LastName": T0 + 200, "Title": T0 + 10}
    assert written_times(after, fields, ["Email"]) == after


def test_the_record_clock_moved_on_in_place_is_what_written_times_gives() -> None:
    fields = {"LastName": f("New", T0 + 200), "Title": f("Old", T0 + 5), "LeadSource": f("Web", T0 + 300, "IF_EMPTY")}
    for before in ({}, {"Title": T0 + 10}, {"LastName": T0 + 500, "Email": T0}):
        sent = ["LastName", "Title", "LeadSource", "Id"]
        clock = dict(before)
        advance_written(clock, fields, sent)
        assert clock == written_times(before, fields, sent)


def test_the_fields_kept_and_their_values_come_in_one_pass_as_drop_older_keeps_them() -> None:
    fields = {"LastName": f("Older", T0 + 50), "Title": f(None, T0 + 10), "Email": f("a@x.org", T0 + 1)}
    for written in ({}, {"LastName": T0 + 100, "Title": T0 + 10}, {"Other": T0 + 999}, {"Email": T0 + 2}):
        kept, values = kept_values(fields, written)
        assert kept == drop_older(fields, written)
        assert list(values.items()) == [(name, fv["value"]) for name, fv in kept.items()]
        assert (kept is fields) == (drop_older(fields, written) is fields)  # not a copy when none is left out


def test_nothing_older_than_the_record_clock_means_the_fields_as_they_are_not_a_copy() -> None:
    fields = {"LastName": f("New", T0 + 200), "Title": f("CTO", T0 + 10)}
    assert drop_older(fields, {"LastName": T0 + 200, "Email": T0 + 999}) is fields
    assert drop_older(fields, {}) is fields


# ---------------------------------------------------------------------- query chunk sizes
def test_a_key_value_costs_in_a_query_chunk_exactly_the_length_of_its_url_quoted_text() -> None:
    texts = [
        "",
        "'ada.lovelace+1@example.org'",
        "'O\\'Brien & Sons, 50% off ~ #1'",
        "'Zoë Ångström — 東京 🚀'",
        "".join(chr(c) for c in range(1, 0x300)),
        "2026-12-07T10:15:36.419+0000",
    ]
    for text in texts:
        assert _url_length(text) == len(quote(text, safe="")), text
    with pytest.raises(UnicodeEncodeError):
        _url_length("\ud800")  # as quote refuses a lone surrogate
