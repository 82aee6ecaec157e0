"""Builders of ``sfsync.writes`` records and the sink over the emulator, in process (no sockets).

- :func:`write`: one Write (the dict the sink decodes), and its usual shapes :func:`member` (a Contact
  matched by email), :func:`campaign` (a Campaign by its event's external id) and
  :func:`registration` (a CampaignMember under both); :func:`fv` is one field value;
- :func:`planned_member`: the Write the shipped default mapping plans for a member's profile event
  (keyed by the member id, matched on it, then on Email), as the processor would send it;
- :class:`Recorder`: the sink's callbacks (parked writes, error-log entries, sleeps), recorded;
- :func:`make_sink`: a :class:`~sfsync.sinks.writer.SalesforceSink` and its client over an emulator
  (:class:`InProcessOrg`), with short retry waits and the :class:`Recorder`'s sleep;
- :class:`InProcessOrg`: an emulator as an ``httpx`` transport, in process; a connection the emulator
  drops (the ``commitdrop`` fault) reaches the client as over a socket (``RemoteProtocolError``);
- :class:`Harness`: a sink, its client, its emulator and its :class:`Recorder`, fed writes at the next offsets.

Times are epoch milliseconds from :data:`T0`; :data:`TOPIC` is the writes topic the records come from.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any
from uuid import UUID

import httpx
from pydantic import SecretStr

from sfsync import time as sfsync_time
from sfsync.emulator.app import Emulator
from sfsync.emulator.connection_drop import ConnectionDropped
from sfsync.errors import SfsyncError
from sfsync.keys import record_key
from sfsync.mapping import MappingFile, load_mappings
from sfsync.processors.outbound.plan import plan
from sfsync.producers import events as ev
from sfsync.salesforce import SalesforceClient, StaticTokenAuth
from sfsync.salesforce.settings import SalesforceSettings
from sfsync.sinks.contract import BatchOutcome, ErrorEntry, IncomingWrite
from sfsync.sinks.settings import SinkSettings
from sfsync.sinks.writer import SalesforceSink
from tests.kit.clock import EpochClock
from tests.kit.events import decoded
from tests.kit.kafka import FakeMessage

__all__ = [
    "INSTANCE",
    "T0",
    "TOPIC",
    "WORKSPACE",
    "ByKey",
    "Harness",
    "InProcessOrg",
    "Recorder",
    "campaign",
    "fv",
    "make_sink",
    "member",
    "message",
    "planned_member",
    "registration",
    "write",
]

INSTANCE = "https://127.0.0.1"
"""The instance URL the sink's client believes it talks to (the emulator answers in process)."""
T0 = 1_700_000_000_000
"""The time (epoch milliseconds) of every field value and event unless a builder is told otherwise."""
TOPIC = "sfsync.writes"
WORKSPACE = "ws-1"
"""The workspace of every write and event the builders make (the first part of their record keys)."""


@dataclass
class Recorder:
    """The sink's callbacks: what it parked, the error-log entries it wrote, how long it slept."""

    parked: list[tuple[IncomingWrite, SfsyncError]] = field(default_factory=list)
    entries: list[ErrorEntry] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    async def park(self, write: IncomingWrite, error: SfsyncError) -> None:
        self.parked.append((write, error))

    async def entry(self, entry: ErrorEntry) -> None:
        self.entries.append(entry)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@dataclass
class Harness:
    """A sink on an emulator and what it recorded; :meth:`put` hands it writes at the next offsets."""

    emulator: Emulator
    client: SalesforceClient
    sink: SalesforceSink
    rec: Recorder
    offset: int = 0

    def incoming(self, *writes: dict[str, Any], partition: int = 0) -> list[IncomingWrite]:
        out = []
        for w in writes:
            out.append(IncomingWrite(w, TOPIC, partition, self.offset, w["key"].encode(), b"raw"))
            self.offset += 1
        return out

    async def put(self, *writes: dict[str, Any]) -> BatchOutcome:
        return await self.sink.put(self.incoming(*writes))

    async def query(self, soql: str) -> list[dict[str, Any]]:
        return [r async for r in self.client.query(soql)]


class InProcessOrg(httpx.ASGITransport):
    """``emulator`` served in process; its dropped connections are raised as httpx raises a socket's."""

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(app=emulator.asgi())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request) from exc


def make_sink(
    emulator: Emulator,
    rec: Recorder,
    *,
    wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    clock: EpochClock | None = None,
    before_call: Callable[[str], Awaitable[None]] | None = None,
    pause_left: Callable[[], float | None] | None = None,
    mappings: MappingFile | None = None,
    on_quarantine: Callable[[str, bool], None] | None = None,
    **overrides: Any,
) -> tuple[SalesforceClient, SalesforceSink]:
    """A sink on ``emulator`` reporting to ``rec`` (its transport through ``wrap``, e.g. a :class:`FaultyOrg`;
    ``overrides``: :class:`SinkSettings` fields); enter the client (``async with client``) around its use.
    With ``clock``, the sink's retry waits move that clock and its retry deadlines (and quarantine
    rechecks) read it; else they are recorded only. ``before_call`` and ``pause_left``: the API
    governor's hooks, as the sink process wires them (``Governor.before_call`` with a bounded wait,
    ``Governor.pause_left_s``); none by default. ``mappings``, ``on_quarantine``: as
    :class:`SalesforceSink` takes them."""
    token = emulator.auth.issue_session().access_token
    transport: httpx.AsyncBaseTransport = InProcessOrg(emulator)
    connection: dict[str, Any] = {  # the other settings: their defaults (or the environment's)
        "instance_url": INSTANCE,
        "auth_flow": "access_token",
        "access_token": SecretStr(token),
    }
    client = SalesforceClient(
        SalesforceSettings(**connection),
        auth=StaticTokenAuth(access_token=SecretStr(token), instance_url=INSTANCE),
        transport=wrap(transport) if wrap is not None else transport,
        sleep=rec.sleep,
    )
    settings = SinkSettings(**{"retry_wait_initial_s": 0.01, "retry_wait_max_s": 1.0, **overrides})
    sink = SalesforceSink(
        client,
        settings=settings,
        on_parked=rec.park,
        on_error_entry=rec.entry,
        clock=lambda: T0 / 1000,
        sleep=clock.sleep if clock is not None else rec.sleep,
        monotonic=clock if clock is not None else sfsync_time.monotonic,
        before_call=before_call,
        pause_left=pause_left,
        mappings=mappings,
        on_quarantine=on_quarantine,
    )
    return client, sink


def fv(value: Any, at: int = T0, policy: str = "ALWAYS") -> dict[str, Any]:
    """One field value: ``value`` as of ``at``, written under ``policy`` (``ALWAYS`` / ``IF_EMPTY``)."""
    return {"value": value, "policy": policy, "updated_at": at}


def write(
    key: str,
    sobject: str,
    fields: dict[str, Any],
    *,
    n: int = 0,
    mapping: str = "members",
    match: Sequence[tuple[str, str]] = (),
    external_id: tuple[str, str] | None = None,
    search_objects: Sequence[str] = (),
    parents: dict[str, tuple[str, str]] | None = None,
    operation: str = "UPSERT",
    create_if_missing: bool = True,
    record_type: str | None = None,
) -> dict[str, Any]:
    """One Write of record ``key``, from the ``n``-th product event (its offset and event id)."""
    return {
        "write_id": f"evt-{key}-{n}:{mapping}:0",
        "key": key,
        "mapping": mapping,
        "sobject": sobject,
        "operation": operation,
        "external_id": {"field": external_id[0], "value": external_id[1]} if external_id else None,
        "match": [{"field": f, "value": v} for f, v in match],
        "search_objects": list(search_objects),
        "create_if_missing": create_if_missing,
        "record_type": record_type,
        "fields": fields,
        "parents": {k: {"key": pk, "sobject": ps} for k, (pk, ps) in (parents or {}).items()},
        "workspace_id": WORKSPACE,
        "source": {
            "topic": "product.members",
            "partition": 0,
            "offset": n,
            "event_id": f"evt-{key}-{n}",
            "event_type": "UserCreated",
            "occurred_at": datetime.fromtimestamp(T0 / 1000, UTC),
        },
    }


def member(
    i: int,
    *,
    email: str | None = None,
    last: str | None = None,
    title: str | None = None,
    title_policy: str = "ALWAYS",
    at: int = T0,
    n: int = 0,
    **kw: Any,
) -> dict[str, Any]:
    """The Contact of member ``i`` (``member<i>@example.org`` unless ``email``), matched by its email;
    with a ``Title`` (written under ``title_policy``) when ``title`` is given."""
    mail = email or f"member{i}@example.org"
    fields = {"Email": fv(mail, at), "LastName": fv(last or f"Member{i}", at)}
    if title is not None:
        fields["Title"] = fv(title, at, title_policy)
    key = record_key(WORKSPACE, "Contact", "Email", mail)
    return write(key, "Contact", fields, match=[("Email", mail)], n=n, **kw)


def planned_member(
    member_id: str,
    email: str | None,
    *,
    last: str = "Member",
    title: str | None = None,
    at: int = T0,
    n: int = 0,
    event_type: str = "UserProfileUpdate",
) -> dict[str, Any]:
    """The ``members`` Write the shipped default mapping plans for ``event_type`` (UserCreated or
    UserProfileUpdate) of member ``member_id`` at ``at``: ``plan()`` itself, as the processor runs it.
    The ``n``-th such event of a test has event id ``n`` (a replay plans the same write)."""
    profile = ev.MemberProfile(
        member_id=member_id,
        email=email,
        last_name=last,
        title=title,
        signed_up_at=datetime.fromtimestamp(T0 / 1000, UTC),
    )
    event_id, occurred_at = str(UUID(int=n)), datetime.fromtimestamp(at / 1000, UTC)
    event: ev.UserCreated | ev.UserProfileUpdate = (
        ev.UserCreated(event_id=event_id, occurred_at=occurred_at, workspace_id=WORKSPACE, member=profile)
        if event_type == "UserCreated"
        else ev.UserProfileUpdate(event_id=event_id, occurred_at=occurred_at, workspace_id=WORKSPACE, member=profile)
    )
    source = _Source("product.members", 0, n)
    planned = plan(event_type, decoded(event), source, _default_mappings()).writes
    (found,) = [w for w in planned if w["mapping"] == "members"]
    return found


@dataclass(frozen=True)
class _Source:
    topic: str
    partition: int
    offset: int


@cache
def _default_mappings() -> MappingFile:
    return load_mappings()


def campaign(event: str, name: str = "Meetup", n: int = 0) -> dict[str, Any]:
    """The Campaign of product event ``event``, upserted by its external id ``Event_Id__c``."""
    return write(
        record_key(WORKSPACE, "Campaign", "Event_Id__c", event),
        "Campaign",
        {"Name": fv(name)},
        mapping="events",
        external_id=("Event_Id__c", event),
        n=n,
    )


def registration(event: str, email: str, status: str = "registered", n: int = 0) -> dict[str, Any]:
    """The CampaignMember of ``email``'s Contact in ``event``'s Campaign (both its parents), keyed as
    :func:`~sfsync.processors.outbound.plan.plan` keys it (its parents' keys in a JSON array)."""
    campaign_key = record_key(WORKSPACE, "Campaign", "Event_Id__c", event)
    contact_key = record_key(WORKSPACE, "Contact", "Email", email)
    return write(
        record_key(
            WORKSPACE,
            "CampaignMember",
            "CampaignId+ContactId",
            json.dumps([campaign_key, contact_key], separators=(",", ":")),
        ),
        "CampaignMember",
        {"Attendee_Status__c": fv(status, T0 + n)},
        mapping="event_registrations",
        match=[("CampaignId+ContactId", "")],
        parents={
            "CampaignId": (campaign_key, "Campaign"),
            "ContactId": (contact_key, "Contact"),
        },
        n=n,
    )


def message(write: dict[str, Any], partition: int, offset: int) -> FakeMessage:
    """A record of ``sfsync.writes`` whose value is its key (``ByKey`` decodes it back to ``write``)."""
    key = write["key"].encode()
    return FakeMessage(value=key, key=key, topic=TOPIC, partition=partition, offset=offset)


@dataclass
class ByKey:
    """Decodes the fake value (the record key) back to its Write; encodes a result (or an Identity) as
    ``<record name>|<key>``: which record went where, readable in a fake producer's records."""

    writes: dict[bytes, dict[str, Any]]

    def prefetch(self, data: bytes | None) -> Awaitable[None] | None:
        """Nothing to fetch: the writes are at hand."""
        return None

    def decode(self, data: bytes) -> tuple[str, dict[str, Any]]:
        return "Write", self.writes[data]

    def encode(self, record_name: str, value: Any) -> bytes:
        return f"{record_name}|{value['key']}".encode()

    def encode_checked(self, record_name: str, value: Any) -> bytes:
        return self.encode(record_name, value)


class _FlushedLog:
    """An error log with nothing to flush."""

    def flush(self, timeout_s: float) -> None:
        return None


def runner_without_kafka(metrics: Any) -> Any:
    """A :class:`~sfsync.sinks.main.SinkRunner` with default settings, ``metrics``, no DLQ, and a
    worker whose consumer is the kit's fake: enough to call ``after_batch`` and observe."""
    from sfsync.salesforce.governor import GovernorSettings
    from sfsync.sinks.main import SinkRunner
    from sfsync.sinks.settings import SinkSettings
    from tests.kit.kafka import FakeConsumer

    runner = SinkRunner(
        settings=SinkSettings(),  # type: ignore[call-arg]
        governor_settings=GovernorSettings(),  # type: ignore[call-arg]
        metrics=metrics,
        error_log=_FlushedLog(),  # type: ignore[arg-type]
        dlq=None,  # type: ignore[arg-type]
    )

    class _Worker:
        consumer = FakeConsumer()

    runner.worker = _Worker()  # type: ignore[assignment]
    return runner
