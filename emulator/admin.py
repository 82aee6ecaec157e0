"""The emulator's own admin API on ``/__admin``: what tests, the demo and the benchmarks do to the org
from outside Salesforce's API (users acting in the UI, automated processes, an administrator) and
the emulator's controls (faults, limits, resets, snapshots, ready sessions).

JSON in, JSON out; ``user`` is a username or user id, default the integration user (404 NOT_FOUND
for an unknown one); every write action takes ``visibility_delay_ms`` to commit that transaction late.
An :class:`sfsync.emulator.errors.ApiError` is answered with its status and Salesforce's error list, a
missing or ill-typed argument with 400 ``{"error": "bad admin request: ..."}``. None of these calls
counts against the API limits.

=========================  ==================================================================
``POST /reset``            remove every record except users; zero the counters
``POST /snapshot``         ``{"snapshot": key}``; ``POST /restore`` ``{"snapshot": key}`` goes back
``GET /stats``             API calls (total, per endpoint), faults and how many were injected
``GET /call-options``      the ``Sforce-Call-Options`` client of each write
``POST /edit``             a user edits/creates in one transaction: ``{"user", "sobject", "id",
                           "values"}`` or ``{"user", "records": [{"sobject", "id"?, "values"}]}``
                           (no ``id``: create) -> ``{"ids", "by", "SystemModstamp"}``
``POST /delete``           a user deletes to the recycle bin: ``{"user", "ids" | "id"}``
``POST /undelete``         a user restores from the recycle bin: ``{"user", "ids" | "id"}``
``POST /purge``            hard delete (gone from queryAll, still in getDeleted): ``{"ids" | "id"}``
``POST /empty-recycle-bin``  purge the whole bin; ``{"truncate_delete_log": true}`` (default) also
                           empties the delete log getDeleted reads (earliestDateAvailable = now)
``POST /touch``            an automated process touches a record: SystemModstamp moves only
``POST /convert-lead``     ``{"lead_id", "contact_id"?, "account_id"?}``
``GET|POST /visibility``   the late-visibility rule ``{"delay_ms", "user", "sobject", "next",
                           "rate"}`` (POST replaces it; ``delay_ms`` 0 = off) and the writes not
                           yet visible (``pending``)
``POST /fields``           an administrator changes a field while clients run (drift):
                           ``{"sobject", "field", "action": "remove"}`` deletes it or hides it from
                           the integration user (field-level security; the API cannot tell the two
                           apart): describes leave it out, SOQL naming it answers 400 INVALID_FIELD
                           ``No such column '<field>' on entity '<object>'...``, a write naming it
                           INVALID_FIELD ``No such column '<field>' on sobject of type <object>``
                           (a single-record call: the whole request; sObject Collections: that
                           record); ``"action": "restore"`` brings it back with its values
                           (``"readable": false`` / ``true`` say the same in FLS terms);
                           ``{"sobject", "field", "createable"?, "updateable"?}`` sets what the
                           integration user may do with it (read-only: a write naming it answers
                           INVALID_FIELD_FOR_INSERT_UPDATE ``Unable to create/update fields: ...``).
                           Describes report the change at once (a new ``Last-Modified``, so an
                           ``If-Modified-Since`` revalidation gets the new body) -> the field's
                           describe entry, or ``{"removed": "<object>.<field>"}``
``POST /faults``           ``{"spec": "..."}`` replaces every fault (see :mod:`sfsync.emulator.faults`);
                           ``PATCH /faults`` changes only the parts the spec names (the injected
                           counts stay); a spec with ``daily_spent_after`` applies it now
``POST /limits``           ``{"daily_api_limit", "used"}`` set the allocation and the calls used;
                           ``{"spent_after": N}``: only N more calls, then REQUEST_LIMIT_EXCEEDED;
                           ``{"restore": true}`` gives back what ``spent_after`` took
``POST /session``          a ready access token; ``POST /sessions/expire`` expires them all
``POST /refresh-token``    a refresh token, as a completed web-server flow leaves one:
                           ``{"username"?, "client_id"?}`` -> ``{"refresh_token", "client_id",
                           "instance_url", "username"}``
``POST /connected-app``    an administrator edits a connected app (the first unless ``client_id``
                           names one): ``{"rotate_refresh_tokens": bool}`` ("Enable Refresh Token
                           Rotation", see :class:`sfsync.emulator.oauth.ConnectedApp`) -> its settings
``POST /down``             the org goes down: ``{"mode": "503" | "refuse", "for_s"?}``, or comes back
                           up: ``{"mode": null}`` (see :mod:`sfsync.emulator.availability`)
=========================  ==================================================================
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sfsync.emulator import ids
from sfsync.emulator.describe import describe_field
from sfsync.emulator.errors import ApiError, not_found
from sfsync.emulator.faults import Faults, Visibility
from sfsync.emulator.model import FieldDef, format_datetime, json_row
from sfsync.emulator.rest import RestApi, json_response
from sfsync.emulator.rest_routing import ServedOrg, object_named


def _endpoint(handler: Callable[[Any], Any]) -> Callable[[Request], Awaitable[Response]]:
    """An admin handler (JSON payload -> JSON answer) as a Starlette endpoint."""

    async def run(request: Request) -> Response:
        body = await request.body()
        payload = orjson.loads(body) if body else {}
        try:
            return json_response(200, handler(payload))
        except ApiError as exc:
            return json_response(exc.status, exc.body())
        except (KeyError, TypeError, ValueError) as exc:
            return json_response(400, {"error": f"bad admin request: {exc}"})

    return run


def _ids(payload: Any) -> list[str]:
    given = payload["ids"] if "ids" in payload else [payload["id"]]
    return [str(record_id) for record_id in given]


class AdminApi:
    """The admin actions on ``org``; ``rest`` is the REST API whose query locators a reset drops."""

    def __init__(self, org: ServedOrg, rest: RestApi) -> None:
        self._org = org
        self._rest = rest
        self.snapshots: dict[str, Any] = {}
        self._removed_fields: dict[tuple[str, str], FieldDef] = {}  # (object, field) lower-cased -> as it was

    def routes(self) -> list[Route]:
        """The Starlette routes, relative to ``/__admin``."""
        return [
            Route("/reset", _endpoint(self.reset), methods=["POST"]),
            Route("/snapshot", _endpoint(self.snapshot), methods=["POST"]),
            Route("/restore", _endpoint(self.restore), methods=["POST"]),
            Route("/stats", _endpoint(lambda _p: self.stats()), methods=["GET"]),
            Route("/call-options", _endpoint(lambda _p: list(self._org.usage.call_options)), methods=["GET"]),
            Route("/edit", _endpoint(self.edit), methods=["POST"]),
            Route("/delete", _endpoint(self.delete), methods=["POST"]),
            Route("/undelete", _endpoint(self.undelete), methods=["POST"]),
            Route("/purge", _endpoint(self.purge), methods=["POST"]),
            Route("/empty-recycle-bin", _endpoint(self.empty_recycle_bin), methods=["POST"]),
            Route("/visibility", _endpoint(self.visibility), methods=["GET", "POST"]),
            Route("/convert-lead", _endpoint(self.convert_lead), methods=["POST"]),
            Route("/touch", _endpoint(self.touch), methods=["POST"]),
            Route("/fields", _endpoint(self.fields), methods=["POST"]),
            Route("/faults", _endpoint(self.faults), methods=["POST"]),
            Route("/faults", _endpoint(self.change_faults), methods=["PATCH"]),
            Route("/limits", _endpoint(self.limits), methods=["POST"]),
            Route("/sessions/expire", _endpoint(lambda _p: {"expired": self._org.auth.expire_all()}), methods=["POST"]),
            Route("/session", _endpoint(self.session), methods=["POST"]),
            Route("/refresh-token", _endpoint(self.refresh_token), methods=["POST"]),
            Route("/connected-app", _endpoint(self.connected_app), methods=["POST"]),
            Route("/down", _endpoint(self.down), methods=["POST"]),
        ]

    # ------------------------------------------------------------------ the emulator's controls
    def session(self, payload: Any) -> dict[str, Any]:
        """A ready session for local tools and benches (what `sf org display` gives for a real org)."""
        session = self._org.auth.issue_session(username=payload.get("username"))
        return {
            "access_token": session.access_token,
            "instance_url": session.instance_url,
            "user_id": session.user_id,
            "username": session.username,
        }

    def refresh_token(self, payload: Any) -> dict[str, Any]:
        """A refresh token for a user (default the first) of a connected app (default the first)."""
        auth = self._org.auth
        username = payload.get("username")
        try:
            token = auth.issue_refresh_token(username=username, client_id=payload.get("client_id"))
        except LookupError as exc:
            raise ApiError(404, "NOT_FOUND", str(exc)) from None
        user = auth.user(username) if username else auth.config.users[0]
        app = auth.app(payload["client_id"]) if payload.get("client_id") else auth.config.connected_apps[0]
        return {
            "refresh_token": token,
            "client_id": app.client_id if app else None,
            "instance_url": auth.config.instance_url,
            "username": user.username if user else None,
        }

    def connected_app(self, payload: Any) -> dict[str, Any]:
        """Change a connected app's settings (``rotate_refresh_tokens``); its settings as they now are."""
        changes: dict[str, Any] = {}
        if "rotate_refresh_tokens" in payload:
            if not isinstance(payload["rotate_refresh_tokens"], bool):
                raise TypeError("rotate_refresh_tokens is true or false")
            changes["rotate_refresh_tokens"] = payload["rotate_refresh_tokens"]
        try:
            app = self._org.auth.change_app(payload.get("client_id"), **changes)
        except LookupError as exc:
            raise ApiError(404, "NOT_FOUND", str(exc)) from None
        return {
            "client_id": app.client_id,
            "rotate_refresh_tokens": app.rotate_refresh_tokens,
            "allowed_grants": sorted(app.allowed_grants),
            "scopes": list(app.scopes),
        }

    def down(self, payload: Any) -> dict[str, Any]:
        """The org goes down (``mode`` "503" or "refuse", for ``for_s`` seconds if given) or comes back up
        (``mode`` null)."""
        for_s = payload.get("for_s")
        self._org.availability.set(payload["mode"], for_s=float(for_s) if for_s is not None else None)
        return self._org.availability.describe()

    def reset(self, _payload: Any = None) -> dict[str, Any]:
        """Remove every record except the users; zero the API counters; drop the query locators."""
        self._org.store.reset()
        self._org.usage.reset()
        self._rest.queries.forget_cursors()
        return {"reset": True}

    def snapshot(self, _payload: Any) -> dict[str, Any]:
        """Save the org's records under a new key: ``{"snapshot": key}``."""
        key = uuid.uuid4().hex
        self.snapshots[key] = self._org.store.snapshot()
        return {"snapshot": key}

    def restore(self, payload: Any) -> dict[str, Any]:
        """Go back to the records saved under ``payload["snapshot"]``."""
        self._org.store.restore(self.snapshots[payload["snapshot"]])
        return {"restored": payload["snapshot"]}

    def stats(self) -> dict[str, Any]:
        """API calls (total and per endpoint), the daily limit, and the faults with how many were injected."""
        usage = self._org.usage
        return {
            "api_calls": usage.api_calls,
            "daily_limit": usage.daily_limit,
            "remaining": usage.remaining,
            "by_endpoint": dict(usage.calls_by_endpoint),
            "faults": self._org.faults.describe(),
            "down": self._org.availability.describe(),
        }

    def fields(self, payload: Any) -> dict[str, Any]:
        """An administrator removes, restores or changes the access to one field (see the module table)."""
        store = self._org.store
        obj = object_named(store.schema, payload["sobject"])
        name = str(payload["field"])
        action = payload.get("action")
        if "readable" in payload:  # field-level security: an unreadable field is gone from the API
            action = "restore" if payload["readable"] else "remove"
        if action == "remove":
            if name.lower() == "id":
                raise ValueError("Id cannot be removed")
            removed = store.remove_field(obj.name, name)
            self._removed_fields[(obj.name.lower(), removed.name.lower())] = removed
            self._metadata_changed()
            return {"removed": f"{obj.name}.{removed.name}"}
        if action == "restore":
            definition = self._removed_fields.pop((obj.name.lower(), name.lower()), None)
            if definition is None:
                raise ValueError(f"{obj.name}.{name} was not removed")
            store.put_field(obj.name, definition)
            obj = object_named(store.schema, obj.name)  # a change replaces the object's definition
        elif action is not None:
            raise ValueError(f"action must be remove or restore, not {action!r}")
        definition = obj.field(name)
        if definition is None:
            raise ApiError(404, "NOT_FOUND", f"no field {name} on {obj.name}")
        if "createable" in payload or "updateable" in payload:
            definition = dataclasses.replace(
                definition,
                createable=bool(payload.get("createable", definition.createable)),
                updateable=bool(payload.get("updateable", definition.updateable)),
            )
            store.put_field(obj.name, definition)
            obj = object_named(store.schema, obj.name)
        self._metadata_changed()
        return describe_field(obj, definition)

    def _metadata_changed(self) -> None:
        """Describes changed: a later Last-Modified than any a client holds, so a revalidation gets them."""
        org = self._org
        org.metadata_modified = max(int(org.clock()), org.metadata_modified + 1)

    def faults(self, payload: Any) -> dict[str, Any]:
        """Replace every fault with ``payload["spec"]`` (FaultSpecError, a ValueError, for a bad one)."""
        spec = payload.get("spec", "")
        self._org.faults = Faults.parse(spec)
        return self._spend_daily(spec)

    def change_faults(self, payload: Any) -> dict[str, Any]:
        """Change only the faults ``payload["spec"]`` names; the others and the injected counts stay."""
        spec = payload.get("spec", "")
        self._org.faults.update(spec)
        return self._spend_daily(spec)

    def _spend_daily(self, spec: str) -> dict[str, Any]:
        """Apply the ``daily_spent_after`` of a spec just installed; the faults as they now are."""
        named = Faults.parse(spec).daily_spent_after  # None unless this spec names it
        if named is not None:
            self._org.usage.spend_after(named)
        return self._org.faults.describe()

    def limits(self, payload: Any) -> dict[str, Any]:
        """Set the daily API limit and/or the calls used so far; ``spent_after``: only that many more calls
        (the allocation runs out mid-run); ``restore``: give back what ``spent_after`` took."""
        usage = self._org.usage
        usage.set(
            daily_limit=int(payload["daily_api_limit"]) if "daily_api_limit" in payload else None,
            used=int(payload["used"]) if "used" in payload else None,
        )
        if payload.get("restore"):
            usage.give_back()
        if "spent_after" in payload:
            usage.spend_after(int(payload["spent_after"]))
        return {"daily_limit": usage.daily_limit, "used": usage.api_calls, "remaining": usage.remaining}

    def visibility(self, payload: Any) -> dict[str, Any]:
        """GET: the late-visibility rule and the writes not yet visible. POST ``{"delay_ms", "user",
        "sobject", "next", "rate"}``: replace the rule (``delay_ms`` 0 turns it off); other faults stay."""
        faults = self._org.faults
        if payload:
            next_count = payload.get("next")
            faults.visibility = Visibility(
                delay_ms=float(payload.get("delay_ms", 0)),
                user=payload.get("user"),
                sobject=payload.get("sobject"),
                remaining=int(next_count) if next_count is not None else None,
                rate=float(payload.get("rate", 1.0)),
            )
        pending = [
            {
                "id": late["id"],
                "SystemModstamp": format_datetime(late["SystemModstamp"]),
                "visible_at": format_datetime(late["visible_at"]),
            }
            for late in self._org.store.pending_visibility()
        ]
        return {**faults.visibility.describe(), "pending": pending}

    # ------------------------------------------------------------------ people and processes acting on records
    def edit(self, payload: Any) -> dict[str, Any]:
        """A user (a sales rep in the UI; default the integration user) edits records in one transaction:
        ``{"user", "sobject", "id", "values"}`` or ``{"user", "records": [{"sobject", "id", "values"}, ...]}``;
        a record without ``id`` is created. They share one SystemModstamp; LastModifiedById is the user."""
        store = self._org.store
        user = self._user_id(payload.get("user"))
        records = payload.get("records", [payload])
        written: list[str] = []
        with self._transaction(payload, user):
            for record in records:
                obj = object_named(store.schema, record.get("sobject") or payload["sobject"])
                if record.get("id"):
                    store.edit_as(user, obj.name, record["id"], record["values"])
                    written.append(ids.normalize(record["id"]))
                else:
                    written.append(store.create(obj.name, record["values"], user_id=user))
            stamp = self._stamp_of(written[-1]) if written else None
        answer: dict[str, Any] = {"ids": written, "by": user, "SystemModstamp": stamp}
        if "records" not in payload:
            answer["edited"] = payload.get("id") or written[0]
        return answer

    def delete(self, payload: Any) -> dict[str, Any]:
        """A user deletes records (to the recycle bin) in one transaction: ``{"user", "ids" | "id"}``."""
        user = self._user_id(payload.get("user"))
        record_ids = _ids(payload)
        with self._transaction(payload, user):
            for record_id in record_ids:
                self._org.store.delete(self._sobject_of(record_id), record_id, user_id=user)
            stamp = self._stamp_of(record_ids[-1]) if record_ids else None
        return {"deleted": [ids.normalize(i) for i in record_ids], "by": user, "SystemModstamp": stamp}

    def undelete(self, payload: Any) -> dict[str, Any]:
        """A user restores records from the recycle bin in one transaction: ``{"user", "ids" | "id"}``."""
        user = self._user_id(payload.get("user"))
        record_ids = _ids(payload)
        with self._transaction(payload, user):
            for record_id in record_ids:
                self._org.store.undelete(record_id, user_id=user)
            stamp = self._stamp_of(record_ids[-1]) if record_ids else None
        return {"undeleted": [ids.normalize(i) for i in record_ids], "by": user, "SystemModstamp": stamp}

    def purge(self, payload: Any) -> dict[str, Any]:
        """Hard delete (Bulk hardDelete / emptyRecycleBin(ids)): ``{"user", "ids" | "id"}``, live or in the
        recycle bin. Gone from queryAll; getDeleted still lists them (see :mod:`sfsync.emulator.recycle_bin`)."""
        user = self._user_id(payload.get("user"))
        record_ids = _ids(payload)
        with self._transaction(payload, user):
            for record_id in record_ids:
                self._org.store.purge(record_id, user_id=user)
        return {"purged": [ids.normalize(i) for i in record_ids], "by": user}

    def empty_recycle_bin(self, payload: Any) -> dict[str, Any]:
        """An administrator empties the recycle bin: ``{"truncate_delete_log": true}`` (the default) also
        drops the delete log, so getDeleted reports none of those deletes (earliestDateAvailable = now)."""
        user = self._user_id(payload.get("user"))
        truncate = bool(payload.get("truncate_delete_log", True))
        purged = self._org.store.empty_recycle_bin(truncate_delete_log=truncate, user_id=user)
        return {"purged": purged, "delete_log_truncated": truncate}

    def touch(self, payload: Any) -> dict[str, Any]:
        """An automated process (trigger, roll-up, system job) writes or just touches a record: SystemModstamp
        moves, LastModifiedDate and LastModifiedById do not."""
        store = self._org.store
        obj = object_named(store.schema, payload["sobject"])
        with self._transaction(payload, store.integration_user_id):
            store.system_touch(obj.name, payload["id"], payload.get("values"))
            stamp = self._stamp_of(payload["id"])
        return {"touched": ids.normalize(payload["id"]), "SystemModstamp": stamp}

    def convert_lead(self, payload: Any) -> dict[str, Any]:
        """Convert a lead: ``{"lead_id", "contact_id"?, "account_id"?}`` -> ``{"accountId", "contactId"}``."""
        account_id, contact_id = self._org.store.convert_lead(
            payload["lead_id"], contact_id=payload.get("contact_id"), account_id=payload.get("account_id")
        )
        return {"accountId": account_id, "contactId": contact_id}

    # ------------------------------------------------------------------ helpers
    def _transaction(self, payload: Any, user: str) -> AbstractContextManager[None]:
        """One transaction for an admin action, committed ``visibility_delay_ms`` late when given
        (otherwise as the visibility fault rule says)."""
        delay = payload.get("visibility_delay_ms")
        return self._org.store.transaction(
            user_id=user, visibility_delay=dt.timedelta(milliseconds=float(delay)) if delay is not None else None
        )

    def _stamp_of(self, record_id: str) -> str | None:
        found = self._org.store.row_by_id(record_id, visible_only=False)
        return json_row({"v": found[1].get("SystemModstamp")})["v"] if found is not None else None

    def _sobject_of(self, record_id: str) -> str:
        found = self._org.store.row_by_id(record_id, visible_only=False)
        if found is None:
            raise not_found()
        return found[0].name

    def _user_id(self, user: Any) -> str:
        store = self._org.store
        if user is None:
            return str(store.integration_user_id)
        for user_id, info in store.users.items():
            if user in (user_id, info.get("username"), info.get("Username")):
                return str(user_id)
        raise ApiError(404, "NOT_FOUND", f"no such user: {user}")
