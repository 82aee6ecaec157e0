"""The classification table: every row reachable, every outcome pinned by an explicit expectation."""

from __future__ import annotations

import pytest

from sfsync.errors import FatalError, RetriableError, SkippableRecordError
from sfsync.salesforce.errors import (
    DAILY_LIMIT_RETRY_AFTER_S,
    RULES,
    AuthenticationError,
    DailyLimitExceeded,
    MetadataError,
    MultipleMatches,
    PermissionDenied,
    RequestLimitExceeded,
    RolledBack,
    Rule,
    SalesforceError,
    SalesforceRecordError,
    SalesforceRetriableError,
    SessionExpired,
    UnexpectedResponse,
    classify,
    parse_bulk_error,
    parse_error_body,
    redact,
    rule_for,
)
from tests.kit import recorded_json

ANY = object()

# (status, code, message, expected class, expected retry_after) — written by hand, NOT derived from RULES.
EXPECTED: list[tuple[int, str | None, str, type[SalesforceError], object]] = [
    (0, "TIMEOUT", "ReadTimeout", SalesforceRetriableError, None),
    (0, "CONNECTION_ERROR", "ConnectError", SalesforceRetriableError, None),
    (0, "TRANSPORT_ERROR", "RemoteProtocolError", SalesforceRetriableError, None),
    (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", DailyLimitExceeded, 3600.0),
    (403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.", RequestLimitExceeded, 5.0),
    (
        403,
        "REQUEST_LIMIT_EXCEEDED",
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded.",
        RequestLimitExceeded,
        5.0,
    ),
    (429, None, "Too Many Requests", RequestLimitExceeded, 5.0),
    (400, "rate_limit_exceeded", "too many logins", RequestLimitExceeded, 5.0),
    (401, "INVALID_SESSION_ID", "This session is not valid for use with the REST API", PermissionDenied, ANY),
    (401, "INVALID_SESSION_ID", "Session expired or invalid", SessionExpired, 0.0),
    (400, "UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this record", SalesforceRetriableError, None),
    (503, "SERVER_UNAVAILABLE", "maintenance", SalesforceRetriableError, None),
    (400, "QUERY_TIMEOUT", "Your query request was running for too long.", SalesforceRetriableError, None),
    (400, "INVALID_QUERY_LOCATOR", "invalid query locator", SalesforceRetriableError, None),
    (500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.", SalesforceRetriableError, None),
    (400, "TXN_SECURITY_METERING_ERROR", "metering", SalesforceRetriableError, None),
    (400, "ALL_OR_NONE_OPERATION_ROLLED_BACK", "Record rolled back", RolledBack, 0.0),
    (400, "PROCESSING_HALTED", "The transaction was rolled back", RolledBack, 0.0),
    (400, "INVALID_FIELD", "Foreign key external ID: 0116 not found for field X", SalesforceRecordError, ANY),
    (404, "NOT_FOUND", "Provided external ID field does not exist or is not accessible: Namez", MetadataError, ANY),
    (404, "NOT_FOUND", "The requested resource does not exist", SalesforceRecordError, ANY),
    (300, None, "", MultipleMatches, ANY),
    (400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", SalesforceRecordError, ANY),
    (400, "STRING_TOO_LONG", "Last Name: data value too large", SalesforceRecordError, ANY),
    (400, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "bad value", SalesforceRecordError, ANY),
    (400, "DUPLICATES_DETECTED", "Use one of these records?", SalesforceRecordError, ANY),
    (400, "DUPLICATE_VALUE", "Already a campaign member.", SalesforceRecordError, ANY),
    (400, "DUPLICATE_EXTERNAL_ID", "duplicate ext id", SalesforceRecordError, ANY),
    (400, "FIELD_CUSTOM_VALIDATION_EXCEPTION", "rule says no", SalesforceRecordError, ANY),
    (400, "FIELD_FILTER_VALIDATION_EXCEPTION", "lookup filter", SalesforceRecordError, ANY),
    (400, "CANNOT_EXECUTE_FLOW_TRIGGER", "process failed", SalesforceRecordError, ANY),
    (400, "FIELD_INTEGRITY_EXCEPTION", "integrity", SalesforceRecordError, ANY),
    (400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", SalesforceRecordError, ANY),
    (400, "MALFORMED_ID", "malformed id 001RM000003oLrB000", SalesforceRecordError, ANY),
    (404, "ENTITY_IS_DELETED", "entity is deleted", SalesforceRecordError, ANY),
    (400, "INVALID_TYPE_ON_FIELD_IN_RECORD", "wrong type", SalesforceRecordError, ANY),
    (400, "JSON_PARSER_ERROR", "bad json", SalesforceRecordError, ANY),
    (400, "INVALID_EMAIL_ADDRESS", "invalid email", SalesforceRecordError, ANY),
    (400, "NUMBER_OUTSIDE_VALID_RANGE", "out of range", SalesforceRecordError, ANY),
    (400, "CANNOT_UPDATE_CONVERTED_LEAD", "converted", SalesforceRecordError, ANY),
    (400, "INVALID_ID_FIELD", "invalid id", SalesforceRecordError, ANY),
    (400, "INVALID_FIELD_WHEN_USING_TEMPLATE", "template", SalesforceRecordError, ANY),
    (400, "ENTITY_IS_LOCKED", "approval lock", SalesforceRecordError, ANY),
    (400, "CIRCULAR_DEPENDENCY", "circular", SalesforceRecordError, ANY),
    (400, "INVALID_DATE_FORMAT", "bad date", SalesforceRecordError, ANY),
    (400, "INVALID_FIELD_VALUE", "bad value", SalesforceRecordError, ANY),
    (400, "TOO_MANY_ENUM_VALUE", "too many", SalesforceRecordError, ANY),
    (400, "DELETE_FAILED", "cannot delete", SalesforceRecordError, ANY),
    (400, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "trigger failed", SalesforceRecordError, ANY),
    (400, "INACTIVE_OWNER_OR_USER", "inactive owner", SalesforceRecordError, ANY),
    (400, "INVALID_FIELD", "No such column 'foo' on sobject of type Bar", MetadataError, ANY),
    (400, "INVALID_TYPE", "sObject type 'XYZZY' is not supported.", MetadataError, ANY),
    (400, "INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: IsDeleted.", MetadataError, ANY),
    (400, "MALFORMED_QUERY", "unexpected token: 'FORM'", MetadataError, ANY),
    (400, "MALFORMED_SEARCH", "No search term found.", MetadataError, ANY),
    (400, "INVALID_QUERY_FILTER_OPERATOR", "bad operator", MetadataError, ANY),
    (400, "INVALID_SEARCH", "bad search", MetadataError, ANY),
    (400, "INVALID_REPLICATION_DATE", "start must be before end", MetadataError, ANY),
    (400, "EXCEEDED_ID_LIMIT", "too many ids", MetadataError, ANY),
    (400, "INVALID_OPERATION", "invalid operation", MetadataError, ANY),
    (400, "INVALID_OPERATION_WITH_EXPIRED_PASSWORD", "expired password", MetadataError, ANY),
    (405, "METHOD_NOT_ALLOWED", "HTTP Method 'PUT' not allowed.", MetadataError, ANY),
    (400, "INVALIDENTITY", "not supported by the Bulk API", MetadataError, ANY),
    (400, "FEATURENOTENABLED", "feature off", MetadataError, ANY),
    (400, "INSUFFICIENT_ACCESS_OR_READONLY", "insufficient access rights on object id", PermissionDenied, ANY),
    (403, "INSUFFICIENT_ACCESS", "no access", PermissionDenied, ANY),
    (400, "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY", "no access", PermissionDenied, ANY),
    (403, "API_DISABLED_FOR_ORG", "The REST API is not enabled for this Organization.", PermissionDenied, ANY),
    (403, "API_CURRENTLY_DISABLED", "API is disabled for this user", PermissionDenied, ANY),
    (400, "FUNCTIONALITY_NOT_ENABLED", "not enabled", PermissionDenied, ANY),
    (406, "NOT_ACCEPTABLE", "not acceptable", PermissionDenied, ANY),
    (400, "invalid_grant", "authentication failure", AuthenticationError, ANY),
    (400, "invalid_client", "invalid client credentials", AuthenticationError, ANY),
    (400, "invalid_client_id", "client identifier invalid", AuthenticationError, ANY),
    (400, "invalid_client_credentials", "client secret invalid", AuthenticationError, ANY),
    (400, "unauthorized_client", "not authorized", AuthenticationError, ANY),
    (400, "redirect_uri_mismatch", "redirect_uri must match configuration", AuthenticationError, ANY),
    (400, "unsupported_grant_type", "grant type not supported", AuthenticationError, ANY),
    (400, "unsupported_response_type", "response type is not supported", AuthenticationError, ANY),
    (400, "invalid_request", "grant type is missing", AuthenticationError, ANY),
    (400, "invalid_scope", "bad scope", AuthenticationError, ANY),
    (400, "access_denied", "end-user denied authorization", AuthenticationError, ANY),
    (400, "inactive_user", "user is inactive", AuthenticationError, ANY),
    (400, "inactive_org", "org is inactive", AuthenticationError, ANY),
    (401, "INVALID_AUTH_HEADER", "bad header", AuthenticationError, ANY),
    (500, "INVALID_LOGIN", "Invalid username, password, security token", AuthenticationError, ANY),
    (500, "LOGIN_MUST_USE_SECURITY_TOKEN", "use a token", AuthenticationError, ANY),
    (401, None, "Unauthorized", AuthenticationError, ANY),
    (403, None, "Forbidden", PermissionDenied, ANY),
    (405, None, "Method Not Allowed", MetadataError, ANY),
    (414, None, "URI Too Long", MetadataError, ANY),
    (500, None, "Internal Server Error", SalesforceRetriableError, None),
    (502, None, "Bad Gateway", SalesforceRetriableError, None),
    (503, None, "Service Unavailable", SalesforceRetriableError, None),
    (504, None, "Gateway Timeout", SalesforceRetriableError, None),
    (400, "SOMETHING_NEW", "a code nobody has seen", UnexpectedResponse, ANY),
    (409, None, "Conflict", UnexpectedResponse, ANY),
]


@pytest.mark.parametrize(("status", "code", "message", "kind", "retry_after"), EXPECTED)
def test_explicit_outcome(status, code, message, kind, retry_after):
    error = classify(status, code, message)
    assert type(error) is kind
    assert error.status == status
    if retry_after is not ANY:
        assert isinstance(error, SalesforceRetriableError)
        assert error.retry_after == retry_after


def _probe(rule: Rule) -> tuple[int, str | None, str]:
    status = {"*": 400, "4xx": 418, "5xx": 503}.get(str(rule.status), rule.status)
    assert isinstance(status, int)
    return status, rule.code, rule.contains or "some message"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.status}-{r.code}-{r.contains or ''}")
def test_every_row_is_reachable_and_yields_its_kind(rule: Rule):
    status, code, message = _probe(rule)
    assert rule_for(status, code, message) is rule, "an earlier row shadows this one"
    assert isinstance(classify(status, code, message), rule.kind)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{r.status}-{r.code}-{r.contains or ''}")
def test_every_row_has_an_explicit_expectation(rule: Rule):
    hits = [e for e in EXPECTED if rule_for(e[0], e[1], e[2]) is rule]
    assert hits, f"add an EXPECTED case for {rule}"
    assert all(e[3] is rule.kind for e in hits)


def test_kinds_map_onto_the_sfsync_taxonomy():
    assert isinstance(classify(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."), RetriableError)
    assert isinstance(classify(400, "REQUIRED_FIELD_MISSING", "x"), SkippableRecordError)
    assert isinstance(classify(400, "INVALID_FIELD", "No such column"), FatalError)
    assert isinstance(classify(400, "invalid_grant", "x"), FatalError)
    assert isinstance(classify(401, "INVALID_SESSION_ID", "Session expired or invalid"), RetriableError)
    assert DAILY_LIMIT_RETRY_AFTER_S == 3600.0


def test_server_retry_after_wins_over_the_table_default():
    assert classify(429, None, "slow down", retry_after=12.0).retry_after == 12.0  # type: ignore[attr-defined]
    daily = classify(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", retry_after=90.0)
    assert isinstance(daily, DailyLimitExceeded)
    assert daily.retry_after == 90.0


def test_error_carries_code_message_fields_status():
    error = classify(400, "REQUIRED_FIELD_MISSING", "Required fields are missing: [LastName]", fields=["LastName"])
    assert (error.error_code, error.fields, error.status) == ("REQUIRED_FIELD_MISSING", ["LastName"], 400)
    assert "Required fields are missing" in str(error)
    assert "LastName" in repr(error)


def test_fixture_rest_error_bodies():
    session = parse_error_body(401, recorded_json("restforce_error_invalid_session_id.json"))
    assert isinstance(session, SessionExpired)
    invalid = parse_error_body(400, recorded_json("restforce_error_invalid_field.json"))
    assert isinstance(invalid, MetadataError)
    assert invalid.error_code == "INVALID_FIELD"
    bad_ext = parse_error_body(404, recorded_json("restforce_upsert_404_bad_extid_field.json"))
    assert isinstance(bad_ext, MetadataError)
    search = parse_error_body(400, recorded_json("restforce_search_error_malformed_search.json"))
    assert isinstance(search, MetadataError)
    assert search.error_code == "MALFORMED_SEARCH"


def test_fixture_oauth_error_bodies():
    grant = parse_error_body(400, recorded_json("restforce_oauth_token_error_invalid_grant.json"))
    assert isinstance(grant, AuthenticationError)
    assert grant.error_code == "invalid_grant"
    assert grant.message == "authentication failure - Invalid Password"
    assert isinstance(
        parse_error_body(400, recorded_json("restforce_oauth_refresh_error_expired.json")), AuthenticationError
    )


def test_fixture_composite_rollback_items():
    items = recorded_json("camel_composite_response_failure.json")["compositeResponse"]
    halted, culprit = (parse_error_body(i["httpStatusCode"], i["body"]) for i in items)
    assert isinstance(halted, RolledBack)
    assert isinstance(culprit, SalesforceRecordError)  # foreign-key external ID not found: data, not mapping


def test_collection_item_error_uses_status_code_key():
    error = parse_error_body(
        400,
        {
            "statusCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [LastName]",
            "fields": ["LastName"],
        },
    )
    assert isinstance(error, SalesforceRecordError)
    assert error.fields == ["LastName"]


def test_non_json_body_is_classified_by_status():
    assert isinstance(parse_error_body(502, "<html>Bad Gateway</html>"), SalesforceRetriableError)
    assert isinstance(parse_error_body(401, ""), AuthenticationError)


@pytest.mark.parametrize(
    ("cell", "kind", "code", "message", "fields"),
    [
        (
            "UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 200 records: 001xxx:--",
            SalesforceRetriableError,
            "UNABLE_TO_LOCK_ROW",
            "unable to obtain exclusive access to this record or 200 records: 001xxx",
            [],
        ),
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [LastName]:LastName--",
            SalesforceRecordError,
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [LastName]",
            ["LastName"],
        ),
        (
            "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
            SalesforceRecordError,
            "INVALID_CROSS_REFERENCE_KEY",
            "invalid cross reference id",
            [],
        ),
    ],
)
def test_bulk_error_cells(cell, kind, code, message, fields):
    error = parse_bulk_error(cell)
    assert type(error) is kind
    assert (error.error_code, error.message, error.fields, error.status) == (code, message, fields, 400)


def test_tokens_never_reach_messages():
    token = "00Dx0000000BV7z!AR8AQAxo9UfVkh8AlV0Gomt9Czx9LjHnSSpwBMmbRcgKFmxOtvxjTrKW19ye6PE3Ds1eQz3z8jr3W7_VbWmEu4Q8T"
    error = classify(400, "UNKNOWN_X", f"header was Authorization: Bearer {token} and {token}")
    assert token not in str(error)
    assert token not in repr(error)
    assert "AR8AQAxo9" not in error.message
    assert redact("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln") == "[redacted]"


@pytest.mark.parametrize(
    "code",
    ["CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY", "INACTIVE_OWNER_OR_USER", "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY"],
)
def test_a_collection_items_own_refusal_is_a_record_error_that_parks(code: str) -> None:
    error = parse_error_body(400, {"statusCode": code, "message": "refused", "fields": []}, per_record=True)
    assert isinstance(error, SalesforceRecordError)
    assert error.error_code == code


def test_a_permission_code_for_a_whole_call_still_stops_the_process() -> None:
    error = parse_error_body(403, [{"errorCode": "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY", "message": "no"}])
    assert isinstance(error, PermissionDenied)


def test_a_bulk_rows_permission_refusal_concerns_that_row_only() -> None:
    error = parse_bulk_error("INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY:insufficient access rights:OwnerId--")
    assert isinstance(error, SalesforceRecordError)
    assert error.fields == ["OwnerId"]
