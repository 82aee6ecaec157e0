"""The outbound processor's half of last-write-wins both ways: ``sfsync.salesforce_edits`` in.

The inbound processor sends a ``SalesforceEdit`` for each Salesforce-side edit it delivered to the
product (:func:`sfsync.processors.inbound.decide.decide`); :func:`learn_edit` puts its time on the record's clock
(:func:`sfsync.processors.outbound.plan.learn_salesforce_edit`), so that a product event stamped before the edit,
planned after it, drops those fields (:func:`sfsync.processors.outbound.plan.drop_stale`) instead of overwriting the
rep's value in Salesforce.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from sfsync.errors import SkippableRecordError
from sfsync.processors.outbound.plan import event_millis, learn_salesforce_edit

__all__ = ["learn_edit"]


def learn_edit(decoder: Any, value: bytes | None, clock: MutableMapping[str, Any]) -> bool:
    """Decode one ``sfsync.salesforce_edits`` record and put it on ``clock`` (record key -> field
    times); False when the record is not a decodable SalesforceEdit (the caller parks it).
    A clock that already knows the edit (a replay) is not set again."""
    try:
        name, edit = decoder.decode(value or b"")
    except SkippableRecordError:
        return False
    if name.rsplit(".", 1)[-1] != "SalesforceEdit":
        return False
    millis = event_millis(edit["edited_at"])
    key = str(edit["key"])
    before = clock.get(key) or {}
    after = learn_salesforce_edit(before, edit.get("fields") or (), millis)
    if after != before:
        clock[key] = after
    return True
