"""Errors the emulated org answers with, in Salesforce's REST error shape.

A REST error body is a JSON list of ``{"message", "errorCode", "fields"}`` objects (``fields``
only where Salesforce sends it); the HTTP status travels with it. Two record-save errors carry more:
:class:`MultipleMatches` (an upsert's external id matched several records: 300 with their URLs) and
:class:`DuplicatesDetected` (a duplicate rule blocked the save: a ``duplicateResult``). OAuth
endpoints use a different shape (``{"error", "error_description"}``): see :class:`OAuthError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class ApiError(Exception):
    """One REST API error: HTTP status, Salesforce ``errorCode``, message, and the fields involved."""

    def __init__(self, status: int, error_code: str, message: str, fields: Sequence[str] | None = None) -> None:
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message
        self.fields = list(fields) if fields is not None else None

    def item(self) -> dict[str, Any]:
        """The error as one element of a Salesforce error list (and of per-record ``errors``)."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.error_code}
        if self.fields is not None:
            body["fields"] = self.fields
        return body

    def body(self) -> list[dict[str, Any]]:
        return [self.item()]


NOT_FOUND_MESSAGE = "The requested resource does not exist"


def not_found() -> ApiError:
    """404 NOT_FOUND: the object, record or resource a call names does not exist."""
    return ApiError(404, "NOT_FOUND", NOT_FOUND_MESSAGE)


def entity_deleted() -> ApiError:
    """404 ENTITY_IS_DELETED: the record a call names is in the recycle bin."""
    return ApiError(404, "ENTITY_IS_DELETED", "entity is deleted", [])


class MultipleMatches(ApiError):  # noqa: N818 - the name other parts code against
    """An upsert's external id matched several records (REST answers 300 with their URLs)."""

    def __init__(self, sobject: str, field_name: str, record_ids: list[str]) -> None:
        super().__init__(
            300,
            "DUPLICATE_EXTERNAL_ID",
            f"{field_name}: more than one record found for external id field: [{', '.join(record_ids)}]",
            [field_name],
        )
        self.sobject = sobject
        self.ids = record_ids

    def urls(self, api_version: str) -> list[str]:
        """The 300 body: ``/services/data/vXX.X/sobjects/<type>/<id>`` for every match."""
        version = api_version if api_version.startswith("v") else f"v{api_version}"
        return [f"/services/data/{version}/sobjects/{self.sobject}/{record_id}" for record_id in self.ids]


class DuplicatesDetected(ApiError):  # noqa: N818 - Salesforce error code
    """An active duplicate rule blocked the save."""

    def __init__(self, sobject: str, rule: str, record_ids: list[str]) -> None:
        super().__init__(400, "DUPLICATES_DETECTED", "Use one of these records?", [])
        self.sobject = sobject
        self.rule = rule
        self.ids = record_ids

    def item(self) -> dict[str, Any]:
        """The error with its ``duplicateResult``: the rule and the records it matched."""
        body = super().item()
        body["duplicateResult"] = {
            "allowSave": False,
            "duplicateRule": self.rule,
            "duplicateRuleEntityType": self.sobject,
            "errorMessage": self.message,
            "matchResults": [
                {
                    "entityType": self.sobject,
                    "errors": [],
                    "matchEngine": "ExactMatchEngine",
                    "matchRecords": [
                        {
                            "additionalInformation": [],
                            "fieldDiffs": [],
                            "matchConfidence": 100.0,
                            "record": {"attributes": {"type": self.sobject}, "Id": record_id},
                        }
                        for record_id in self.ids
                    ],
                    "rule": f"{self.rule}_Match",
                    "size": len(self.ids),
                    "success": True,
                }
            ],
        }
        return body


class OAuthError(Exception):
    """An OAuth endpoint error: ``{"error": ..., "error_description": ...}`` with its status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}
