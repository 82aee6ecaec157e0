"""What the per-concern APIs need from the REST core, and the parsing helpers they share.

:class:`RestCaller` is the small protocol each API mixin (:mod:`~sfsync.salesforce.org`,
:mod:`~sfsync.salesforce.sobjects`, :mod:`~sfsync.salesforce.composite`,
:mod:`~sfsync.salesforce.query`, :mod:`~sfsync.salesforce.bulk`) subclasses: the mixins call
``self.request`` / ``self._json`` and read ``self.settings``, and
:class:`~sfsync.salesforce.client.SalesforceClient` implements them (mypy refuses to instantiate a
client that leaves one out).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from sfsync.salesforce.auth import Session
from sfsync.salesforce.errors import UnexpectedResponse
from sfsync.salesforce.limits import BudgetTracker
from sfsync.salesforce.settings import SalesforceSettings

M = TypeVar("M", bound=BaseModel)

Record = dict[str, Any]
"""An sObject record as Salesforce returns it (``attributes`` plus field values)."""

API_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
"""An sObject or field API name (also the shape required of composite ``referenceId`` s)."""


def api_name(value: str, what: str = "sObject") -> str:
    """``value`` if it is a valid API name (safe to put in a URL path or body); else :class:`ValueError`."""
    if not API_NAME_RE.match(value):
        raise ValueError(f"not a valid {what} API name: {value!r}")
    return value


class ApiModel(BaseModel):
    """Base of the response models: frozen, unknown keys dropped, camelCase aliases."""

    model_config = ConfigDict(frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True)


def parse_model(model: type[M], data: object, what: str) -> M:
    """``data`` validated as ``model``; a shape it does not fit raises :class:`UnexpectedResponse` (fatal)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UnexpectedResponse(f"{what}: unexpected response shape ({exc.error_count()} problem(s))") from None


class RestCaller(Protocol):
    """The REST core as the API mixins see it; :class:`~sfsync.salesforce.client.SalesforceClient` implements it."""

    settings: SalesforceSettings
    budget: BudgetTracker
    _sleep: Callable[[float], Awaitable[None]]
    _clock: Callable[[], float]

    @property
    def api_path(self) -> str:
        """``/services/data/vXX.X``."""
        ...

    async def session(self) -> Session:
        """The current session, logging in first if needed."""
        ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json: object = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        ok: Iterable[int] = (200,),
        authenticated: bool = True,
    ) -> httpx.Response:
        """One REST call, one attempt (a session refresh aside); see :meth:`SalesforceClient.request`."""
        ...

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """:meth:`request`, then the body parsed as JSON (``None`` when empty)."""
        ...
