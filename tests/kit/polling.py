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

__all__ = ["BASE", "CommittedPages", "PolledOrg", "WindowedOrg", "ms", "polled_org", "rid", "row", "stamp"]

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


class PolledOrg:
    """One org as the poller's queries meet it, for an ``httpx.MockTransport``: ``/queryAll`` answers one page,
    empty, or when ``busy`` a Contact modified since the last query (so every poll finds a change); every other
    path ``NOT_FOUND``; ``down`` answers everything ``503 SERVER_UNAVAILABLE``, ``refused`` everything ``401
    INVALID_SESSION_ID`` (its token is no longer good, and a static token is not refreshed). ``call_s``: how
    long each call takes on ``clock`` (its ``sleep``: the tests' fake clock moves on). :attr:`queries` lists
    the clock's reading at each query (down or not)."""

    def __init__(self, clock: Any, *, busy: bool = False, call_s: float = 0.0) -> None:
        self.clock = clock
        self.busy = busy
        self.call_s = call_s
        self.down = False
        self.refused = False
        self.queries: list[float] = []
        self._made = 0

    async def __call__(self, request: Any) -> Any:
        import httpx

        if self.call_s:
            await self.clock.sleep(self.call_s)
        headers = {"Sforce-Limit-Info": "api-usage=10/100000"}
        if "/queryAll" in request.url.path:
            self.queries.append(self.clock())
        if self.down:
            body = [{"errorCode": "SERVER_UNAVAILABLE", "message": "maintenance"}]
            return httpx.Response(503, json=body, headers=headers)
        if self.refused:
            body = [{"errorCode": "INVALID_SESSION_ID", "message": "Session expired or invalid"}]
            return httpx.Response(401, json=body, headers=headers)
        if "/queryAll" in request.url.path:
            rows = []
            if self.busy:
                self._made += 1
                rows.append(row(rid(self._made), ms(self._made)))
            page = {"totalSize": len(rows), "done": True, "records": rows}
            return httpx.Response(200, json=page, headers=headers)
        return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": request.url.path}], headers=headers)


class WindowedOrg:
    """One object of an org as the poller's window query meets it, with the org's own clock.

    Every record's versions carry the moment they become visible (a transaction that commits after its
    SystemModstamp: :meth:`put` with ``visible_at_ms``); a query sees, for each record, its newest version
    visible at the org's time :attr:`now_ms`. :meth:`query` is the query for the pure rules;
    ``WindowedOrg`` is also an ``httpx.MockTransport`` handler: ``/queryAll`` runs the query (a snapshot),
    pages of :attr:`batch` rows through ``nextRecordsUrl``, every response with the HTTP ``Date`` the org's
    clock reads. :attr:`calls` counts the API calls the queries cost (a call per query page, at least one)."""

    def __init__(self, now_ms: int, *, batch: int = 2000) -> None:
        self.now_ms = now_ms
        self.batch = batch
        self.calls = 0
        self.versions: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        self._cursors: dict[str, list[dict[str, Any]]] = {}

    def put(self, record: dict[str, Any], *, visible_at_ms: int | None = None) -> None:
        """A new version of ``record``, visible from ``visible_at_ms`` (default: now)."""
        at = self.now_ms if visible_at_ms is None else visible_at_ms
        self.versions.setdefault(record["Id"], []).append((at, record))

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)

    def date(self) -> dt.datetime:
        """The HTTP ``Date`` the org answers with now: its time, truncated to the second."""
        return rules.from_ms(self.now_ms - self.now_ms % 1000)

    def visible(self) -> list[dict[str, Any]]:
        """What a query sees now: each record's newest visible version, in (SystemModstamp, Id) order."""
        seen = []
        for versions in self.versions.values():
            shown = [r for at, r in versions if at <= self.now_ms]
            if shown:
                seen.append(shown[-1])
        return sorted(seen, key=lambda r: (rules.to_ms(rules.parse_sf_datetime(r["SystemModstamp"])), r["Id"]))

    def window(self, since_ms: int | None) -> list[dict[str, Any]]:
        """Every row the poll query from ``since_ms`` (None: all) returns now; no call counted."""
        return [
            r
            for r in self.visible()
            if since_ms is None or rules.to_ms(rules.parse_sf_datetime(r["SystemModstamp"])) >= since_ms
        ]

    def query(self, since_ms: int | None) -> list[dict[str, Any]]:
        """:meth:`window`, counting the calls its query pages cost in :attr:`calls`."""
        rows = self.window(since_ms)
        self.calls += max(1, -(-len(rows) // self.batch))
        return rows

    def __call__(self, request: Any) -> Any:
        import email.utils
        from urllib.parse import parse_qs, urlparse

        import httpx

        headers = {"Sforce-Limit-Info": "api-usage=10/100000", "Date": email.utils.format_datetime(self.date(), True)}
        path = request.url.path
        if path.endswith("/queryAll"):
            soql = parse_qs(urlparse(str(request.url)).query)["q"][0]
            _, _, since = soql.partition(" WHERE SystemModstamp >= ")
            since_ms = rules.to_ms(rules.parse_sf_datetime(since.split(" ")[0])) if since else None
            cursor, start = str(len(self._cursors)), 0
            self._cursors[cursor] = self.window(since_ms)  # a query cursor: a snapshot
        elif "/queryAll/" in path:
            cursor, _, offset = path.rsplit("/", 1)[1].partition("-")
            start = int(offset)
        else:
            return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": path}], headers=headers)
        self.calls += 1
        rows = self._cursors[cursor]
        done = start + self.batch >= len(rows)
        body: dict[str, Any] = {"totalSize": len(rows), "done": done, "records": rows[start : start + self.batch]}
        if not done:
            body["nextRecordsUrl"] = f"/services/data/v62.0/queryAll/{cursor}-{start + self.batch}"
        return httpx.Response(200, json=body, headers=headers)


class CommittedPages:
    """Stands for an object's transactional producer: keeps each committed transaction's records."""

    def __init__(self) -> None:
        self.committed: list[list[tuple[str, bytes, bytes, int | None]]] = []

    def commit(self, records: list[tuple[str, bytes, bytes, int | None]]) -> None:
        self.committed.append(records)

    def close(self) -> None:
        pass


def polled_org(
    connection_id: str,
    org: PolledOrg,
    *,
    settings: Any,
    record: Any,
    workspaces: Any = (),
    objects: tuple[str, ...] = ("Contact",),
    checked: bool = True,
) -> Any:
    """An :class:`~sfsync.sources.orgs.OrgPoller` of ``org`` (a static token, no login) with ``objects`` taken over
    (Contact as the shipped members mapping reads it, any other object reading nothing but its system fields;
    checkpoints keyed as ``connection_id``'s, each a :class:`CommittedPages`), its turns timed by ``org.clock``."""
    import httpx
    import orjson
    from prometheus_client import CollectorRegistry

    from sfsync.salesforce import SalesforceSettings
    from sfsync.salesforce.governor import GovernorSettings
    from sfsync.sources.metrics import SourceMetrics
    from sfsync.sources.objects import ObjectPoller
    from sfsync.sources.orgs import OrgPoller
    from sfsync.sources.poller import partition_for
    from tests.kit.mappings import mappings_from, members_yaml

    async def fake_sleep(seconds: float) -> None:
        await org.clock.sleep(seconds)

    files = [mappings_from(members_yaml("{sf: FirstName, from: member.first_name, direction: both}"))]
    poller = OrgPoller(
        connection_id,
        SalesforceSettings.model_validate(
            {"auth_flow": "access_token", "access_token": "00Dx!t", "instance_url": "https://org.example.test"}
        ),
        files=files,
        settings=settings,
        governor_settings=GovernorSettings.model_validate({}),
        on_response=lambda request, response: None,
        record=record,
        sleep=fake_sleep,
        governed_sleep=fake_sleep,
        workspaces=workspaces,
        transport=httpx.MockTransport(org),
    )
    poller.checked = checked
    metrics = SourceMetrics(CollectorRegistry())
    for name in objects:
        plan = poller.plans.get(name) or rules.ObjectPlan(name, ())
        key = poller.key_of(name)
        poller.objects[name] = ObjectPoller(
            plan,
            rules.Checkpoint(name),
            settings=settings,
            client=poller.client,
            governor=poller.governor,
            transactions=CommittedPages(),  # type: ignore[arg-type]
            encode=orjson.dumps,
            metrics=metrics,
            checkpoint_partition=partition_for(key, settings.checkpoint_partitions),
            checkpoint_key=key,
            workspace_id=poller.workspace_id,
        )
    return poller
