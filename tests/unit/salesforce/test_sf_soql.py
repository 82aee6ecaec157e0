"""SOQL/SOSL text safety: escaping, literals, IN chunking and the builder (with property-style checks)."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import quote

import pytest

from sfsync.emulator.sosl import run_search
from sfsync.salesforce.soql import (
    DateLiteral,
    chunk_in,
    chunk_values,
    cond,
    escape,
    field_name,
    format_datetime,
    like_pattern,
    literal,
    select,
    soql_in,
    sosl_escape,
    sosl_find,
)
from tests.kit.query_org import NOW, Org, build_schema, make_id

ALPHABET = "abcXYZ019 '\"\\\n\r\t\b\f%_?&|!{}[]()^~*:+-é😀"
UNESCAPES = {"\\\\": "\\", "\\'": "'", '\\"': '"', "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\b": "\b", "\\f": "\f"}


def unquote_soql(text: str) -> str:
    """A tiny SOQL string-literal reader, independent of the escaper under test."""
    assert text[0] == "'" and text[-1] == "'"
    body, out, i = text[1:-1], [], 0
    while i < len(body):
        if body[i] == "\\":
            out.append(UNESCAPES[body[i : i + 2]])
            i += 2
        else:
            assert body[i] != "'", "unescaped quote would end the literal"
            out.append(body[i])
            i += 1
    return "".join(out)


def random_strings(n: int = 500, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24))) for _ in range(n)]


@pytest.mark.parametrize("value", random_strings())
def test_string_literal_round_trips_and_never_breaks_out(value):
    rendered = literal(value)
    assert unquote_soql(rendered) == value
    assert "\n" not in rendered and "\r" not in rendered


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("Bob's BBQ", "Bob\\'s BBQ"),
        ("back\\slash", "back\\\\slash"),
        ('say "hi"', 'say \\"hi\\"'),
        ("line\nbreak", "line\\nbreak"),
        ("tab\there", "tab\\there"),
        ("\\'", "\\\\\\'"),
        ("50%_off", "50%_off"),  # % and _ only matter in LIKE
    ],
)
def test_escape_examples(raw, escaped):
    assert escape(raw) == escaped


def test_injection_attempt_stays_inside_the_literal():
    hostile = "x' OR Name != '"
    q = select("Id").from_("Contact").where("Email", "=", hostile)
    assert str(q) == "SELECT Id FROM Contact WHERE Email = 'x\\' OR Name != \\''"


def test_like_pattern_escapes_wildcards():
    assert like_pattern("50%_off", suffix=True) == "'50\\%\\_off%'"
    assert like_pattern("a'b", prefix=True, suffix=True) == "'%a\\'b%'"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (42, "42"),
        (1.5, "1.5"),
        (Decimal("10.50"), "10.50"),
        (date(2024, 1, 31), "2024-01-31"),
        (datetime(2024, 1, 31, 12, 0, tzinfo=UTC), "2024-01-31T12:00:00Z"),
        (datetime(2024, 1, 31, 12, 0, 0, 123456, tzinfo=UTC), "2024-01-31T12:00:00.123Z"),
        (datetime(2024, 1, 31, 14, 0, tzinfo=timezone(timedelta(hours=2))), "2024-01-31T12:00:00Z"),
        (DateLiteral("LAST_N_DAYS", 30), "LAST_N_DAYS:30"),
        (DateLiteral("TODAY"), "TODAY"),
    ],
)
def test_literals(value, expected):
    assert literal(value) == expected


def test_naive_datetimes_and_non_finite_numbers_are_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        format_datetime(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="NaN"):
        literal(float("nan"))
    with pytest.raises(ValueError, match="NaN"):
        literal(Decimal("Infinity"))
    with pytest.raises(TypeError):
        literal(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="date literal"):
        DateLiteral("TODAY; DELETE")


@pytest.mark.parametrize("bad", ["Email; DROP", "Name'", "1abc", "a b", "", "Account..Name", "x)"])
def test_field_names_are_validated(bad):
    with pytest.raises(ValueError, match="field name"):
        field_name(bad)
    with pytest.raises(ValueError, match="select item"):
        select(bad)


@pytest.mark.parametrize("bad", ["Email\n", "Account.Name\n"])
def test_a_name_with_a_trailing_newline_is_no_name(bad):
    with pytest.raises(ValueError, match="field name"):
        field_name(bad)
    with pytest.raises(ValueError, match="field name"):
        select("Id").from_("Contact").where(bad, "=", "x")
    with pytest.raises(ValueError, match="select item"):
        select(bad)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1e16, "10000000000000000.0"), (4.867802398434799e16, "48678023984347990.0"), (1e-05, "0.00001"),
     (-2.5e-7, "-0.00000025"), (1.0, "1.0"), (123456.789, "123456.789")],
)  # fmt: skip
def test_a_float_literal_is_written_out_without_an_exponent(value, expected):
    assert literal(value) == expected  # SOQL has no exponent notation: 1e+16 is a MALFORMED_QUERY
    assert float(expected) == value


def test_select_accepts_paths_and_aggregates():
    q = select("Id", "Account.Owner.Name", "Ext__c", "COUNT(Id) n", "COUNT()").from_("Contact")
    assert str(q).startswith("SELECT Id, Account.Owner.Name, Ext__c, COUNT(Id) n, COUNT() FROM Contact")


def test_soql_in_deduplicates_and_keeps_order():
    assert soql_in("Email", ["b@x.org", "a@x.org", "b@x.org"]) == "Email IN ('b@x.org', 'a@x.org')"
    assert soql_in("Id", ["001"], negate=True) == "Id NOT IN ('001')"
    with pytest.raises(ValueError, match="at least one"):
        soql_in("Email", [])


@pytest.mark.parametrize("seed", range(10))
def test_chunks_cover_everything_once_and_respect_the_budget(seed):
    rng = random.Random(seed)
    values = [f"user{rng.randint(0, 400)}'{'x' * rng.randint(0, 40)}@example.org" for _ in range(600)]
    budget = rng.choice([200, 1000, 4000])
    max_items = rng.choice([None, 7, 100])
    clauses = list(chunk_in("Email", values, max_chars=budget, max_items=max_items))
    seen: list[str] = []
    for clause in clauses:
        inner = clause[len("Email IN (") : -1]
        assert len(quote(inner, safe="")) <= budget
        items = re.findall(r"'(?:[^'\\]|\\.)*'", inner)
        if max_items is not None:
            assert len(items) <= max_items
        seen += [unquote_soql(i) for i in items]
    assert seen == list(dict.fromkeys(values))


def test_chunk_refuses_a_value_larger_than_the_budget():
    with pytest.raises(ValueError, match="exceeds"):
        list(chunk_values(["x" * 500], max_chars=100))


def test_builder_renders_a_poller_query():
    since = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
    q = (
        select("Id", "Email", "SystemModstamp")
        .from_("Contact")
        .where("SystemModstamp", ">=", since)
        .where(cond("Email", "!=", None) & (cond("LeadSource", "=", "Web") | ~cond("IsDeleted", "=", True)))
        .where("Id", "IN", ["003A", "003B"])
        .order_by("SystemModstamp")
        .order_by("Id", "DESC", nulls="LAST")
        .limit(200)
        .offset(10)
    )
    assert str(q) == (
        "SELECT Id, Email, SystemModstamp FROM Contact WHERE SystemModstamp >= 2024-05-01T00:00:00Z AND "
        "(Email != null AND (LeadSource = 'Web' OR (NOT IsDeleted = true))) AND Id IN ('003A', '003B') "
        "ORDER BY SystemModstamp ASC, Id DESC NULLS LAST LIMIT 200 OFFSET 10"
    )


def test_builder_is_immutable_and_validates():
    base = select("Id").from_("Lead")
    narrowed = base.where("Email", "=", "a@b.c")
    assert str(base) == "SELECT Id FROM Lead"
    assert "WHERE" in str(narrowed)
    with pytest.raises(ValueError, match="from_"):
        select("Id").build()
    with pytest.raises(ValueError, match="sObject name"):
        base.from_("Lead; x")
    with pytest.raises(ValueError, match="LIMIT"):
        base.limit(-1)
    with pytest.raises(ValueError, match="OFFSET"):
        base.offset(2001)
    with pytest.raises(ValueError, match="operator"):
        cond("Email", "==", "x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cond("Email", "IN", "not-a-list")
    with pytest.raises(TypeError):
        cond("Email", "=", ["a"])
    assert str(cond("Tags__c", "INCLUDES", ["a;b", "c"])) == "Tags__c INCLUDES ('a;b', 'c')"


@pytest.mark.parametrize("char", list("?&|!{}[]()^~*:\\\"'+-"))
def test_sosl_reserved_characters_are_escaped(char):
    assert sosl_escape(f"a{char}b") == f"a\\{char}b"


def test_sosl_leaves_ordinary_characters_and_builds_find():
    assert sosl_escape("john.doe@example.com") == "john.doe@example.com"
    assert sosl_find("o'neil+1@x.org", in_="EMAIL", returning=[("Contact", ["Id", "Email"]), ("Lead", [])]) == (
        "FIND {o\\'neil\\+1@x.org} IN EMAIL FIELDS RETURNING Contact(Id, Email), Lead"
    )
    with pytest.raises(ValueError, match="sObject name"):
        sosl_find("x", returning=[("Contact)", ["Id"])])


@pytest.mark.parametrize(
    ("term", "escaped"),
    [("and", '"and"'), ("Rock AND Roll", 'Rock "AND" Roll'), ("not Or", '"not" "Or"'), ("android", "android")],
)
def test_sosl_operator_words_in_a_term_are_quoted_so_they_are_searched_for(term, escaped):
    assert sosl_escape(term) == escaped  # unquoted, NOT x would exclude x and a lone AND is a syntax error


def test_a_term_with_an_operator_word_finds_the_record_holding_it_in_the_emulated_org():
    org = Org(build_schema())
    wanted = org.add("Contact", Id=make_id("003", 1), LastName="Not Guilty", Name="Not Guilty")
    org.add("Contact", Id=make_id("003", 2), LastName="Guilty", Name="Guilty")
    sosl = sosl_find("Not Guilty", in_="NAME", returning=[("Contact", ["Id"])])
    assert [r["Id"] for r in run_search(org, sosl, api_version="62.0", now=NOW)["searchRecords"]] == [wanted]


@pytest.mark.parametrize("value", random_strings(200, seed=11))
def test_sosl_escape_property_no_bare_reserved_char(value):
    out = sosl_escape(value)
    i = 0
    while i < len(out):
        if out[i] == "\\":
            assert out[i + 1] in "?&|!{}[]()^~*:\\\"'+-"
            i += 2
        else:
            assert out[i] not in "?&|!{}[]()^~*:\\\"'+-"
            i += 1
