"""Errors the emulated org answers with, in Salesforce's REST error shape.

A REST error body is a JSON list of ``{"message", "errorCode", "fields"}`` objects (``fields``
only where Salesforce sends it); the HTTP status travels with it. OAuth endpoints use a different
shape (``{"error", "error_description"}``): see :class:`OAuthError`.
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


class OAuthError(Exception):
    """An OAuth endpoint error: ``{"error": ..., "error_description": ...}`` with its status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}
