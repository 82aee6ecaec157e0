"""Adversarial values into the SOQL and SOSL builders (``sfsync.salesforce.soql``), run by the emulator's
query engines: a value is always searched for as written.

The property is a round trip: records are stored with a value (and decoys around it: the injection
``' OR Name != '``, the value with a character more or less, in another case), the builder's query for
that value is parsed and run by the emulator (``sfsync.emulator.soql`` / ``sosl``), and exactly the
records holding that value come back. A value the escaping got wrong would fail to parse, or match
other records, or miss its own. Names are never escaped, so a builder refuses any that is not one.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from hypothesis import assume, given
from hypothesis import strategies as st

from sfsync.emulator.soql import run_query
from sfsync.emulator.sosl import run_search
from sfsync.salesforce.soql import (
    chunk_in,
    field_name,
    like_pattern,
    literal,
    select,
    sosl_find,
)
from tests.kit.query_org import NOW, Org, build_schema, make_id

SCHEMA = build_schema()
INJECTIONS = [
    "' OR Name != '", "' OR LastName != null OR LastName = '", "\\' OR Id != null --", "x') OR (Name != 'x",
    "%", "_", "\\%", "\\_", "\\", "\\\\", "'", "''", '"', "\n", "\r\n", "\t", "\\n", "\\u0041", "\u00a0", "é",
    "ß", "İ", "💥", "SELECT Id FROM Contact", "LIMIT 1", "null", "NULL", "true", "{", "}", "*", "?", "AND", "OR",
    "NOT", "a:b", "x\x00y",
]  # fmt: skip
values = st.one_of(
    st.text(min_size=1, max_size=40),
    st.sampled_from(INJECTIONS),
    st.lists(st.sampled_from(INJECTIONS) | st.text(max_size=3), min_size=1, max_size=5).map("".join),
).filter(lambda v: v != "")


def org_with(stored: list[str]) -> tuple[Org, dict[str, str]]:
    """An org whose Contacts have these last names (and names): Id -> last name."""
    org = Org(SCHEMA)
    ids = {}
    for n, value in enumerate(stored):
        record_id = org.add("Contact", Id=make_id("003", n + 1), LastName=value, Name=value)
        ids[record_id] = value
    return org, ids


def decoys(value: str) -> list[str]:
    return [value + "x", "x" + value, value[:-1] or "y", value.upper(), value.lower(), *INJECTIONS[:4], "Acme"]


def ids_of(org: Org, soql: str) -> set[str]:
    return {r["Id"] for r in run_query(org, soql, include_deleted=False, api_version="62.0", now=NOW).records}


@given(value=values)
def test_a_value_compared_with_equals_finds_exactly_the_records_holding_it(value: str) -> None:
    org, stored = org_with([value, *decoys(value)])
    soql = str(select("Id").from_("Contact").where("LastName", "=", value))

    found = ids_of(org, soql)

    assert found == {i for i, v in stored.items() if v.casefold() == value.casefold()}  # text compares ignore case
    assert next(iter(stored)) in found


@given(wanted=st.lists(values, min_size=1, max_size=6))
def test_values_in_an_in_list_find_exactly_the_records_holding_one(wanted: list[str]) -> None:
    org, stored = org_with([*wanted, *decoys(wanted[0])])
    folded = {v.casefold() for v in wanted}
    found: set[str] = set()
    for clause in chunk_in("LastName", wanted, max_chars=1_000):
        found |= ids_of(org, f"SELECT Id FROM Contact WHERE {clause}")

    assert found == {i for i, v in stored.items() if v.casefold() in folded}


@given(value=values, prefix=st.booleans(), suffix=st.booleans())
def test_a_like_pattern_matches_its_value_verbatim(value: str, prefix: bool, suffix: bool) -> None:
    org, stored = org_with([value, *decoys(value)])
    soql = f"SELECT Id FROM Contact WHERE LastName LIKE {like_pattern(value, prefix=prefix, suffix=suffix)}"
    verbatim = re.compile(("(?s:.*)" if prefix else "") + re.escape(value) + ("(?s:.*)" if suffix else ""), re.I)

    found = ids_of(org, soql)

    assert found == {i for i, v in stored.items() if verbatim.fullmatch(v)}
    assert next(iter(stored)) in found


@given(
    number=st.one_of(
        st.integers(-(2**53), 2**53),
        st.floats(allow_nan=False, allow_infinity=False, width=64).filter(lambda f: abs(f) < 1e18),
        st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**12), max_value=10**12),
    )
)
def test_a_number_literal_finds_the_record_holding_that_number(number: float | int | Decimal) -> None:
    org = Org(SCHEMA)
    target = org.add("Contact", Id=make_id("003", 1), LastName="n", Score__c=float(number))
    org.add("Contact", Id=make_id("003", 2), LastName="m", Score__c=float(number) + 1.0 if math.isfinite(number) else 0)
    soql = f"SELECT Id FROM Contact WHERE Score__c = {literal(number)}"

    assert target in ids_of(org, soql)


NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")


@given(name=st.one_of(st.text(max_size=20), st.from_regex(NAME, fullmatch=True).map(lambda n: n + "\n")))
def test_a_field_name_is_accepted_only_when_it_is_one(name: str) -> None:
    try:
        accepted = field_name(name)
    except ValueError as exc:
        refused = str(exc)
    else:
        assert accepted == name and NAME.fullmatch(name)
        return
    assert repr(name) in refused


@given(name=st.one_of(st.text(max_size=20), st.from_regex(NAME, fullmatch=True).map(lambda n: n + "\n")))
def test_a_query_is_built_only_from_names_that_are_names(name: str) -> None:
    for build in (
        lambda: select(name).from_("Contact"),
        lambda: select("Id").from_(name),
        lambda: select("Id").from_("Contact").where(name, "=", "x"),
        lambda: select("Id").from_("Contact").order_by(name),
        lambda: sosl_find("term", returning=[(name, ["Id"])]),
        lambda: sosl_find("term", returning=[("Contact", [name])]),
    ):
        try:
            built = str(build())
        except ValueError:
            continue
        assert name in built and NAME.fullmatch(name.strip()), built


SOSL_OPERATORS = {"and", "or", "not"}


@given(
    term=st.one_of(
        st.text(min_size=2, max_size=20),
        st.lists(st.sampled_from([*INJECTIONS, "and", "Or", "NOT", "x", "y"]), min_size=1, max_size=4).map(" ".join),
    )
)
def test_a_search_term_finds_the_records_holding_it(term: str) -> None:
    words = term.split()
    literal_chars = "".join(words)
    assume(len(literal_chars) >= 2 and words)  # SOSL refuses a term of one character
    org, stored = org_with([term, "Acme", "' OR Name != '"])
    sosl = sosl_find(term, in_="NAME", returning=[("Contact", ["Id"])])

    found = {r["Id"] for r in run_search(org, sosl, api_version="62.0", now=NOW)["searchRecords"]}

    assert next(iter(stored)) in found
