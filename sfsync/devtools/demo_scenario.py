"""The demo's scenario, as pure functions: what goes wrong on purpose, and when the sales reps edit.

:func:`bad_records` are four records the default mapping and the default org refuse (each must end
in the DLQ, named); :func:`rep_edit_schedule` says where in the stream a rep edits a Contact or a
Campaign. Used by :mod:`sfsync.devtools.demo`; tested without Kafka.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sfsync.producers.events import ProductEvent
    from sfsync.producers.fake import CommunitySimulator
from sfsync.producers import events as ev

REP_USER = "rep@acme.test"  # the sales rep of emulator/default_org.yaml
REP_TITLES = ("Head of Partnerships", "VP Customer Success", "Director of Community", "Solutions Architect")
REP_CITIES = ("Lisbon", "Toronto", "Melbourne", "Nairobi", "Osaka")
CAMPAIGN_STATUSES = ("In Progress", "Planned", "Completed")


def parse_pace(text: str) -> float | None:
    """``fast`` (None: no pacing) or events per second (> 0)."""
    if text.strip().lower() == "fast":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--pace: expected 'fast' or events per second, got {text!r}") from None
    if value <= 0:
        raise ValueError(f"--pace: must be > 0, got {text!r}")
    return value


@dataclass(frozen=True)
class BadRecord:
    """A record sent wrong on purpose, and why the pipeline must park it."""

    label: str
    why: str
    event: ProductEvent | None = None
    """A typed event (it fits its schema; Salesforce refuses it), or None for raw bytes."""
    topic: str = ""
    key: str = ""
    raw: bytes = b""

    @property
    def event_id(self) -> str | None:
        return self.event.event_id if self.event is not None else None


CONTACT_BAD = 0
"""Index of the record in :func:`bad_records` that needs a member whose Contact exists already."""


def bad_records(sim: CommunitySimulator, now: dt.datetime, member_id: str | None = None) -> list[BadRecord]:
    """Four records the default mapping and the default org refuse (the simulator must know members):

    ``member_id`` (default: the first member) gets a job title longer than Contact.Title (128); a
    forum post has a title longer than Case.Subject (255); another an author email that is not one
    (Case.SuppliedEmail); and one record is not Avro at all (a producer that bypassed the schema).

    The too-long title is only refused if it is the last value of the Contact in the sink's batch
    (writes to one record merge in order): the caller picks a member whose Contact exists and
    sends nothing more for them."""
    first = sim.members[member_id or sim.member_ids[0]].profile
    author = sim.members[sim.member_ids[min(1, len(sim.member_ids) - 1)]].ref()
    envelope: dict[str, Any] = {"workspace_id": sim.workspace_id, "occurred_at": now}

    def post(post_id: str, title: str, author: ev.MemberRef) -> ev.ForumPostCaseRequested:
        return ev.ForumPostCaseRequested(
            event_id=str(uuid.uuid4()),
            post=ev.ForumPost(
                id=post_id,
                title=title,
                body="Pasted from a chat export.",
                url=f"https://community.example.com/forum/{post_id}",
                status="New",
                priority="Medium",
                created_at=now,
                author=author,
            ),
            **envelope,
        )

    long_title = "Community Builder, " * 11  # 209 characters
    long_subject = "Help! " + "The export keeps failing and I have tried everything in the docs. " * 5
    return [
        BadRecord(
            "Contact Title too long",
            f"{first.member_id}'s job title has {len(long_title)} characters (Contact.Title holds 128)",
            ev.UserProfileUpdate(
                event_id=str(uuid.uuid4()),
                member=dataclasses.replace(first, title=long_title),
                changed_fields=["title"],
                **envelope,
            ),
        ),
        BadRecord(
            "Case Subject too long",
            f"forum post post-bad-1's title has {len(long_subject)} characters (Case.Subject holds 255)",
            post("post-bad-1", long_subject, author),
        ),
        BadRecord(
            "Case email invalid",
            "forum post post-bad-2's author email is 'jamie.at.example.com' (Case.SuppliedEmail wants an email)",
            post(
                "post-bad-2", "Where do I find the API keys?", dataclasses.replace(author, email="jamie.at.example.com")
            ),
        ),
        BadRecord(
            "not Avro",
            "a legacy producer wrote JSON to product.members (no schema id: it cannot be decoded)",
            topic="product.members",
            key="legacy-import-1",
            raw=b'{"member_id": "legacy-import-1", "email": "legacy@example.com"}',
        ),
    ]


def bad_positions(events: int, count: int) -> list[int]:
    """Where in the stream the bad records go: spread over its middle (members exist by then)."""
    return [max(10, events * (3 + 2 * i) // (2 * count + 4)) for i in range(count)]


def rep_edit_schedule(events: int) -> dict[int, str]:
    """Stream position -> the object a sales rep edits there: Contacts and a few Campaigns, spread
    from a quarter to nine tenths of the stream (by then sfsync has synced records to edit)."""
    contacts, campaigns = max(3, events // 200), max(2, events // 600)
    total = contacts + campaigns
    start, end = events // 4, events * 9 // 10
    positions = [start + (end - start) * i // (total - 1) for i in range(total)]
    campaign_slots = {round((j + 0.5) * total / campaigns) for j in range(campaigns)}
    return {position: "Campaign" if i in campaign_slots else "Contact" for i, position in enumerate(positions)}


@dataclass
class RepEdit:
    sobject: str
    record_id: str
    values: dict[str, Any]
    modstamp: float
    """SystemModstamp of the edit (epoch seconds)."""
    member_id: str | None = None
    by: str = ""
    """The rep's Salesforce user id (LastModifiedById)."""


def member_of(event: Any) -> str | None:
    """The member an event is about (the author of a forum post), if any."""
    member = getattr(event, "member", None) or getattr(getattr(event, "post", None), "author", None)
    member_id = getattr(member, "member_id", None)
    return str(member_id) if member_id else None
