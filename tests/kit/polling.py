"""Salesforce records as the poller reads them (``sfsync.sources``): query rows with their system fields.

Import these from this module (``from tests.kit.polling import ms, rid, row``): the names are short,
as the poller's tests use them by the hundred.

- :data:`BASE`: the moment the tests' times count from; :func:`ms`: ``BASE`` plus some seconds, in
  epoch milliseconds (the poller's cursor unit); :func:`stamp`: epoch milliseconds as Salesforce writes
  a datetime;
- :func:`rid`: the ``n``-th Contact id; :func:`row`: a Contact as a query returns it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sfsync.sources import rules

__all__ = ["BASE", "ms", "rid", "row", "stamp"]

BASE = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def ms(seconds: float) -> int:
    """:data:`BASE` plus ``seconds``, in epoch milliseconds."""
    return rules.to_ms(BASE + dt.timedelta(seconds=seconds))


def stamp(milliseconds: int) -> str:
    """Epoch ``milliseconds`` as Salesforce's REST API writes a datetime (``2026-11-25T12:00:00.000+0000``)."""
    return rules.from_ms(milliseconds).strftime("%Y-%m-%dT%H:%M:%S.") + f"{milliseconds % 1000:03d}+0000"


def row(
    record_id: str, at_ms: int, *, created_ms: int | None = None, deleted: bool = False, **values: Any
) -> dict[str, Any]:
    """The Contact ``record_id`` as a query returns it, last modified at ``at_ms`` (created a second
    earlier unless ``created_ms``), with ``values`` as its other fields."""
    return {
        "attributes": {"type": "Contact", "url": f"/services/data/v62.0/sobjects/Contact/{record_id}"},
        "Id": record_id,
        "SystemModstamp": stamp(at_ms),
        "CreatedDate": stamp(created_ms if created_ms is not None else at_ms - 1000),
        "LastModifiedDate": stamp(at_ms),
        "LastModifiedById": "005000000000001AAA",
        "IsDeleted": deleted,
        **values,
    }


def rid(n: int) -> str:
    """The ``n``-th Contact id (18 characters)."""
    return f"003{n:012d}AAA"
