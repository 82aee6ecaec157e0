"""Answers that say the org changed under a running client: a field, object or permission gone.

An administrator may delete a field, hide it from the integration user (field-level security), make
it read-only or take away an object permission while sfsync runs. Salesforce then answers a query
or write that names it with one of :data:`DRIFT_CODES`: for the whole call (``No such column 'X'``)
or for one record of a collection (``Unable to create/update fields: X``). :func:`is_drift` tells
such an answer apart from other fatal ones (the login, the API disabled for the org), and
:func:`named_fields` says which fields it is about. The sink and the poller quarantine what is
concerned instead of stopping (``sfsync.sinks.drift``, ``sfsync.sources.poller``).
"""

from __future__ import annotations

import re

from sfsync.salesforce.errors import MetadataError, PermissionDenied

__all__ = ["DRIFT_CODES", "is_drift", "named_fields"]

DRIFT_CODES = frozenset(
    {
        "INVALID_FIELD",  # No such column 'X' (deleted, or hidden by field-level security)
        "INVALID_FIELD_FOR_INSERT_UPDATE",  # Unable to create/update fields: X (made read-only)
        "INVALID_TYPE",  # sObject type 'X' is not supported (the object, or access to it, is gone)
        "NOT_FOUND",  # an upsert's external ID field does not exist or is not accessible; an object gone
        "INSUFFICIENT_ACCESS",
        "INSUFFICIENT_ACCESS_OR_READONLY",  # the object's create/edit permission taken away (whole call)
    }
)
"""Salesforce codes that say the org no longer has, or lets the integration user use, what a call names."""

_NAMED = (
    re.compile(r"No such column '([^']+)'"),
    re.compile(r"Unable to create/update fields: ([^.]+)\."),
    re.compile(r"Field name provided, (\S+) is not an External ID"),
    re.compile(r"external ID field does not exist or is not accessible: (\S+)"),
)


def is_drift(error: BaseException) -> bool:
    """Whether ``error`` says a field, object or permission the call names is gone: a
    :class:`MetadataError` or :class:`PermissionDenied` with one of :data:`DRIFT_CODES`. (A
    permission code on one record of a collection concerns that record: it is a record error.)"""
    return isinstance(error, MetadataError | PermissionDenied) and error.error_code in DRIFT_CODES


def named_fields(error: BaseException) -> list[str]:
    """The fields a Salesforce answer names: its ``fields``, then the ones its message quotes."""
    found = [str(f) for f in getattr(error, "fields", []) if f]
    message = str(getattr(error, "message", "") or error)
    for pattern in _NAMED:
        for match in pattern.finditer(message):
            found += [name.strip() for name in match.group(1).split(",") if name.strip()]
    return list(dict.fromkeys(found))
