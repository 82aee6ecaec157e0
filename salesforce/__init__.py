"""Typed async Salesforce REST client for sfsync.

Everything a caller needs is importable from here; the submodules are the implementation::

    from sfsync.salesforce import SalesforceClient, load_settings, select

    async with SalesforceClient(load_settings()) as sf:
        async for contact in sf.query(select("Id", "Email").from_("Contact")):
            ...

Errors are :mod:`sfsync.salesforce.errors` classes, each also a kind of the sfsync taxonomy
(``RetriableError`` / ``SkippableRecordError`` / ``FatalError``).
"""

from sfsync.salesforce.auth import (
    AuthorizationCodeAuth,
    AuthorizationRequest,
    AuthProvider,
    ClientCredentialsAuth,
    JwtBearerAuth,
    PasswordAuth,
    RefreshTokenAuth,
    Session,
    SessionSealError,
    StaticTokenAuth,
    decrypt_session,
    encrypt_session,
    generate_session_key,
    provider_from_settings,
)
from sfsync.salesforce.bulk import BulkFailure, BulkIngestResult, BulkJob, BulkSuccess, records_to_csv
from sfsync.salesforce.client import SalesforceClient
from sfsync.salesforce.composite import CollectionOp, CompositeSubrequest, CompositeSubresponse, RecordResult
from sfsync.salesforce.errors import (
    AuthenticationError,
    DailyLimitExceeded,
    MetadataError,
    MultipleMatches,
    PermissionDenied,
    RequestLimitExceeded,
    RolledBack,
    SalesforceError,
    SalesforceFatalError,
    SalesforceRecordError,
    SalesforceRetriableError,
    SessionExpired,
    UnexpectedResponse,
    classify,
)
from sfsync.salesforce.limits import ApiBudget, AppUsage, BudgetTracker, parse_limit_info
from sfsync.salesforce.org import ApiVersion, Identity, Limit
from sfsync.salesforce.query import SearchObject, ServerTime
from sfsync.salesforce.rest import Record
from sfsync.salesforce.settings import SalesforceSettings, load_settings
from sfsync.salesforce.sobjects import (
    DeletedRecord,
    DeletedResult,
    DescribeGlobal,
    FieldDescribe,
    SObjectDescribe,
    SObjectSummary,
    UpdatedResult,
    UpsertResult,
)
from sfsync.salesforce.soql import (
    Condition,
    DateLiteral,
    Query,
    chunk_in,
    chunk_values,
    cond,
    literal,
    select,
    soql_in,
    sosl_escape,
    sosl_find,
)

__all__ = [
    "ApiBudget",
    "ApiVersion",
    "AppUsage",
    "AuthProvider",
    "AuthenticationError",
    "AuthorizationCodeAuth",
    "AuthorizationRequest",
    "BudgetTracker",
    "BulkFailure",
    "BulkIngestResult",
    "BulkJob",
    "BulkSuccess",
    "ClientCredentialsAuth",
    "CollectionOp",
    "CompositeSubrequest",
    "CompositeSubresponse",
    "Condition",
    "DailyLimitExceeded",
    "DateLiteral",
    "DeletedRecord",
    "DeletedResult",
    "DescribeGlobal",
    "FieldDescribe",
    "Identity",
    "JwtBearerAuth",
    "Limit",
    "MetadataError",
    "MultipleMatches",
    "PasswordAuth",
    "PermissionDenied",
    "Query",
    "Record",
    "RecordResult",
    "RefreshTokenAuth",
    "RequestLimitExceeded",
    "RolledBack",
    "SObjectDescribe",
    "SObjectSummary",
    "SalesforceClient",
    "SalesforceError",
    "SalesforceFatalError",
    "SalesforceRecordError",
    "SalesforceRetriableError",
    "SalesforceSettings",
    "SearchObject",
    "ServerTime",
    "Session",
    "SessionExpired",
    "SessionSealError",
    "StaticTokenAuth",
    "UnexpectedResponse",
    "UpdatedResult",
    "UpsertResult",
    "chunk_in",
    "chunk_values",
    "classify",
    "cond",
    "decrypt_session",
    "encrypt_session",
    "generate_session_key",
    "literal",
    "load_settings",
    "parse_limit_info",
    "provider_from_settings",
    "records_to_csv",
    "select",
    "soql_in",
    "sosl_escape",
    "sosl_find",
]
