"""SOSL and parameterized search over the query engines' small org (tests/kit/query_org.py)."""

from __future__ import annotations

from typing import Any

import pytest

from sfsync.emulator.errors import ApiError
from sfsync.emulator.sosl import run_parameterized_search, run_search
from tests.kit import recorded_json
from tests.kit.query_org import IDS, NOW, Org, build_org, make_id


@pytest.fixture(scope="module")
def org() -> Org:
    org = build_org()
    IDS["c7"] = org.add(
        "Contact",
        Id=make_id("003", 700),
        FirstName="Jo",
        LastName="Smith-Jones",
        Name="Jo Smith-Jones",
        Email="jo+test@example.com",
        Description="Price: 5^2 [draft] ~ok!",
    )
    return org


def search(org: Org, sosl: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = run_search(org, sosl, api_version="59.0", now=NOW)["searchRecords"]
    return records


def found(org: Org, sosl: str, field: str = "Name") -> list[Any]:
    return [r.get(field) for r in search(org, sosl)]


def search_error(org: Org, sosl: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        run_search(org, sosl, api_version="59.0", now=NOW)
    assert caught.value.status == 400
    return caught.value


def test_email_search_returns_rest_shaped_records(org: Org) -> None:
    result = run_search(
        org, "FIND {ann@example.com} IN EMAIL FIELDS RETURNING Contact(Id, Email), Lead(Id, Email)", api_version="59.0"
    )
    assert result == {
        "searchRecords": [
            {
                "attributes": {"type": "Contact", "url": f"/services/data/v59.0/sobjects/Contact/{IDS['c1']}"},
                "Id": IDS["c1"],
                "Email": "ann@example.com",
            }
        ]
    }


def test_returning_order_fields_where_order_and_limits(org: Org) -> None:
    records = search(
        org,
        "FIND {example.com} RETURNING Lead(Name, Email), Contact(LastName, account.name "
        "WHERE Email != null ORDER BY LastName DESC LIMIT 2)",
    )
    assert [(r["attributes"]["type"], r.get("Name") or r.get("LastName")) for r in records] == [
        ("Lead", "Liam Lead"),
        ("Contact", "Smith-Jones"),
        ("Contact", "Gamma"),
    ]
    assert list(records[1]) == ["attributes", "LastName", "Account"]
    assert records[1]["Account"] is None
    assert len(search(org, "FIND {example.com} RETURNING Contact(Name), Lead(Name) LIMIT 3")) == 3
    assert found(org, "FIND {example.com} RETURNING Contact(Name ORDER BY Name LIMIT 2 OFFSET 1)") == [
        "Bob Beta",
        "carol Gamma",
    ]


def test_returning_without_field_list_gives_ids(org: Org) -> None:
    assert search(org, "FIND {Globex} RETURNING Account") == [
        {
            "attributes": {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{IDS['a2']}"},
            "Id": IDS["a2"],
        }
    ]


def test_without_returning_every_searchable_object_is_searched(org: Org) -> None:
    records = search(org, "FIND {Spring}")
    assert [(r["attributes"]["type"], r["Id"]) for r in records] == [("Campaign", IDS["cp1"])]


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("ann", ["Ann Alpha"]),
        ("ANN", ["Ann Alpha"]),
        ("an*", ["Ann Alpha"]),
        ("*pha", ["Ann Alpha"]),
        ("b?b", ["Bob Beta"]),
        ("bo??", []),
        ("ann OR bob", ["Ann Alpha", "Bob Beta"]),
        ("ann AND alpha", ["Ann Alpha"]),
        ("ann alpha", ["Ann Alpha"]),  # implicit AND
        ("ann bob", []),
        ("example.com AND NOT ann", ["Bob Beta", "carol Gamma", "Eve Epsilon", "Jo Smith-Jones"]),
        ("(ann OR bob) AND beta", ["Bob Beta"]),
        ('"ann alpha"', ["Ann Alpha"]),
        ('"alpha ann"', []),
        ("O\\'Brien", ["carol Gamma"]),
        ("Smith\\-Jones", ["Jo Smith-Jones"]),
        ("jo\\+test@example.com", ["Jo Smith-Jones"]),
        ("5\\^2", ["Jo Smith-Jones"]),
        ("\\[draft\\]", ["Jo Smith-Jones"]),
        ("\\~ok\\!", ["Jo Smith-Jones"]),
        ("Price\\:", ["Jo Smith-Jones"]),
        ("zed", []),  # deleted
    ],
)
def test_search_terms(org: Org, term: str, expected: list[str]) -> None:
    assert found(org, f"FIND {{{term}}} RETURNING Contact(Name ORDER BY Name)") == sorted(expected, key=str.casefold)


@pytest.mark.parametrize("char", ["&", "|", "!", "[", "]", "^", "~", ":", "'", "+", "-"])
def test_unescaped_reserved_characters_are_malformed(org: Org, char: str) -> None:
    sosl = f"FIND {{ab{char}cd}} RETURNING Contact(Name)"
    err = search_error(org, sosl)
    assert err.error_code == "MALFORMED_SEARCH"
    assert err.message == (
        f"\n{sosl}\n{' ' * 8}^\nERROR at Row:1:Column:9\nline 1:8 no viable alternative at character '{char}'"
    )
    search(org, f"FIND {{ab\\{char}cd}} RETURNING Contact(Name)")  # escaped: accepted


def test_search_groups(org: Org) -> None:
    assert found(org, "FIND {example.com} IN NAME FIELDS RETURNING Contact(Name)") == []
    assert found(org, "FIND {carol} IN NAME FIELDS RETURNING Contact(Name)") == ["carol Gamma"]
    assert found(org, "FIND {carol} IN EMAIL FIELDS RETURNING Contact(Name)") == ["carol Gamma"]
    assert found(org, "FIND {alpha} IN EMAIL FIELDS RETURNING Contact(Name)") == []
    assert found(org, "FIND {O\\'Brien} IN ALL FIELDS RETURNING Contact(Name)") == ["carol Gamma"]
    assert found(org, "FIND {O\\'Brien} IN SIDEBAR FIELDS RETURNING Contact(Name)") == []
    assert found(org, "FIND {5551234567} IN PHONE FIELDS RETURNING Contact(Name), Lead(Name)") == ["Ann Alpha"]
    assert found(org, "FIND {9876543} IN PHONE FIELDS RETURNING Contact(Name), Lead(Name)") == ["Liam Lead"]
    assert found(org, "FIND {ann} IN PHONE FIELDS RETURNING Contact(Name)") == []


def test_missing_braces_matches_restforce_fixture(org: Org) -> None:
    expected = recorded_json("restforce_search_error_malformed_search.json")
    for sosl in ("FIND john RETURNING Contact", "FIND 'john'", "find", 'FIND "john" RETURNING Contact(Name)'):
        assert search_error(org, sosl).body() == expected, sosl


@pytest.mark.parametrize(
    ("sosl", "code", "tail"),
    [
        ("FIND {a} RETURNING Contact", "MALFORMED_SEARCH", "search term must be longer than one character"),
        ("FIND {*} RETURNING Contact", "MALFORMED_SEARCH", "search term must be longer than one character"),
        ("FIND {acme} RETURNIN Account", "MALFORMED_SEARCH", "ERROR at Row:1:Column:13\nunexpected token: 'RETURNIN'"),
        ("FIND {acme} IN EVERY FIELDS RETURNING Account", "MALFORMED_SEARCH", "unexpected token: 'EVERY'"),
        (
            "FIND {acme} RETURNING Nope",
            "INVALID_TYPE",
            "sObject type 'Nope' is not supported. If you are attempting to "
            "use a custom object, be sure to append the '__c' after the entity "
            "name. Please reference your WSDL or the describe call for the "
            "appropriate names.",
        ),
        (
            "FIND {acme} RETURNING Account(Nme)",
            "INVALID_FIELD",
            "No such column 'Nme' on entity 'Account'. If you are "
            "attempting to use a custom field, be sure to append the "
            "'__c' after the custom field name. Please reference your "
            "WSDL or the describe call for the appropriate names.",
        ),
        (
            "FIND {acme} RETURNING Account(Name LIMIT 5 OFFSET 2001)",
            "MALFORMED_SEARCH",
            "SOSL offset should be between 0 to 2000",
        ),
        (
            "FIND {acme} RETURNING Account LIMIT 5 OFFSET 2001",
            "MALFORMED_SEARCH",
            "SOSL offset should be between 0 to 2000",
        ),
        ("FIND {(acme} RETURNING Account", "MALFORMED_SEARCH", "unexpected token: '}'"),
    ],
)
def test_search_errors(org: Org, sosl: str, code: str, tail: str) -> None:
    err = search_error(org, sosl)
    assert err.error_code == code
    assert err.message.endswith(tail), err.message


def test_where_uses_the_soql_evaluator(org: Org) -> None:
    assert found(
        org, "FIND {example.com} RETURNING Contact(Name WHERE CreatedDate = THIS_WEEK AND HasOptedOutOfEmail = false)"
    ) == ["Ann Alpha"]
    err = search_error(org, "FIND {example.com} RETURNING Contact(Name WHERE CreatedDate > 2026-01-01)")
    assert err.error_code == "INVALID_FIELD"
    assert "must be of type dateTime" in err.message


def test_with_clauses_are_tolerated(org: Org) -> None:
    assert found(org, "FIND {Globex} RETURNING Account(Name) WITH SPELL_CORRECTION = false") == ["Globex"]


# ---------------------------------------------------------------------------------------------------------------------
# parameterizedSearch


def psearch(org: Org, params: dict[str, Any]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = run_parameterized_search(org, params, api_version="59.0", now=NOW)["searchRecords"]
    return records


def test_parameterized_search_sobjects_fields_limit_where(org: Org) -> None:
    records = psearch(
        org,
        {
            "q": "example.com",
            "fields": ["Id", "Name"],
            "sobjects": [
                {"name": "Contact", "limit": 2},
                {"name": "Lead", "where": "Status = 'Open'", "fields": ["Email"]},
            ],
        },
    )
    assert [(r["attributes"]["type"], list(r)[1:]) for r in records] == [
        ("Contact", ["Id", "Name"]),
        ("Contact", ["Id", "Name"]),
        ("Lead", ["Email"]),
    ]
    assert records[2]["Email"] == "liam@example.com"


def test_parameterized_search_get_form(org: Org) -> None:
    params = {
        "q": "example.com",
        "sobject": "Contact",
        "Contact.fields": "Name,Email",
        "Contact.limit": "2",
        "Contact.where": "Email LIKE 'b%'",
    }
    records = psearch(org, params)
    assert [(r["Name"], r["Email"]) for r in records] == [("Bob Beta", "bob@example.com")]
    two = psearch(org, {"q": "example.com", "sobject": ["Contact", "Lead"], "fields": "Id", "Contact.limit": "1"})
    assert [r["attributes"]["type"] for r in two] == ["Contact", "Lead"]


def test_parameterized_search_defaults_to_ids_of_every_object(org: Org) -> None:
    records = psearch(org, {"q": "Globex"})
    assert records == [
        {
            "attributes": {"type": "Account", "url": f"/services/data/v59.0/sobjects/Account/{IDS['a2']}"},
            "Id": IDS["a2"],
        }
    ]


def test_parameterized_search_scope_and_limits(org: Org) -> None:
    sobjects = [{"name": "Contact"}, {"name": "Lead"}]
    assert len(psearch(org, {"q": "example.com", "sobjects": sobjects})) == 6
    assert len(psearch(org, {"q": "example.com", "sobjects": sobjects, "overallLimit": 4})) == 4
    assert len(psearch(org, {"q": "example.com", "sobjects": sobjects, "defaultLimit": "1"})) == 2
    assert psearch(org, {"q": "example.com", "in": "NAME", "sobjects": sobjects}) == []
    assert len(psearch(org, {"q": "ann", "in": "name", "sobjects": sobjects})) == 1
    # q is plain text: characters that would be SOSL syntax are searched literally
    assert [r["Id"] for r in psearch(org, {"q": "jo+test@example.com", "sobjects": sobjects})] == [IDS["c7"]]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "MALFORMED_SEARCH"),
        ({"q": "  "}, "MALFORMED_SEARCH"),
        ({"q": "a"}, "MALFORMED_SEARCH"),
        ({"q": "acme", "in": "EVERYWHERE"}, "MALFORMED_SEARCH"),
        ({"q": "acme", "sobjects": [{"name": "Nope"}]}, "INVALID_TYPE"),
        ({"q": "acme", "sobjects": [{"name": "Account", "fields": ["Nme"]}]}, "INVALID_FIELD"),
        ({"q": "acme", "sobjects": "Account"}, "INVALID_FIELD"),
        ({"q": "acme", "sobjects": [{"name": "Account"}], "defaultLimit": 5000}, "INVALID_FIELD"),
        ({"q": "acme", "overallLimit": "lots"}, "INVALID_FIELD"),
    ],
)
def test_parameterized_search_errors(org: Org, params: dict[str, Any], code: str) -> None:
    with pytest.raises(ApiError) as caught:
        run_parameterized_search(org, params, api_version="59.0")
    assert caught.value.status == 400
    assert caught.value.error_code == code
