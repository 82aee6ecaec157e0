"""Org-level reads: API versions, ``/limits`` (which also refresh the budget), record counts, who is logged in.

Every call goes through :meth:`SalesforceClient.request <sfsync.salesforce.client.SalesforceClient.request>`
once, and raises only :mod:`sfsync.salesforce.errors` kinds (retriable ones for the caller to
retry); a body of an unexpected shape raises :class:`UnexpectedResponse`.
"""

from __future__ import annotations

from pydantic import Field

from sfsync.salesforce.errors import UnexpectedResponse
from sfsync.salesforce.limits import budget_from_limits
from sfsync.salesforce.rest import ApiModel, RestCaller, api_name, parse_model


class ApiVersion(ApiModel):
    """One entry of ``GET /services/data/``."""

    version: str
    url: str
    label: str


class Limit(ApiModel):
    """One ``/limits`` entry."""

    max: int = Field(alias="Max")
    remaining: int = Field(alias="Remaining")


class Identity(ApiModel):
    """The logged-in user and their org, as the session's identity URL tells them."""

    user_id: str = Field(alias="user_id")
    organization_id: str = Field(alias="organization_id")
    username: str = Field(alias="username")


class OrgApi(RestCaller):
    """The org-level calls of :class:`~sfsync.salesforce.client.SalesforceClient`."""

    async def versions(self) -> list[ApiVersion]:
        """``GET /services/data/`` without a session (free: does not count against the API allocation)."""
        data = await self._json("GET", "/services/data/", authenticated=False)
        if not isinstance(data, list):
            raise UnexpectedResponse("versions: expected a JSON array")
        return [parse_model(ApiVersion, v, "versions") for v in data]

    async def limits(self) -> dict[str, Limit]:
        """``GET /limits``, keyed by limit name; also refreshes :attr:`budget` from ``DailyApiRequests``."""
        data = await self._json("GET", "limits")
        if not isinstance(data, dict):
            raise UnexpectedResponse("limits: expected a JSON object")
        result = {name: parse_model(Limit, entry, "limits") for name, entry in data.items() if isinstance(entry, dict)}
        self.budget.update(budget_from_limits({k: {"Max": v.max, "Remaining": v.remaining} for k, v in result.items()}))
        return result

    async def record_counts(self, *sobjects: str) -> dict[str, int]:
        """``GET /limits/recordCount[?sObjects=...]``: approximate record counts per object (no SOQL needed).

        A name that is not an API name raises :class:`ValueError` before anything is sent.
        """
        params = {"sObjects": ",".join(api_name(s) for s in sobjects)} if sobjects else None
        data = await self._json("GET", "limits/recordCount", params=params)
        return {str(item["name"]): int(item["count"]) for item in (data or {}).get("sObjects", [])}

    async def identity(self) -> Identity:
        """``GET`` the session's identity URL (``/id/{orgId}/{userId}``): the user logged in and their org.

        Raises:
            UnexpectedResponse: the session has no identity URL, or the answer is not an identity.
        """
        session = await self.session()
        if not session.id_url:
            raise UnexpectedResponse("identity: the session has no identity URL (id)")
        return parse_model(Identity, await self._json("GET", session.id_url), "identity")
