"""Salesforce errors, and the one table that classifies every Salesforce answer.

Each Salesforce failure becomes a :class:`SalesforceError` that is also one of the sfsync
taxonomy kinds (:mod:`sfsync.errors`), so callers decide by kind, never by code::

    SalesforceError
    ├── SalesforceRetriableError   (RetriableError: try again after retry_after)
    │   ├── RequestLimitExceeded   (concurrent-request limit, HTTP 429)
    │   ├── DailyLimitExceeded     (the org's rolling 24 h API allocation is spent)
    │   ├── SessionExpired         (INVALID_SESSION_ID: refresh the session, then retry)
    │   └── RolledBack             (an innocent item of an all-or-none unit; resend without the bad one)
    ├── SalesforceRecordError      (SkippableRecordError: this record's data is bad; park it)
    │   └── MultipleMatches        (upsert found several records for one external ID)
    └── SalesforceFatalError       (FatalError: a human must change something)
        ├── AuthenticationError    (OAuth refused the credentials; bad/unsigned token response)
        ├── PermissionDenied       (the integration user may not do this)
        ├── MetadataError          (unknown object/field, malformed query: mapping or code is wrong)
        └── UnexpectedResponse     (Salesforce answered in a shape we do not understand)

:data:`RULES` is the table, keyed by (HTTP status, errorCode[, message fragment]); the first
matching row wins, so specific rows come before wildcards. The same table classifies REST error
bodies (``errorCode``), per-record results of sObject Collections (``statusCode``, HTTP 400),
Bulk API 2.0 ``sf__Error`` cells, OAuth token-endpoint errors (``error``) and transport failures
(status 0, codes ``TIMEOUT`` / ``CONNECTION_ERROR`` / ``TRANSPORT_ERROR``).

Messages never carry secrets: :func:`redact` strips anything shaped like an access token.
"""

# ruff: noqa: N818 - DailyLimitExceeded, SessionExpired... name the condition, as the brief and callers expect
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sfsync.errors import Category, FatalError, Level, RetriableError, SfsyncError, SkippableRecordError
from sfsync.redaction import redact

DAILY_LIMIT_RETRY_AFTER_S = 3600.0
"""How long to wait when the daily allocation is spent and Salesforce does not say (rolling window)."""

CONCURRENT_LIMIT_RETRY_AFTER_S = 5.0
"""Concurrent long-running requests drain within seconds; wait at least this long."""

NO_RESPONSE = 0
"""Pseudo HTTP status for failures where Salesforce never answered (timeouts, connection errors)."""


class SalesforceError(SfsyncError):
    """An error reported by (or on the way to) Salesforce.

    Attributes:
        error_code: Salesforce's ``errorCode`` / ``statusCode`` / OAuth ``error`` (or our pseudo code).
        message: Salesforce's message, redacted.
        fields: API names of the fields concerned, when Salesforce names them.
        status: HTTP status of the response (or of the collection item); 0 when none came back.
    """

    category = Category.CONNECTION

    def log_code(self) -> str:
        """Salesforce's own ``errorCode``."""
        return self.error_code

    def log_message(self) -> str:
        return self.message or str(self)

    def log_fields(self) -> Sequence[str]:
        return self.fields

    def log_details(self) -> dict[str, str]:
        """The HTTP status, and Salesforce's ``errorCode`` when the entry's code is another."""
        details = {"http_status": str(self.status)}
        if self.log_code() != self.error_code:
            details["salesforce_code"] = self.error_code
        return details

    def __init__(
        self,
        message: str,
        *,
        error_code: str = "UNKNOWN",
        fields: Sequence[str] = (),
        status: int = NO_RESPONSE,
    ) -> None:
        self.error_code = error_code
        self.message = redact(message)
        self.fields = list(fields)
        self.status = status
        where = f" [{', '.join(self.fields)}]" if self.fields else ""
        super().__init__(f"{error_code} (HTTP {status}){where}: {self.message}")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error_code={self.error_code!r}, status={self.status}, "
            f"fields={self.fields!r}, message={self.message!r})"
        )


class SalesforceRetriableError(SalesforceError, RetriableError):
    """A transient Salesforce fault: locks, 5xx, timeouts, limits."""

    level = Level.WARNING

    def log_category(self) -> Category:
        """CONNECTION when the transport or Salesforce's servers failed (no status, 5xx), else SYNC."""
        return Category.CONNECTION if self.status == 0 or self.status >= 500 else Category.SYNC

    def __init__(
        self,
        message: str,
        *,
        error_code: str = "UNKNOWN",
        fields: Sequence[str] = (),
        status: int = NO_RESPONSE,
        retry_after: float | None = None,
    ) -> None:
        SalesforceError.__init__(self, message, error_code=error_code, fields=fields, status=status)
        self.retry_after = retry_after


class RequestLimitExceeded(SalesforceRetriableError):
    """Too many concurrent requests (``ConcurrentPerOrgLongTxn``) or HTTP 429: back off and retry."""

    category = Category.RATE_LIMIT

    def log_category(self) -> Category:
        return self.category


class DailyLimitExceeded(SalesforceRetriableError):
    """The org's rolling 24-hour API allocation is spent; ``retry_after`` says when to look again."""

    category = Category.RATE_LIMIT
    level = Level.ERROR

    def log_category(self) -> Category:
        return self.category


class SessionExpired(SalesforceRetriableError):
    """``INVALID_SESSION_ID``: the access token expired or was revoked; refresh and retry once."""

    def log_category(self) -> Category:
        return Category.CONNECTION


class RolledBack(SalesforceRetriableError):
    """This item was fine but rolled back with a failing sibling (all-or-none); resend it alone."""

    def log_category(self) -> Category:
        return Category.SYNC


class SalesforceRecordError(SalesforceError, SkippableRecordError):
    """Salesforce refused this record's data; park the record and go on."""

    category = Category.SYNC


class MultipleMatches(SalesforceRecordError):
    """An upsert's external-ID value matched several records (HTTP 300); ``urls`` lists them."""

    def __init__(self, message: str, *, urls: Sequence[str] = (), status: int = 300) -> None:
        super().__init__(message, error_code="MULTIPLE_CHOICES", status=status)
        self.urls = list(urls)


class SalesforceFatalError(SalesforceError, FatalError):
    """Nothing will work until someone changes the configuration, permissions or code."""


class AuthenticationError(SalesforceFatalError):
    """The login was refused (bad credentials, unapproved app, expired refresh token...)."""

    def log_code(self) -> str:
        return "AUTH_FAILED"


class PermissionDenied(SalesforceFatalError):
    """The integration user lacks access, or the API is disabled for the org."""


class MetadataError(SalesforceFatalError):
    """An object, field or query the org does not know (the mapping or the code is wrong)."""

    category = Category.SYNC


class UnexpectedResponse(SalesforceFatalError):
    """Salesforce answered with a status or body shape this client does not understand."""


StatusMatch = int | Literal["4xx", "5xx", "*"]


@dataclass(frozen=True)
class Rule:
    """One row of the classification table.

    ``status``: an HTTP status, ``"4xx"``/``"5xx"`` or ``"*"``; ``code``: an error code or
    ``None`` for any; ``contains``: a message fragment (case-insensitive) or ``None``.
    ``retry_after``: the default wait for retriable kinds when Salesforce does not say.
    """

    status: StatusMatch
    code: str | None
    kind: type[SalesforceError]
    retry_after: float | None = None
    contains: str | None = None
    why: str = ""

    def matches(self, status: int, code: str | None, message: str) -> bool:
        if self.code is not None and (code or "").upper() != self.code.upper():
            return False
        if self.contains is not None and self.contains.lower() not in message.lower():
            return False
        if self.status == "*":
            return True
        if self.status == "4xx":
            return 400 <= status < 500
        if self.status == "5xx":
            return 500 <= status < 600
        return status == self.status


_SKIPPABLE_CODES = (
    "REQUIRED_FIELD_MISSING",
    "STRING_TOO_LONG",
    "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
    "DUPLICATES_DETECTED",
    "DUPLICATE_VALUE",
    "DUPLICATE_EXTERNAL_ID",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION",
    "FIELD_FILTER_VALIDATION_EXCEPTION",
    "CANNOT_EXECUTE_FLOW_TRIGGER",
    "FIELD_INTEGRITY_EXCEPTION",
    "INVALID_CROSS_REFERENCE_KEY",
    "MALFORMED_ID",
    "ENTITY_IS_DELETED",
    "INVALID_TYPE_ON_FIELD_IN_RECORD",
    "JSON_PARSER_ERROR",
    "INVALID_EMAIL_ADDRESS",
    "NUMBER_OUTSIDE_VALID_RANGE",
    "CANNOT_UPDATE_CONVERTED_LEAD",
    "INVALID_ID_FIELD",
    "INVALID_FIELD_WHEN_USING_TEMPLATE",
    "ENTITY_IS_LOCKED",
    "CIRCULAR_DEPENDENCY",
    "INVALID_DATE_FORMAT",
    "INVALID_FIELD_VALUE",
    "TOO_MANY_ENUM_VALUE",
    "DELETE_FAILED",
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",  # a trigger, Flow or process failed on this record
    "INACTIVE_OWNER_OR_USER",  # the record's owner (or a user it names) is inactive
)

_METADATA_CODES = (
    "INVALID_FIELD",
    "INVALID_TYPE",
    "INVALID_FIELD_FOR_INSERT_UPDATE",
    "MALFORMED_QUERY",
    "MALFORMED_SEARCH",
    "INVALID_QUERY_FILTER_OPERATOR",
    "INVALID_SEARCH",
    "INVALID_REPLICATION_DATE",
    "EXCEEDED_ID_LIMIT",
    "INVALID_OPERATION",
    "INVALID_OPERATION_WITH_EXPIRED_PASSWORD",
    "METHOD_NOT_ALLOWED",
    "INVALIDENTITY",
    "FEATURENOTENABLED",
)

_PERMISSION_CODES = (
    "INSUFFICIENT_ACCESS_OR_READONLY",
    "INSUFFICIENT_ACCESS",
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
    "API_DISABLED_FOR_ORG",
    "API_CURRENTLY_DISABLED",
    "FUNCTIONALITY_NOT_ENABLED",
    "NOT_ACCEPTABLE",
)

_OAUTH_FATAL_CODES = (
    "invalid_grant",
    "invalid_client",
    "invalid_client_id",
    "invalid_client_credentials",
    "unauthorized_client",
    "redirect_uri_mismatch",
    "unsupported_grant_type",
    "unsupported_response_type",
    "invalid_request",
    "invalid_scope",
    "access_denied",
    "inactive_user",
    "inactive_org",
    "INVALID_AUTH_HEADER",
    "INVALID_LOGIN",
    "LOGIN_MUST_USE_SECURITY_TOKEN",
)

RULES: tuple[Rule, ...] = (
    # -- no response at all ------------------------------------------------------------------
    Rule(NO_RESPONSE, "TIMEOUT", SalesforceRetriableError, why="request timed out"),
    Rule(NO_RESPONSE, "CONNECTION_ERROR", SalesforceRetriableError, why="could not connect"),
    Rule(NO_RESPONSE, "TRANSPORT_ERROR", SalesforceRetriableError, why="connection broke mid-request"),
    # -- limits: daily vs concurrent share one code; the message tells them apart ---------------
    Rule(
        "*",
        "REQUEST_LIMIT_EXCEEDED",
        DailyLimitExceeded,
        DAILY_LIMIT_RETRY_AFTER_S,
        contains="TotalRequests",
        why="daily allocation spent",
    ),
    Rule(
        "*",
        "REQUEST_LIMIT_EXCEEDED",
        RequestLimitExceeded,
        CONCURRENT_LIMIT_RETRY_AFTER_S,
        why="concurrent long-running request limit (ConcurrentPerOrgLongTxn, ConcurrentRequests)",
    ),
    Rule(429, None, RequestLimitExceeded, CONCURRENT_LIMIT_RETRY_AFTER_S, why="rate limited (honours Retry-After)"),
    Rule("*", "rate_limit_exceeded", RequestLimitExceeded, CONCURRENT_LIMIT_RETRY_AFTER_S, why="OAuth rate limit"),
    # -- session ---------------------------------------------------------------------------------
    Rule(
        "*",
        "INVALID_SESSION_ID",
        PermissionDenied,
        contains="not valid for use with the REST API",
        why="token lacks the api scope: refreshing will not help",
    ),
    Rule("*", "INVALID_SESSION_ID", SessionExpired, 0.0, why="expired/revoked token: refresh once"),
    # -- transient, whatever the status -------------------------------------------------------
    Rule("*", "UNABLE_TO_LOCK_ROW", SalesforceRetriableError, why="row lock contention"),
    Rule("*", "SERVER_UNAVAILABLE", SalesforceRetriableError, why="instance unavailable / maintenance"),
    Rule("*", "QUERY_TIMEOUT", SalesforceRetriableError, why="query too slow: retry (caller may narrow it)"),
    Rule("*", "INVALID_QUERY_LOCATOR", SalesforceRetriableError, why="cursor expired: restart the query"),
    Rule("*", "UNKNOWN_EXCEPTION", SalesforceRetriableError, why="Salesforce internal error"),
    Rule("*", "TXN_SECURITY_METERING_ERROR", SalesforceRetriableError, why="transaction security metering"),
    Rule("*", "ALL_OR_NONE_OPERATION_ROLLED_BACK", RolledBack, 0.0, why="innocent item of an all-or-none batch"),
    Rule("*", "PROCESSING_HALTED", RolledBack, 0.0, why="innocent subrequest of an all-or-none composite"),
    # -- data errors that look like configuration ------------------------------------------------
    Rule(
        "*",
        "INVALID_FIELD",
        SalesforceRecordError,
        contains="Foreign key external ID",
        why="the referenced parent record does not exist (data)",
    ),
    Rule(
        404,
        "NOT_FOUND",
        MetadataError,
        contains="external ID field does not exist",
        why="unknown external-ID field (mapping)",
    ),
    Rule(404, "NOT_FOUND", SalesforceRecordError, why="the record does not exist"),
    Rule(300, None, MultipleMatches, why="upsert matched several records"),
    # -- per-record data errors ---------------------------------------------------------------
    *(Rule("*", code, SalesforceRecordError, why="bad record data") for code in _SKIPPABLE_CODES),
    # -- configuration, metadata, permissions ------------------------------------------------
    *(Rule("*", code, MetadataError, why="unknown object/field or bad query") for code in _METADATA_CODES),
    *(Rule("*", code, PermissionDenied, why="permission or org feature") for code in _PERMISSION_CODES),
    *(Rule("*", code, AuthenticationError, why="login refused") for code in _OAUTH_FATAL_CODES),
    # -- by status, when the code is unknown -------------------------------------------------
    Rule(401, None, AuthenticationError, why="unauthorized, not a session expiry"),
    Rule(403, None, PermissionDenied, why="forbidden"),
    Rule(405, None, MetadataError, why="method not allowed on this resource"),
    Rule(414, None, MetadataError, why="URI too long: the caller must chunk"),
    Rule("5xx", None, SalesforceRetriableError, why="server-side failure (500/502/503/504)"),
    Rule("*", None, UnexpectedResponse, why="unknown error code: stop and tell a human"),
)


def rule_for(status: int, error_code: str | None, message: str = "") -> Rule:
    """The first row of :data:`RULES` that matches (the last row matches everything)."""
    for rule in RULES:
        if rule.matches(status, error_code, message):
            return rule
    raise AssertionError("RULES must end with a catch-all row")  # pragma: no cover


def classify(
    status: int,
    error_code: str | None,
    message: str,
    *,
    fields: Sequence[str] = (),
    retry_after: float | None = None,
    per_record: bool = False,
) -> SalesforceError:
    """Map one Salesforce error to an exception instance of the right kind.

    ``per_record``: the error is one record's result in a collection or Bulk job. A permission code
    there (``INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY``: no access to the record it refers to)
    concerns that record only, so it is a :class:`SalesforceRecordError` (parked) rather than the
    :class:`PermissionDenied` it is for a whole call.

    Args:
        status: HTTP status of the response (400 for a collection item), 0 if none came back.
        error_code: ``errorCode`` / ``statusCode`` / OAuth ``error``; ``None`` when absent.
        message: the human-readable message (redacted before it is kept).
        fields: field API names Salesforce reported.
        retry_after: the server's own ``Retry-After`` in seconds; wins over the table default.
    """
    rule = rule_for(status, error_code, message)
    code = error_code or f"HTTP_{status}"
    if per_record and issubclass(rule.kind, PermissionDenied):
        return SalesforceRecordError(message, error_code=code, fields=fields, status=status)
    if rule.kind is MultipleMatches:
        return MultipleMatches(message, status=status)
    if issubclass(rule.kind, SalesforceRetriableError):
        wait = retry_after if retry_after is not None else rule.retry_after
        return rule.kind(message, error_code=code, fields=fields, status=status, retry_after=wait)
    return rule.kind(message, error_code=code, fields=fields, status=status)


def parse_error_body(
    status: int, body: object, *, retry_after: float | None = None, per_record: bool = False
) -> SalesforceError:
    """Classify a parsed error body of any of Salesforce's shapes.

    ``[{"errorCode", "message", "fields"}]`` (REST), ``{"statusCode", "message", "fields"}``
    (a collection item's error: pass ``per_record``, see :func:`classify`), ``{"error",
    "error_description"}`` (OAuth); anything else is classified by status alone. When a REST body
    lists several errors the first one decides.
    """
    item: object = body[0] if isinstance(body, list) and body else body
    if isinstance(item, dict):
        if "error" in item and isinstance(item.get("error"), str):
            return classify(
                status, item["error"], str(item.get("error_description") or item["error"]), retry_after=retry_after
            )
        code = item.get("errorCode") or item.get("statusCode")
        message = str(item.get("message") or "")
        raw_fields = item.get("fields") or []
        fields = [str(f) for f in raw_fields] if isinstance(raw_fields, list) else []
        return classify(
            status, str(code) if code else None, message, fields=fields, retry_after=retry_after, per_record=per_record
        )
    text = body if isinstance(body, str) else ""
    return classify(status, None, text[:500] or f"HTTP {status}", retry_after=retry_after)


def parse_bulk_error(cell: str) -> SalesforceError:
    """Classify a Bulk API 2.0 ``sf__Error`` cell (``CODE:message:fields--``) as a 400 item error."""
    code, sep, rest = cell.partition(":")
    if not sep:
        return classify(400, None, cell, per_record=True)
    fields: list[str] = []
    message = rest
    if rest.endswith("--"):
        head, colon, tail = rest[:-2].rpartition(":")
        if colon:
            message = head
            fields = [f.strip() for f in tail.split(",") if f.strip()]
    return classify(400, code.strip(), message, fields=fields, per_record=True)
