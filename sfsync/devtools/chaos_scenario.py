"""The chaos run's scenario, as pure functions: the product's events, the poison records, the sales
reps' edits, the org those imply, and how far the org and the inbound topic are from it.

``bench/chaos.py`` runs it (every worker in its own process, faults all the while) with the mapping
``bench/chaos_mapping.yaml``; the expectations here are that mapping's, worked out from the events
alone (no planner code):

- a member is a Contact matched on ``Member_Id__c``: ``FirstName``, ``LastName``, ``Email``,
  ``Member_Type__c`` and ``Approval_Status__c`` hold the values of the member's latest event that
  carries them. ``Title`` and ``Phone`` belong to the sales reps (they flow Salesforce -> product
  only): a Contact holds the last values a rep gave it, or none.
- a community event is a Campaign matched on ``Event_Id__c``: ``Name`` (the latest title) and
  ``IsActive``.
- a registration is one CampaignMember per (member, event): ``Attendee_Status__c`` is
  ``registered`` or ``attended``; a cancellation deletes it, a later registration creates it again.

:func:`compare` counts what is **lost** (an expected record missing, or an expected value missing),
**duplicated** (more than one record for one identity, or a record with none) and **stale** (a value
other than the latest event's, or a record whose deletion did not happen); :func:`inbound_missing`
counts the rep-edited members whose latest edit did not reach ``product.members.inbound``;
:func:`parked_report` holds the DLQ against the poison records sent.
"""

from __future__ import annotations

import datetime as dt
import operator
import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sfsync.producers import events as ev

WORKSPACE = "ws-chaos"
REP_USER = "rep@acme.test"  # the sales rep of emulator/default_org.yaml
REP_FIELDS = ("Title", "Phone")
"""The fields the reps own: written by them only, flowing back to the product (``member.title`` /
``member.phone``)."""
INBOUND_PATHS = {"Title": "member.title", "Phone": "member.phone"}
MEMBER_TYPES = {
    ev.MemberType.GUEST: "Guest",
    ev.MemberType.STANDARD: "Standard",
    ev.MemberType.LIMITED_APPROVAL: "Limited Approval",
}
"""The chaos mapping's value map of the member type (product enum -> picklist value)."""
APPROVAL = {
    ev.ApprovalStatus.APPROVED: "approved",
    ev.ApprovalStatus.PENDING: "pending",
    ev.ApprovalStatus.UNAPPROVED: "unapproved",
}
"""The chaos mapping's value map of the approval status."""

FIRST_NAMES = (
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Donald",
    "Radia", "Tim", "Sophie", "Linus", "Guido", "Katherine", "John", "Hedy", "Niklaus", "Jean",
)  # fmt: skip
LAST_NAMES = (
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Thompson", "Hamilton", "Ritchie", "Allen",
    "Knuth", "Perlman", "Berners-Lee", "Wilson", "Torvalds", "van Rossum", "Johnson", "McCarthy",
    "Lamarr", "Wirth", "Sammet",
)  # fmt: skip
REP_TITLES = ("Head of Partnerships", "VP Customer Success", "Director of Community", "Solutions Architect", "CTO")

KINDS = (
    ("UserCreated", 9),
    ("UserProfileUpdate", 20),
    ("UserTypeChange", 7),
    ("UserApprovalChange", 7),
    ("NewEventPublished", 2),
    ("EventUpdated", 3),
    ("EventRegistration", 26),
    ("EventAttend", 13),
    ("EventRegistrationCancel", 13),
)
"""Event types of the stream and their weights (per 100)."""


# ====================================================================== the product's events
@dataclass
class _Member:
    member_id: str
    email: str
    first_name: str
    last_name: str
    member_type: ev.MemberType
    approval: ev.ApprovalStatus
    signed_up_at: dt.datetime


@dataclass
class ChaosCommunity:
    """A seeded community: the same seed gives the same events (but for ``occurred_at``, which the
    caller stamps). Members are created, renamed, retyped, approved; events are published and renamed;
    members register, attend, cancel and register again."""

    seed: int
    workspace_id: str = WORKSPACE
    rng: random.Random = field(init=False)
    members: dict[str, _Member] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)  # event id -> title
    attending: dict[tuple[str, str], str] = field(default_factory=dict)  # (member, event) -> status
    _revision: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # noqa: S311 - a simulation, not cryptography

    def stream(self, count: int, clock: Callable[[], dt.datetime]) -> Iterator[ev.ProductEvent]:
        """``count`` events, each stamped ``occurred_at = clock()`` as it is made."""
        for _ in range(count):
            yield self.next_event(clock())

    def next_event(self, at: dt.datetime) -> ev.ProductEvent:
        kind = self.rng.choices([k for k, _ in KINDS], weights=[w for _, w in KINDS])[0]
        made = getattr(self, f"_{kind}")(at)
        return made if made is not None else self._UserCreated(at)

    # ------------------------------------------------------------------ helpers
    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _ref(self, member: _Member) -> ev.MemberRef:
        return ev.MemberRef(
            member_id=member.member_id, email=member.email, first_name=member.first_name, last_name=member.last_name
        )

    def _profile(self, member: _Member) -> ev.MemberProfile:
        return ev.MemberProfile(
            member_id=member.member_id,
            email=member.email,
            first_name=member.first_name,
            last_name=member.last_name,
            member_type=member.member_type,
            approval_status=member.approval,
            signed_up_at=member.signed_up_at,
        )

    def _some_member(self) -> _Member | None:
        return self.members[self.rng.choice(list(self.members))] if self.members else None

    def _other(self, options: Sequence[Any], current: Any) -> Any:
        return self.rng.choice([o for o in options if o != current])

    # ------------------------------------------------------------------ one method per event type
    def _UserCreated(self, at: dt.datetime) -> ev.ProductEvent:  # noqa: N802 - named after the event type
        member_id = f"m-{len(self.members):06d}"
        member = _Member(
            member_id=member_id,
            email=f"{member_id}@chaos.example",
            first_name=self.rng.choice(FIRST_NAMES),
            last_name=self.rng.choice(LAST_NAMES),
            member_type=self.rng.choice(list(ev.MemberType)),
            approval=self.rng.choice(list(ev.ApprovalStatus)),
            signed_up_at=at.replace(microsecond=0),
        )
        self.members[member_id] = member
        return ev.UserCreated(
            event_id=self._uuid(), occurred_at=at, workspace_id=self.workspace_id, member=self._profile(member)
        )

    def _UserProfileUpdate(self, at: dt.datetime) -> ev.ProductEvent | None:  # noqa: N802
        member = self._some_member()
        if member is None:
            return None
        changed = self.rng.choice(("first_name", "last_name", "names", "email"))
        if changed in ("first_name", "names"):
            member.first_name = self._other(FIRST_NAMES, member.first_name)
        if changed in ("last_name", "names"):
            member.last_name = self._other(LAST_NAMES, member.last_name)
        if changed == "email":
            self._revision[member.member_id] += 1
            member.email = f"{member.member_id}.{self._revision[member.member_id]}@chaos.example"
        return ev.UserProfileUpdate(
            event_id=self._uuid(),
            occurred_at=at,
            workspace_id=self.workspace_id,
            member=self._profile(member),
            changed_fields=["first_name", "last_name"] if changed == "names" else [changed],
        )

    def _UserTypeChange(self, at: dt.datetime) -> ev.ProductEvent | None:  # noqa: N802
        member = self._some_member()
        if member is None:
            return None
        previous, member.member_type = member.member_type, self._other(list(ev.MemberType), member.member_type)
        return ev.UserTypeChange(
            event_id=self._uuid(),
            occurred_at=at,
            workspace_id=self.workspace_id,
            member=self._ref(member),
            member_type=member.member_type,
            previous_member_type=previous,
        )

    def _UserApprovalChange(self, at: dt.datetime) -> ev.ProductEvent | None:  # noqa: N802
        member = self._some_member()
        if member is None:
            return None
        previous, member.approval = member.approval, self._other(list(ev.ApprovalStatus), member.approval)
        return ev.UserApprovalChange(
            event_id=self._uuid(),
            occurred_at=at,
            workspace_id=self.workspace_id,
            member=self._ref(member),
            approval_status=member.approval,
            previous_approval_status=previous,
        )

    def _community_event(self, event_id: str, at: dt.datetime) -> ev.CommunityEvent:
        return ev.CommunityEvent(
            id=event_id, title=self.events[event_id], start_at=at.replace(microsecond=0), published=True
        )

    def _NewEventPublished(self, at: dt.datetime) -> ev.ProductEvent:  # noqa: N802
        event_id = f"e-{len(self.events):05d}"
        self.events[event_id] = f"Chaos meetup {len(self.events)}"
        return ev.NewEventPublished(
            event_id=self._uuid(),
            occurred_at=at,
            workspace_id=self.workspace_id,
            event=self._community_event(event_id, at),
        )

    def _EventUpdated(self, at: dt.datetime) -> ev.ProductEvent | None:  # noqa: N802
        if not self.events:
            return None
        event_id = self.rng.choice(list(self.events))
        self._revision[event_id] += 1
        self.events[event_id] = f"Chaos meetup {event_id[2:]} (revision {self._revision[event_id]})"
        return ev.EventUpdated(
            event_id=self._uuid(),
            occurred_at=at,
            workspace_id=self.workspace_id,
            event=self._community_event(event_id, at),
            changed_fields=["title"],
        )

    def _attendance(self, kind: type[Any], member_id: str, event_id: str, at: dt.datetime) -> ev.ProductEvent:
        made: ev.ProductEvent = kind(
            event_id=self._uuid(),
            occurred_at=at,
            workspace_id=self.workspace_id,
            member=self._ref(self.members[member_id]),
            event=ev.EventRef(id=event_id, title=self.events[event_id]),
        )
        return made

    def _EventRegistration(self, at: dt.datetime) -> ev.ProductEvent | None:  # noqa: N802
        if not self.members or not self.events:
            return None
        for _ in range(5):
            pair = (self.rng.choice(list(self.members)), self.rng.choice(list(self.events)))
            if pair not in self.attending:
                self.attending[pair] = "registered"
                return self._attendance(ev.EventRegistration, *pair, at)
        return None

    def _EventAttend(self, at: dt.datetime) -> ev.ProductEvent | None:  # noqa: N802
        registered = [pair for pair, status in self.attending.items() if status == "registered"]
        if not registered:
            return None
        pair = self.rng.choice(registered)
        self.attending[pair] = "attended"
        return self._attendance(ev.EventAttend, *pair, at)

    def _EventRegistrationCancel(self, at: dt.datetime) -> ev.ProductEvent | None:  # noqa: N802
        if not self.attending:
            return None
        pair = self.rng.choice(list(self.attending))
        del self.attending[pair]
        return self._attendance(ev.EventRegistrationCancel, *pair, at)


# ====================================================================== poison and the reps
@dataclass(frozen=True)
class Poison:
    """A record no consumer can read, sent raw to a product topic: it must be parked, once, for ``reason``."""

    reason: str
    """``random bytes`` (no Confluent wire format) or ``unknown schema id`` (the registry has no such id)."""
    key: bytes
    value: bytes


UNKNOWN_SCHEMA_ID_BASE = 1_900_000_000
"""Schema ids from here up are never a registry's: a registry numbers them from 1."""


def poison_records(seed: int, count: int) -> list[Poison]:
    """``count`` poison records, alternately random bytes and a wire-format value naming an unknown schema id."""
    rng = random.Random(seed)  # noqa: S311 - a simulation, not cryptography
    made: list[Poison] = []
    for i in range(count):
        body = rng.randbytes(rng.randint(8, 64))
        if i % 2 == 0:  # first byte never 0: Confluent's magic byte would make it "a schema id" after all
            made.append(Poison("random bytes", f"poison-{i}".encode(), bytes([rng.randint(1, 255)]) + body))
        else:
            schema_id = UNKNOWN_SCHEMA_ID_BASE + i
            made.append(Poison("unknown schema id", f"poison-{i}".encode(), b"\x00" + schema_id.to_bytes(4) + body))
    return made


@dataclass(frozen=True)
class RepEdit:
    """A sales rep's edit of a member's Contact, as the org acknowledged it."""

    member_id: str
    record_id: str
    values: Mapping[str, str | None]


def rep_values(rng: random.Random, number: int) -> dict[str, str | None]:
    """The fields a rep sets in their ``number``-th edit: always a new phone, sometimes a new title."""
    values: dict[str, str | None] = {"Phone": f"+1 555 {number // 10_000:03d} {number % 10_000:04d}"}
    if rng.random() < 0.6:
        values["Title"] = rng.choice(REP_TITLES)
    return values


# ====================================================================== the org the events imply
@dataclass
class ExpectedOrg:
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """member id -> Contact field -> value."""
    campaigns: dict[str, dict[str, Any]] = field(default_factory=dict)
    """event id -> Campaign field -> value."""
    attendance: dict[tuple[str, str], str] = field(default_factory=dict)
    """(member id, event id) -> Attendee_Status__c."""
    cancelled: set[tuple[str, str]] = field(default_factory=set)
    """(member id, event id) pairs whose last event was a cancellation: no CampaignMember."""


def expected_org(events: Iterable[ev.ProductEvent], edits: Iterable[RepEdit] = ()) -> ExpectedOrg:
    """The org the chaos mapping makes of ``events`` (in the order they were published; each member's,
    each community event's, each registration's in its own order), with the reps' ``edits`` on top."""
    org = ExpectedOrg()
    for event in events:
        if isinstance(event, ev.UserCreated | ev.UserProfileUpdate):
            p = event.member
            org.contacts.setdefault(p.member_id, {}).update(
                FirstName=p.first_name,
                LastName=p.last_name,
                Email=p.email,
                Member_Type__c=MEMBER_TYPES[p.member_type],
                Approval_Status__c=APPROVAL[p.approval_status],
            )
        elif isinstance(event, ev.UserTypeChange):
            org.contacts.setdefault(event.member.member_id, {})["Member_Type__c"] = MEMBER_TYPES[event.member_type]
        elif isinstance(event, ev.UserApprovalChange):
            org.contacts.setdefault(event.member.member_id, {})["Approval_Status__c"] = APPROVAL[event.approval_status]
        elif isinstance(event, ev.NewEventPublished | ev.EventUpdated):
            org.campaigns[event.event.id] = {"Name": event.event.title, "IsActive": event.event.published}
        elif isinstance(event, ev.EventRegistration | ev.EventAttend):
            pair = (event.member.member_id, event.event.id)
            org.attendance[pair] = "attended" if isinstance(event, ev.EventAttend) else "registered"
            org.cancelled.discard(pair)
        elif isinstance(event, ev.EventRegistrationCancel):
            pair = (event.member.member_id, event.event.id)
            org.attendance.pop(pair, None)
            org.cancelled.add(pair)
    for edit in edits:
        org.contacts.setdefault(edit.member_id, {}).update(edit.values)
    for contact in org.contacts.values():
        for name in REP_FIELDS:
            contact.setdefault(name, None)
    return org


# ====================================================================== how far the org is from it
@dataclass
class Findings:
    """Counts of what differs, and a few examples of each (for the log, not the JSON line)."""

    lost: int = 0
    duplicated: int = 0
    stale: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, what: str, count: int = 1) -> None:
        setattr(self, kind, getattr(self, kind) + count)
        shown = self.examples.setdefault(kind, [])
        if len(shown) < 10:
            shown.append(what)


def _same(expected: Any, actual: Any) -> bool:
    return expected == actual or (expected in (None, "") and actual in (None, ""))


def _compare_fields(found: Findings, what: str, expected: Mapping[str, Any], row: Mapping[str, Any]) -> None:
    for name, value in expected.items():
        actual = row.get(name)
        if _same(value, actual):
            continue
        if actual in (None, ""):
            found.note("lost", f"{what}.{name}: expected {value!r}, none")
        else:
            found.note("stale", f"{what}.{name}: expected {value!r}, found {actual!r}")


def _by_identity(rows: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], Any]) -> dict[Any, list[Any]]:
    grouped: dict[Any, list[Any]] = {}
    for row in rows:
        grouped.setdefault(key(row), []).append(row)
    return grouped


def compare(
    expected: ExpectedOrg,
    contacts: Sequence[Mapping[str, Any]],
    campaigns: Sequence[Mapping[str, Any]],
    campaign_members: Sequence[Mapping[str, Any]],
) -> Findings:
    """How the org's rows (``Id`` and the fields above; CampaignMember with ``ContactId``/``CampaignId``)
    differ from ``expected``."""
    found = Findings()
    sets = (
        ("Contact", contacts, "Member_Id__c", expected.contacts),
        ("Campaign", campaigns, "Event_Id__c", expected.campaigns),
    )
    for sobject, rows, key_field, wanted in sets:
        grouped = _by_identity(rows, operator.itemgetter(key_field))
        for identity, copies in grouped.items():
            if identity is None or identity not in wanted:
                found.note("duplicated", f"{sobject} {[c['Id'] for c in copies]} {key_field}={identity!r}", len(copies))
            elif len(copies) > 1:
                found.note("duplicated", f"{sobject} {identity}: {len(copies)} records", len(copies) - 1)
        for identity, values in wanted.items():
            copies = grouped.get(identity, [])
            if not copies:
                found.note("lost", f"{sobject} {identity}: no record")
                continue
            _compare_fields(found, f"{sobject} {identity}", values, copies[0])

    member_of = {r["Id"]: r.get("Member_Id__c") for r in contacts}
    event_of = {r["Id"]: r.get("Event_Id__c") for r in campaigns}
    grouped = _by_identity(
        campaign_members, lambda r: (member_of.get(r.get("ContactId")), event_of.get(r.get("CampaignId")))
    )
    for pair, copies in grouped.items():
        if pair in expected.cancelled:
            found.note("stale", f"CampaignMember {pair}: cancelled, still there", len(copies))
        elif pair not in expected.attendance:
            found.note(
                "duplicated", f"CampaignMember {[c['Id'] for c in copies]} of {pair}: no registration", len(copies)
            )
        elif len(copies) > 1:
            found.note("duplicated", f"CampaignMember {pair}: {len(copies)} records", len(copies) - 1)
    for pair, status in expected.attendance.items():
        copies = grouped.get(pair, [])
        if not copies:
            found.note("lost", f"CampaignMember {pair}: no record")
        else:
            _compare_fields(found, f"CampaignMember {pair}", {"Attendee_Status__c": status}, copies[0])
    return found


def inbound_missing(edits: Sequence[RepEdit], inbound: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Members whose latest rep-edited values are not the latest ``product.members.inbound`` values.

    ``inbound``: (record name, value) in topic order (one member's records stay in order: its key).
    """
    latest: dict[str, dict[str, Any]] = {}
    for name, value in inbound:
        if name == "MemberFieldUpdate":
            latest.setdefault(str(value["member_id"]), {}).update(value.get("fields") or {})
    wanted: dict[str, dict[str, Any]] = {}
    for edit in edits:
        wanted.setdefault(edit.member_id, {}).update({INBOUND_PATHS[k]: v for k, v in edit.values.items()})
    return sorted(
        member_id
        for member_id, values in wanted.items()
        if any(not _same(v, latest.get(member_id, {}).get(path)) for path, v in values.items())
    )


# ====================================================================== the DLQ
Origin = tuple[str, int, int]
"""(topic, partition, offset) of a record."""


@dataclass
class ParkedReport:
    by_reason: dict[str, int]
    """Distinct parked records per code (a record parked twice counts once; see ``repeats``)."""
    unexpected: dict[str, int]
    """Parked records that are not poison, per code."""
    missing: int
    """Poison records not in the DLQ."""
    repeats: int
    """Extra copies of records parked more than once (a worker killed between parking and committing)."""
    examples: list[str]


def parked_report(poison_at: Mapping[Origin, Poison], parked: Iterable[tuple[Origin, str, str]]) -> ParkedReport:
    """The DLQ's records, as (origin, code, message), held against the poison sent to ``poison_at``."""
    codes: dict[Origin, str] = {}
    copies: Counter[Origin] = Counter()
    examples: list[str] = []
    for origin, code, message in parked:
        copies[origin] += 1
        codes.setdefault(origin, code)
        if origin not in poison_at and len(examples) < 10:
            examples.append(f"{origin[0]}[{origin[1]}]@{origin[2]} {code}: {message[:200]}")
    by_reason = Counter(codes.values())
    unexpected = Counter(code for origin, code in codes.items() if origin not in poison_at)
    return ParkedReport(
        by_reason=dict(by_reason),
        unexpected=dict(unexpected),
        missing=sum(1 for origin in poison_at if origin not in codes),
        repeats=sum(n - 1 for n in copies.values()),
        examples=examples,
    )
