"""SOQL: grammar, literals, filters, relationships, aggregates, ordering, errors, against the query engines' small org
(tests/kit/query_org.py)."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest

from sfsync.emulator.errors import ApiError
from sfsync.emulator.soql import QueryResult, normalize_id, parse_query, run_query
from tests.kit import recorded_json
from tests.kit.query_org import IDS, NOW, Org, build_org, build_schema, make_id


@pytest.fixture(scope="module")
def org() -> Org:
    return build_org()


def q(org: Org, soql: str, *, include_deleted: bool = False, now: dt.datetime = NOW) -> QueryResult:
    return run_query(org, soql, include_deleted=include_deleted, api_version="59.0", now=now)


def names(org: Org, soql: str, field: str = "Name", **kw: Any) -> list[Any]:
    return [r[field] for r in q(org, soql, **kw).records]


def error(org: Org, soql: str, **kw: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        q(org, soql, **kw)
    assert caught.value.status == 400
    return caught.value


def skeleton(value: Any) -> Any:
    """The shape of a JSON value: keys and nesting, leaves reduced to their JSON type."""
    if isinstance(value, dict):
        return {k: skeleton(v) for k, v in value.items() if k != "url"}
    if isinstance(value, list):
        return [skeleton(v) for v in value[:1]]
    if value is None:
        return None
    return "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__


# ---------------------------------------------------------------------------------------------------------------------
# Record shape


def test_record_shape_attributes_order_and_canonical_casing(org: Org) -> None:
    result = q(org, "select lastname, ID, email from CONTACT where email = 'ANN@example.com'")
    assert result.total_size == 1
    record = result.records[0]
    assert list(record) == ["attributes", "LastName", "Id", "Email"]
    assert record["attributes"] == {"type": "Contact", "url": f"/services/data/v59.0/sobjects/Contact/{IDS['c1']}"}
    assert record["LastName"] == "Alpha"


def test_values_are_json_ready(org: Org) -> None:
    record = q(
        org, f"SELECT CreatedDate, Birthdate, HasOptedOutOfEmail, Score__c FROM Contact WHERE Id = '{IDS['c1']}'"
    ).records[0]
    assert record["CreatedDate"] == "2026-11-25T09:00:00.000+0000"
    assert record["Birthdate"] == "1990-05-01"
    assert record["HasOptedOutOfEmail"] is False
    assert record["Score__c"] == 1.5
    json.dumps(record)


def test_parent_paths_nest_with_attributes_and_null_lookups(org: Org) -> None:
    records = q(
        org,
        "SELECT Name, Account.Name, Account.Owner.Name, Account.Industry FROM Contact "
        "WHERE LastName IN ('Alpha', 'Gamma', 'Epsilon') ORDER BY LastName",
    ).records
    ann, eve, carol = records
    assert ann["Account"] == {
        "attributes": {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{IDS['a1']}"},
        "Name": "Acme",
        "Owner": {
            "attributes": {"type": "User", "url": f"/services/data/v59.0/sobjects/User/{IDS['u1']}"},
            "Name": "Uma User",
        },
        "Industry": "Tech",
    }
    assert list(ann["Account"]) == ["attributes", "Name", "Owner", "Industry"]
    assert eve["Account"]["Owner"] is None  # Initech has no owner
    assert eve["Account"]["Name"] == "Initech"
    assert carol["Account"] is None  # no account at all


def test_custom_relationships_match_restforce_fixture_shape(org: Org) -> None:
    fixture = recorded_json("restforce_query_relationships.json")["records"][0]
    record = q(
        org,
        "SELECT Name, ParentWhizbang__r.Name, ParentWhizbang__r.Text_Label__c, "
        "(SELECT Name FROM Whizbangs__r) FROM Whizbang__c WHERE Name = 'Child Whizbang'",
    ).records[0]
    assert record["ParentWhizbang__r"]["Name"] == "Parent Whizbang"
    assert record["ParentWhizbang__r"]["Text_Label__c"] == "Hello"
    assert record["Whizbangs__r"] is None
    parent = q(
        org, "SELECT Name, (SELECT Name FROM Whizbangs__r) FROM Whizbang__c WHERE Name = 'Parent Whizbang'"
    ).records[0]
    assert skeleton(parent["Whizbangs__r"]) == skeleton(fixture["Whizbangs__r"])
    assert parent["Whizbangs__r"]["records"][0]["Name"] == "Child Whizbang"
    assert set(skeleton(record["ParentWhizbang__r"])) == {"attributes", "Name", "Text_Label__c"}


def test_child_subquery_matches_cci_fixture(org: Org) -> None:
    fixture = recorded_json("cci_query_parent_to_child_subquery.json")
    result = q(org, "select FirstName,(select Name from Opportunities) from Contact")
    assert result.total_size == 5
    by_name = {r["FirstName"]: r for r in result.records}
    assert by_name["Ann"]["Opportunities"] is None
    with_children = next(r for r in fixture["records"] if r["Opportunities"] is not None)
    without = fixture["records"][0]
    assert skeleton(by_name["Dan"]) == skeleton(with_children)
    assert skeleton(by_name["Ann"]) == skeleton(without)
    assert by_name["Dan"]["Opportunities"]["records"][0]["Name"] == "Illusional Opportunity"
    assert by_name["Eve"]["Opportunities"]["totalSize"] == 2


def test_child_subquery_where_order_limit(org: Org) -> None:
    record = q(
        org,
        "SELECT Name, (SELECT LastName, Email FROM Contacts WHERE Email != null "
        "ORDER BY LastName DESC LIMIT 1) FROM Account WHERE Name = 'Acme'",
    ).records[0]
    contacts = record["Contacts"]
    assert contacts["totalSize"] == 1 and contacts["done"] is True
    assert [c["LastName"] for c in contacts["records"]] == ["Beta"]
    assert contacts["records"][0]["attributes"]["type"] == "Contact"
    # deleted children stay hidden unless queryAll
    everyone = q(org, "SELECT (SELECT LastName FROM Contacts) FROM Account WHERE Name = 'Acme'").records[0]
    assert everyone["Contacts"]["totalSize"] == 2
    with_deleted = q(
        org, "SELECT (SELECT LastName FROM Contacts) FROM Account WHERE Name = 'Acme'", include_deleted=True
    ).records[0]
    assert with_deleted["Contacts"]["totalSize"] == 3


def test_polymorphic_owner_and_typeof(org: Org) -> None:
    owners = {r["Name"]: r["Owner"] for r in q(org, "SELECT Name, Owner.Name FROM Lead").records}
    assert owners["Liam Lead"]["attributes"]["type"] == "User"
    assert owners["Queue Owned"]["attributes"]["type"] == "Group"
    assert owners["Queue Owned"]["Name"] == "Queue One"
    records = q(
        org,
        "SELECT Subject, TYPEOF What WHEN Account THEN Name, Phone WHEN Campaign THEN Name, IsActive "
        "END, TYPEOF Who WHEN Contact THEN Email ELSE Name END FROM Task ORDER BY Subject",
    ).records
    call, email, plan = records
    assert call["What"] == {
        "attributes": {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{IDS['a1']}"},
        "Name": "Acme",
        "Phone": "(415) 555-0100",
    }
    assert call["Who"]["Email"] == "ann@example.com"
    assert email["What"] is None
    assert email["Who"] == {
        "attributes": {"type": "Lead", "url": f"/services/data/v59.0/sobjects/Lead/{IDS['l1']}"},
        "Name": "Liam Lead",
    }
    assert plan["What"]["IsActive"] is True and plan["Who"] is None


def test_object_alias_prefix(org: Org) -> None:
    assert names(org, "SELECT c.Name, c.Account.Name FROM Contact c WHERE c.LastName = 'Alpha'") == ["Ann Alpha"]


def test_fields_functions(org: Org) -> None:
    record = q(org, f"SELECT FIELDS(ALL) FROM Account WHERE Id = '{IDS['a1']}' LIMIT 200").records[0]
    assert set(record) - {"attributes"} == {f.name for f in org.schema.objects["account"].fields.values()}
    custom = q(org, "SELECT FIELDS(CUSTOM) FROM Account LIMIT 1").records[0]
    assert list(custom) == ["attributes", "Rating__c"]
    standard = q(org, "SELECT FIELDS(STANDARD) FROM Account").records[0]
    assert "Rating__c" not in standard and "Name" in standard
    err = error(org, "SELECT FIELDS(ALL) FROM Account")
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message.endswith("The SOQL FIELDS function must have a LIMIT of at most 200")


# ---------------------------------------------------------------------------------------------------------------------
# COUNT and aggregates


def test_count_returns_total_and_no_records(org: Org) -> None:
    fixture = recorded_json("cci_composite_count_and_invalid_type.json")
    body = fixture["compositeResponse"][0]["body"]
    result = q(org, "select count() from Account")
    assert result.total_size == 6
    assert result.records == body["records"] == []
    assert q(org, "SELECT COUNT() FROM Account", include_deleted=True).total_size == 7
    assert q(org, "SELECT COUNT() FROM Contact WHERE AccountId = null").total_size == 1
    assert q(org, "SELECT COUNT() FROM Account LIMIT 4").total_size == 4


def test_count_id_matches_cci_fixture_exactly(org: Org) -> None:
    fixture = recorded_json("cci_query_count_id_aggregate.json")
    result = q(org, "select count(Id) from Account")
    assert result.total_size == fixture["totalSize"]
    assert result.records == fixture["records"]


def test_group_by_sum_matches_restforce_fixture_shape(org: Org) -> None:
    fixture = recorded_json("restforce_query_group_by_aggregate.json")
    result = q(org, "SELECT CampaignId, SUM(Amount) FROM Opportunity GROUP BY CampaignId")
    assert result.total_size == 3
    assert [list(r) for r in result.records] == [list(r) for r in fixture["records"]]
    assert {r["CampaignId"]: r["expr0"] for r in result.records} == {IDS["cp1"]: 300.0, IDS["cp2"]: 100.0, None: 400.0}
    assert all("url" not in r["attributes"] for r in result.records)


def test_aggregate_functions_aliases_and_expr_numbering(org: Org) -> None:
    record = q(
        org,
        "SELECT Industry, COUNT(Id) n, MIN(AnnualRevenue), MAX(Name), AVG(AnnualRevenue), "
        "COUNT_DISTINCT(Name) names, SUM(NumberOfEmployees) FROM Account WHERE Industry = 'Tech' "
        "GROUP BY Industry",
    ).records[0]
    assert record == {
        "attributes": {"type": "AggregateResult"},
        "Industry": "Tech",
        "n": 3,
        "expr0": 250.0,
        "expr1": "Initech",
        "expr2": 375.0,
        "names": 3,
        "expr3": 55,
    }
    empty = q(org, "SELECT COUNT(Id), MAX(Name) FROM Account WHERE Name = 'nobody'")
    assert empty.records == [{"attributes": {"type": "AggregateResult"}, "expr0": 0, "expr1": None}]


def test_having_and_order_by_aggregate(org: Org) -> None:
    result = q(
        org,
        "SELECT Industry, COUNT(Id) total FROM Account GROUP BY Industry HAVING COUNT(Id) > 1 ORDER BY COUNT(Id) DESC",
    )
    assert [(r["Industry"], r["total"]) for r in result.records] == [("Tech", 3), ("Energy", 2)]
    grouped = q(org, "SELECT Industry FROM Account GROUP BY Industry ORDER BY Industry NULLS LAST")
    assert [r["Industry"] for r in grouped.records] == ["Energy", "Tech", None]
    assert q(org, "SELECT COUNT() FROM Account GROUP BY Industry").total_size == 3


def test_group_by_relationship_field_uses_leaf_name(org: Org) -> None:
    result = q(
        org,
        "SELECT Account.Name, COUNT(Id) FROM Contact WHERE AccountId != null GROUP BY Account.Name "
        "ORDER BY Account.Name",
    )
    assert [(r["Name"], r["expr0"]) for r in result.records] == [("Acme", 2), ("Globex", 1), ("Initech", 1)]


def test_group_by_date_function(org: Org) -> None:
    result = q(
        org,
        "SELECT CALENDAR_YEAR(CreatedDate), COUNT(Id) n FROM Contact GROUP BY CALENDAR_YEAR(CreatedDate) "
        "ORDER BY CALENDAR_YEAR(CreatedDate)",
    )
    assert [(r["expr0"], r["n"]) for r in result.records] == [(2025, 1), (2026, 4)]


def test_ungrouped_field_is_rejected(org: Org) -> None:
    err = error(org, "SELECT Name, COUNT(Id) FROM Account")
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message == (
        "\nSELECT Name, COUNT(Id) FROM Account\n       ^\nERROR at Row:1:Column:8\n"
        "Field must be grouped or aggregated: Name"
    )


# ---------------------------------------------------------------------------------------------------------------------
# WHERE


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("LastName = 'alpha'", ["Alpha"]),
        ("LastName != 'Alpha'", ["Beta", "Delta", "Epsilon", "Gamma"]),
        ("LastName <> 'Alpha'", ["Beta", "Delta", "Epsilon", "Gamma"]),
        ("LastName < 'c'", ["Alpha", "Beta"]),
        ("LastName <= 'delta'", ["Alpha", "Beta", "Delta"]),
        ("LastName > 'Delta'", ["Epsilon", "Gamma"]),
        ("LastName >= 'delta'", ["Delta", "Epsilon", "Gamma"]),
        ("Score__c > 1", ["Alpha", "Gamma"]),
        ("Score__c >= 1.5", ["Alpha", "Gamma"]),
        ("Score__c < -1", ["Beta"]),
        ("Score__c = -2", ["Beta"]),
        ("Score__c = null", ["Delta", "Epsilon"]),
        ("Email != null", ["Alpha", "Beta", "Epsilon", "Gamma"]),
        ("Email = null", ["Delta"]),
        ("Email != 'ann@example.com'", ["Beta", "Delta", "Epsilon", "Gamma"]),  # nulls count as "not equal"
        ("HasOptedOutOfEmail = TRUE", ["Beta"]),
        ("HasOptedOutOfEmail = false", ["Alpha", "Delta", "Epsilon", "Gamma"]),
        ("Email LIKE '%@example.com'", ["Alpha", "Beta", "Epsilon", "Gamma"]),
        ("FirstName LIKE 'CAR%'", ["Gamma"]),
        ("FirstName LIKE '_ob'", ["Beta"]),
        ("FirstName LIKE 'b'", []),
        ("Description LIKE '50\\% off\\_now'", ["Epsilon"]),
        ("Description LIKE '50\\%%'", ["Epsilon"]),
        ("LastName IN ('alpha', 'BETA', 'nobody')", ["Alpha", "Beta"]),
        ("LastName NOT IN ('Alpha', 'Beta')", ["Delta", "Epsilon", "Gamma"]),
        ("Email IN ('ann@example.com', null)", ["Alpha", "Delta"]),
        ("Interests__c INCLUDES ('golf')", ["Alpha", "Delta"]),
        ("Interests__c INCLUDES ('tennis;golf', 'chess')", ["Alpha", "Delta"]),
        ("Interests__c EXCLUDES ('golf')", ["Beta", "Epsilon", "Gamma"]),
        ("Interests__c = 'TENNIS;golf'", ["Alpha"]),
        ("Account.Name = 'Acme'", ["Alpha", "Beta"]),
        ("Account.Owner.Name LIKE 'Victor%'", ["Delta"]),
        ("(LastName = 'Alpha' OR LastName = 'Beta') AND HasOptedOutOfEmail = false", ["Alpha"]),
        ("LastName = 'Alpha' OR LastName = 'Beta' OR Email = null", ["Alpha", "Beta", "Delta"]),
        ("NOT (LastName = 'Alpha' OR Email = null)", ["Beta", "Epsilon", "Gamma"]),
        ("NOT LastName = 'Alpha'", ["Beta", "Delta", "Epsilon", "Gamma"]),
        ("((Score__c > 0) AND (NOT (Email LIKE 'c%')))", ["Alpha"]),
        ("CALENDAR_YEAR(CreatedDate) = 2025", ["Epsilon"]),
        ("CALENDAR_MONTH(CreatedDate) = 10 AND DAY_IN_MONTH(CreatedDate) = 10", ["Delta"]),
        ("DAY_ONLY(CreatedDate) = 2026-11-24", ["Beta"]),
    ],
)
def test_where_operators(org: Org, where: str, expected: list[str]) -> None:
    assert names(org, f"SELECT LastName FROM Contact WHERE {where} ORDER BY LastName", "LastName") == expected


def test_string_escapes(org: Org) -> None:
    assert names(
        org, "SELECT LastName FROM Contact WHERE Description = 'O\\'Brien said \\\"hi\\\" \\\\ bye'", "LastName"
    ) == ["Gamma"]
    org2 = build_org()
    org2.add("Account", Id=make_id("001", 900), Name="a\nb\tc\rd\be\ff\u00e9")
    assert names(org2, "SELECT Name FROM Account WHERE Name = 'a\\nb\\tc\\rd\\be\\ff\\u00e9'") == [
        "a\nb\tc\rd\be\ff\u00e9"
    ]
    err = error(org, "SELECT Id FROM Contact WHERE LastName = 'a\\qb'")
    assert err.error_code == "MALFORMED_QUERY"
    assert "Illegal character sequence '\\q' in string literal." in err.message


def test_an_escaped_backslash_before_a_like_wildcard_is_a_backslash_and_the_wildcard_stays_one(org: Org) -> None:
    # '%\\%' is: anything, a backslash, anything (not "anything, then a literal %": the \\ escape is done)
    assert names(org, "SELECT LastName FROM Contact WHERE Description LIKE '%\\\\%'", "LastName") == ["Gamma"]
    assert names(org, "SELECT LastName FROM Contact WHERE Description LIKE '%\\\\ b_e'", "LastName") == ["Gamma"]
    assert names(org, "SELECT LastName FROM Contact WHERE Description LIKE '50\\%%'", "LastName") == ["Epsilon"]


def test_semi_join_and_anti_join(org: Org) -> None:
    soql = (
        "SELECT LastName FROM Contact WHERE Id {} (SELECT ContactId FROM CampaignMember WHERE Status = 'Sent') "
        "ORDER BY LastName"
    )
    assert names(org, soql.format("IN"), "LastName") == ["Alpha", "Beta"]
    assert names(org, soql.format("NOT IN"), "LastName") == ["Delta", "Epsilon", "Gamma"]
    assert names(org, "SELECT Name FROM Account WHERE Id IN (SELECT AccountId FROM Contact WHERE Email LIKE 'e%')") == [
        "Initech"
    ]


def test_ids_compare_in_15_and_18_character_forms(org: Org) -> None:
    id18 = IDS["c1"]
    for literal in (id18, id18[:15], id18.lower(), id18.upper()):
        assert names(org, f"SELECT LastName FROM Contact WHERE Id = '{literal}'", "LastName") == ["Alpha"], literal
    assert names(
        org, f"SELECT LastName FROM Contact WHERE AccountId = '{IDS['a1'][:15]}' ORDER BY LastName", "LastName"
    ) == ["Alpha", "Beta"]
    assert names(
        org, f"SELECT LastName FROM Contact WHERE Id IN ('{id18[:15]}', '{IDS['c2']}') ORDER BY LastName", "LastName"
    ) == ["Alpha", "Beta"]
    # a 15-character id is case-sensitive
    assert names(org, f"SELECT LastName FROM Contact WHERE Id = '{id18[:15].lower()}'", "LastName") == []
    err = error(org, "SELECT Id FROM Contact WHERE Id = 'abc'")
    assert err.error_code == "INVALID_QUERY_FILTER_OPERATOR"
    assert err.message.endswith("ERROR at Row:1:Column:35\ninvalid ID field: abc")


def test_normalize_id() -> None:
    id18 = make_id("003", 7)
    assert normalize_id(id18) == id18[:15]
    assert normalize_id(id18.lower()) == id18[:15]
    assert normalize_id(id18[:15]) == id18[:15]


# ---------------------------------------------------------------------------------------------------------------------
# Dates


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("CreatedDate = TODAY", ["Alpha"]),
        ("CreatedDate = YESTERDAY", ["Beta"]),
        ("CreatedDate = TOMORROW", []),
        ("CreatedDate > YESTERDAY", ["Alpha"]),
        ("CreatedDate >= YESTERDAY", ["Alpha", "Beta"]),
        ("CreatedDate < YESTERDAY", ["Delta", "Epsilon", "Gamma"]),
        ("CreatedDate <= YESTERDAY", ["Beta", "Delta", "Epsilon", "Gamma"]),
        ("CreatedDate != TODAY", ["Beta", "Delta", "Epsilon", "Gamma"]),
        ("CreatedDate = THIS_WEEK", ["Alpha", "Beta"]),
        ("CreatedDate = LAST_WEEK", ["Gamma"]),
        ("CreatedDate = NEXT_WEEK", []),
        ("CreatedDate = THIS_MONTH", ["Alpha", "Beta", "Gamma"]),
        ("CreatedDate = LAST_MONTH", ["Delta"]),
        ("CreatedDate = NEXT_MONTH", []),
        ("CreatedDate = THIS_YEAR", ["Alpha", "Beta", "Delta", "Gamma"]),
        ("CreatedDate = LAST_YEAR", ["Epsilon"]),
        ("CreatedDate = LAST_N_DAYS:1", ["Alpha", "Beta"]),
        ("CreatedDate = LAST_N_DAYS:7", ["Alpha", "Beta", "Gamma"]),
        ("CreatedDate = last_n_days:60", ["Alpha", "Beta", "Delta", "Gamma"]),
        ("CreatedDate = LAST_N_HOURS:2", ["Alpha"]),
        ("CreatedDate = LAST_N_HOURS:11", ["Alpha", "Beta"]),
        ("CreatedDate = LAST_90_DAYS", ["Alpha", "Beta", "Delta", "Gamma"]),
        ("Birthdate = NEXT_N_DAYS:1", ["Gamma"]),
        ("Birthdate = YESTERDAY", ["Beta"]),
        ("Birthdate = TODAY", []),
        ("Birthdate > TODAY", ["Gamma"]),
        ("Birthdate < 2000-01-01", ["Alpha"]),
        ("Birthdate = 2026-11-24", ["Beta"]),
        ("CreatedDate >= 2026-11-24T23:30:00Z", ["Alpha", "Beta"]),
        ("CreatedDate > 2026-11-24T23:30:00Z", ["Alpha"]),
        ("CreatedDate = 2026-11-24T23:30:00.000Z", ["Beta"]),
        ("CreatedDate = 2026-11-24T23:30:00.000000Z", ["Beta"]),
        ("CreatedDate = 2026-11-25T00:30:00+01:00", ["Beta"]),
        ("CreatedDate = 2026-11-24T18:30:00-05:00", ["Beta"]),
        ("CreatedDate = 2026-11-24T18:30:00.5-0500", []),
        ("CreatedDate < 2026-01-01T00:00:00Z", ["Epsilon"]),
    ],
)
def test_date_and_datetime_literals(org: Org, where: str, expected: list[str]) -> None:
    assert names(org, f"SELECT LastName FROM Contact WHERE {where} ORDER BY LastName", "LastName") == expected


def test_weeks_start_on_sunday(org: Org) -> None:
    sunday = dt.datetime(2026, 11, 22, 8, tzinfo=dt.UTC)
    soql = "SELECT LastName FROM Contact WHERE CreatedDate = {} ORDER BY LastName"
    assert names(org, soql.format("THIS_WEEK"), "LastName", now=sunday) == ["Alpha", "Beta"]
    assert names(org, soql.format("LAST_WEEK"), "LastName", now=sunday) == ["Gamma"]
    saturday = dt.datetime(2026, 11, 28, 23, 59, tzinfo=dt.UTC)
    assert names(org, soql.format("THIS_WEEK"), "LastName", now=saturday) == ["Alpha", "Beta"]
    monday = dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)  # NEXT_N_DAYS starts tomorrow
    assert names(org, soql.format("NEXT_N_DAYS:1"), "LastName", now=monday) == ["Alpha"]


def test_date_literal_on_datetime_field_and_vice_versa_are_rejected(org: Org) -> None:
    err = error(org, "SELECT Id FROM Contact WHERE CreatedDate > 2026-01-01")
    assert err.error_code == "INVALID_FIELD"
    assert err.message.endswith(
        "value of filter criterion for field 'CreatedDate' must be of type dateTime and "
        "should not be enclosed in quotes"
    )
    err = error(org, "SELECT Id FROM Contact WHERE Birthdate > 2026-01-01T00:00:00Z")
    assert err.message.endswith("field 'Birthdate' must be of type date and should not be enclosed in quotes")
    err = error(org, "SELECT Id FROM Contact WHERE Birthdate > '2026-01-01'")
    assert err.error_code == "INVALID_FIELD"
    err = error(org, "SELECT Id FROM Contact WHERE HasOptedOutOfEmail = 'true'")
    assert err.message.endswith(
        "field 'HasOptedOutOfEmail' must be of type boolean and should not be enclosed in quotes"
    )
    err = error(org, "SELECT Id FROM Contact WHERE LastName = 5")
    assert err.message.endswith("field 'LastName' must be of type string and should be enclosed in quotes")
    err = error(org, "SELECT Id FROM Contact WHERE Score__c = '5'")
    assert err.message.endswith("field 'Score__c' must be of type double and should not be enclosed in quotes")


def test_unknown_date_literal_is_malformed(org: Org) -> None:
    err = error(org, "SELECT Id FROM Contact WHERE CreatedDate = SOMEDAY")
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message.endswith("unexpected token: 'SOMEDAY'")
    assert error(org, "SELECT Id FROM Contact WHERE CreatedDate = LAST_N_DAYS").error_code == "MALFORMED_QUERY"


# ---------------------------------------------------------------------------------------------------------------------
# ORDER BY, LIMIT, OFFSET, tolerated clauses


def test_order_by_nulls_defaults_and_explicit(org: Org) -> None:
    base = "SELECT Name FROM Account ORDER BY AnnualRevenue"
    assert names(org, base) == ["Initech", "Umbrella", "Stark", "Globex", "hooli", "Acme"]  # ASC NULLS FIRST
    assert names(org, base + " DESC") == ["Acme", "hooli", "Globex", "Stark", "Initech", "Umbrella"]  # NULLS LAST
    assert names(org, base + " ASC NULLS LAST") == ["Stark", "Globex", "hooli", "Acme", "Initech", "Umbrella"]
    assert names(org, base + " DESC NULLS FIRST") == ["Initech", "Umbrella", "Acme", "hooli", "Globex", "Stark"]


def test_order_by_several_keys_and_case_insensitive_text(org: Org) -> None:
    assert names(org, "SELECT Name FROM Account ORDER BY Industry DESC, Name") == [
        "Acme",
        "hooli",
        "Initech",
        "Globex",
        "Stark",
        "Umbrella",
    ]
    assert names(org, "SELECT Name FROM Account ORDER BY Name") == [
        "Acme",
        "Globex",
        "hooli",
        "Initech",
        "Stark",
        "Umbrella",
    ]
    assert names(org, "SELECT LastName FROM Contact ORDER BY Account.Name NULLS LAST, LastName DESC", "LastName") == [
        "Beta",
        "Alpha",
        "Delta",
        "Epsilon",
        "Gamma",
    ]


def test_limit_and_offset(org: Org) -> None:
    assert names(org, "SELECT Name FROM Account ORDER BY Name LIMIT 2") == ["Acme", "Globex"]
    result = q(org, "SELECT Name FROM Account ORDER BY Name LIMIT 2 OFFSET 3")
    assert [r["Name"] for r in result.records] == ["Initech", "Stark"] and result.total_size == 2
    assert names(org, "SELECT Name FROM Account ORDER BY Name OFFSET 5") == ["Umbrella"]
    assert names(org, "SELECT Name FROM Account OFFSET 2000") == []


def test_offset_over_2000_is_number_outside_valid_range(org: Org) -> None:
    err = error(org, "SELECT Id FROM Account OFFSET 2001")
    assert err.error_code == "NUMBER_OUTSIDE_VALID_RANGE"
    assert err.message == (
        "\nSELECT Id FROM Account OFFSET 2001\n                              ^\n"
        "ERROR at Row:1:Column:31\nMaximum SOQL offset allowed is 2000"
    )


@pytest.mark.parametrize(
    "tail", ["FOR VIEW", "FOR REFERENCE", "FOR UPDATE", "FOR VIEW, REFERENCE", "UPDATE TRACKING", "UPDATE VIEWSTAT"]
)
def test_for_and_update_clauses_are_tolerated(org: Org, tail: str) -> None:
    assert names(org, f"SELECT Name FROM Account WHERE Name = 'Acme' LIMIT 1 {tail}") == ["Acme"]


def test_using_scope_and_with_are_tolerated(org: Org) -> None:
    assert names(org, "SELECT Name FROM Account USING SCOPE Everything WHERE Name = 'Acme'") == ["Acme"]
    assert names(org, "SELECT Name FROM Account WHERE Name = 'Acme' WITH SECURITY_ENFORCED") == ["Acme"]


def test_keywords_are_case_insensitive(org: Org) -> None:
    assert names(
        org, "sElEcT Name fRoM Account wHeRe Name lIkE 'a%' AnD Industry != NuLl oRdEr By Name dEsC nUlLs LaSt LiMiT 5"
    ) == ["Acme"]


def test_multiline_query(org: Org) -> None:
    assert names(org, "SELECT Name\n  FROM Account\n WHERE Name = 'Acme'\n") == ["Acme"]
    err = error(org, "SELECT Name\nFROM Account\nWHERE Nmae = 'x'")
    assert err.message.startswith("\nWHERE Nmae = 'x'\n      ^\nERROR at Row:3:Column:7\nNo such column 'Nmae'")


# ---------------------------------------------------------------------------------------------------------------------
# Deleted rows


def test_deleted_rows_only_with_include_deleted(org: Org) -> None:
    assert "Zeta" not in names(org, "SELECT LastName FROM Contact", "LastName")
    assert "Zeta" in names(org, "SELECT LastName FROM Contact", "LastName", include_deleted=True)
    deleted = q(org, "SELECT LastName, IsDeleted FROM Contact WHERE IsDeleted = true", include_deleted=True)
    assert [(r["LastName"], r["IsDeleted"]) for r in deleted.records] == [("Zeta", True)]
    assert q(org, "SELECT LastName FROM Contact WHERE IsDeleted = true").records == []


# ---------------------------------------------------------------------------------------------------------------------
# Errors


def test_malformed_query_unexpected_token(org: Org) -> None:
    err = error(org, "SELECT Id FORM Contact")
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message == "\nSELECT Id FORM Contact\n          ^\nERROR at Row:1:Column:11\nunexpected token: 'FORM'"
    assert err.body() == [{"message": err.message, "errorCode": "MALFORMED_QUERY"}]
    # deterministic: the same text gives the same error every time
    assert error(org, "SELECT Id FORM Contact").message == err.message


@pytest.mark.parametrize(
    ("soql", "tail"),
    [
        ("SELECT Id FROM", "unexpected token: '<EOF>'"),
        ("SELECT FROM Contact", "unexpected token: 'FROM'"),
        ("SELECT Id FROM Contact WHERE", "unexpected token: '<EOF>'"),
        ("SELECT Id FROM Contact WHERE LastName = 'a' AND Email = 'b' OR Phone = 'c'", "unexpected token: 'OR'"),
        ("SELECT Id FROM Contact LIMIT 5 WHERE LastName = 'a'", "unexpected token: 'WHERE'"),
        ('SELECT Id FROM Contact WHERE LastName = "a"', "no viable alternative at character '\"'"),
        ("SELECT Id FROM Contact WHERE LastName = 'abc", "mismatched character '<EOF>' expecting '''"),
        ("SELECT Id FROM Contact LIMIT 1.5", "unexpected token: '1.5'"),
    ],
)
def test_malformed_queries(org: Org, soql: str, tail: str) -> None:
    err = error(org, soql)
    assert err.error_code == "MALFORMED_QUERY"
    assert err.message.endswith(tail), err.message


def test_invalid_field_message(org: Org) -> None:
    err = error(org, "SELECT Id, Nme FROM Contact")
    assert err.error_code == "INVALID_FIELD"
    assert err.message == (
        "\nSELECT Id, Nme FROM Contact\n           ^\nERROR at Row:1:Column:12\nNo such column 'Nme' on entity "
        "'Contact'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field "
        "name. Please reference your WSDL or the describe call for the appropriate names."
    )


def test_invalid_field_in_where_order_and_relationship(org: Org) -> None:
    assert error(org, "SELECT Id FROM Contact WHERE Nope = 'x'").error_code == "INVALID_FIELD"
    assert error(org, "SELECT Id FROM Contact ORDER BY Nope").error_code == "INVALID_FIELD"
    err = error(org, "SELECT Account.Nope FROM Contact")
    assert "No such column 'Nope' on entity 'Account'" in err.message
    err = error(org, "SELECT Acount.Name FROM Contact")
    assert err.error_code == "INVALID_FIELD"
    assert err.message.endswith(
        "Didn't understand relationship 'Acount' in field path. If you are attempting to use a custom relationship, "
        "be sure to append the '__r' after the custom relationship name. Please reference your WSDL or the describe "
        "call for the appropriate names."
    )


def test_invalid_type_matches_cci_fixture(org: Org) -> None:
    fixture = recorded_json("cci_composite_count_and_invalid_type.json")
    expected = fixture["compositeResponse"][1]["body"]
    err = error(org, "select count() from XYZZY")
    assert err.body() == expected


def test_unknown_child_relationship(org: Org) -> None:
    err = error(org, "SELECT Id, (SELECT Id FROM Contact) FROM Account")
    assert err.error_code == "INVALID_TYPE"
    assert (
        "ERROR at Row:1:Column:28\nDidn't understand relationship 'Contact' in FROM part of query call." in err.message
    )


def test_long_lines_show_a_window_before_the_error(org: Org) -> None:
    soql = "SELECT Id, FirstName, LastName, Email, Phone, Birthdate, Nope FROM Contact"
    err = error(org, soql)
    column = soql.index("Nope") + 1
    assert err.message.startswith(f"\n{soql[column - 31 :]}\n{' ' * 30}^\nERROR at Row:1:Column:{column}\n")


# ---------------------------------------------------------------------------------------------------------------------
# Caching and performance


def test_parsed_queries_are_cached() -> None:
    text = "SELECT Id FROM Account WHERE Name = 'cache me'"
    assert parse_query(text) is parse_query(text)


def test_in_list_of_200_over_50000_rows_is_fast() -> None:
    org = Org(build_schema())
    for n in range(50_000):
        org.add("Contact", Id=make_id("003", n), LastName=f"L{n}", Email=f"person{n}@example.com")
    wanted = [f"person{n * 250}@example.com" for n in range(200)]
    soql = f"SELECT Id, Email FROM Contact WHERE Email IN ({', '.join(repr(w) for w in wanted)})"
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        result = run_query(org, soql, include_deleted=False, api_version="59.0", now=NOW)
        best = min(best, time.perf_counter() - started)
    assert result.total_size == 200
    assert sorted(r["Email"] for r in result.records) == sorted(wanted)
    assert best < 0.1, f"took {best:.3f}s"
