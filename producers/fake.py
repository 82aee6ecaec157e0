"""Synthetic community activity for demos, tests and benchmarks.

:class:`CommunitySimulator` plays a community forward in time and yields typed events that are
causally consistent: a member exists before they update a profile, registrations are for
published events, attendance and check-ins follow registrations, cancels undo registrations.
Names, companies and places come from Faker, drawn once into pools so generation stays fast.
The same seed gives the same stream.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TypedDict

from faker import Faker

from sfsync.producers import events as ev

QUESTIONS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("q-role", "What best describes your role?", ("Engineer", "Product", "Marketing", "Sales", "Founder")),
    (
        "q-goals",
        "What brings you to the community?",
        ("Learning", "Networking", "Hiring", "Job search", "Sharing work"),
    ),
    ("q-city", "Where are you based?", None),
    ("q-linkedin", "Your LinkedIn URL", None),
)
SPACES = ("General", "Announcements", "Product Feedback", "Data Engineering", "Jobs", "Events")
CLUBS = ("Berlin Chapter", "NYC Chapter", "Women in Data", "Founders Circle", "Open Source")
EVENT_TYPES = ("virtual", "in_person", "hybrid")
STATUSES = ("New", "Working", "Escalated")
PRIORITIES = ("Low", "Medium", "High")

# Relative frequency of each kind of activity (a plausible day in an active community).
WEIGHTS: dict[str, float] = {
    "UserCreated": 12,
    "UserProfileUpdate": 10,
    "UserOnboarding": 6,
    "UserApprovalChange": 3,
    "UserTypeChange": 2,
    "UserAddedToSpace": 5,
    "UserRemovedFromSpace": 2,
    "UserJoinedClub": 4,
    "UserLeftClub": 1,
    "UserJoinedWaitlist": 1,
    "UserDeleted": 0.5,
    "NewEventPublished": 1.5,
    "EventUpdated": 1.5,
    "EventUnpublished": 0.2,
    "EventRegistration": 14,
    "EventRegistrationCancel": 3,
    "EventAttend": 6,
    "EventCheckIn": 6,
    "EventUnCheckIn": 1,
    "ForumPostCaseRequested": 2,
}


class _Envelope(TypedDict):
    event_id: str
    occurred_at: dt.datetime
    workspace_id: str


@dataclass
class _Member:
    profile: ev.MemberProfile
    spaces: list[str] = field(default_factory=list)
    clubs: list[str] = field(default_factory=list)

    def ref(self) -> ev.MemberRef:
        p = self.profile
        return ev.MemberRef(member_id=p.member_id, email=p.email, first_name=p.first_name, last_name=p.last_name)


class CommunitySimulator:
    """Yields a realistic, causally consistent stream of product events."""

    def __init__(
        self, seed: int = 7, workspace_id: str = "ws-demo", start: dt.datetime | None = None, pool_size: int = 400
    ) -> None:
        self.rng = random.Random(seed)
        self.workspace_id = workspace_id
        self.clock = start or dt.datetime(2026, 11, 24, 8, 0, tzinfo=dt.UTC)
        faker = Faker()
        faker.seed_instance(seed)
        self.first_names = [faker.first_name() for _ in range(pool_size)]
        self.last_names = [faker.last_name() for _ in range(pool_size)]
        self.companies = [faker.company() for _ in range(pool_size // 4)]
        self.titles = [faker.job() for _ in range(pool_size // 4)]
        self.places = [(faker.country_code(), faker.state_abbr(), faker.city()) for _ in range(pool_size // 4)]
        self.topics = [faker.catch_phrase() for _ in range(pool_size // 4)]
        self.members: dict[str, _Member] = {}
        self.member_ids: list[str] = []
        self.published: dict[str, ev.CommunityEvent] = {}
        self.event_ids: list[str] = []
        self.registered: set[tuple[str, str]] = set()
        self.checked_in: set[tuple[str, str]] = set()
        self.attended: set[tuple[str, str]] = set()
        self._registrations: list[tuple[str, str]] = []
        self._serial = 0
        self._kinds = list(WEIGHTS)
        self._weights = list(WEIGHTS.values())

    # ------------------------------------------------------------------ helpers
    def _id(self, prefix: str) -> str:
        self._serial += 1
        return f"{prefix}-{self._serial:07d}"

    def _event_uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _tick(self) -> dt.datetime:
        self.clock += dt.timedelta(milliseconds=self.rng.randint(50, 4_000))
        return self.clock

    def _envelope(self) -> _Envelope:
        return {"event_id": self._event_uuid(), "occurred_at": self._tick(), "workspace_id": self.workspace_id}

    def _pick_member(self) -> _Member | None:
        if not self.member_ids:
            return None
        return self.members[self.rng.choice(self.member_ids)]

    def _pick_event(self) -> ev.CommunityEvent | None:
        if not self.event_ids:
            return None
        return self.published[self.rng.choice(self.event_ids)]

    def _pick_registration(self) -> tuple[_Member, ev.CommunityEvent] | None:
        """A live registration (member still there, event still published), preferring recent ones."""
        for _ in range(4):
            if not self._registrations:
                return None
            index = len(self._registrations) - 1 - min(int(self.rng.expovariate(1 / 200)), len(self._registrations) - 1)
            member_id, event_id = self._registrations[index]
            if (member_id, event_id) in self.registered and member_id in self.members and event_id in self.published:
                return self.members[member_id], self.published[event_id]
            self._registrations.pop(index)
        return None

    def _toggle(self, current: list[str], names: tuple[str, ...], remove: bool) -> tuple[bool, ev.Group]:
        """Leave one of ``current`` (when asked and possible) or join another of ``names``."""
        if remove and current:
            name = self.rng.choice(current)
            current.remove(name)
        else:
            remove = False
            name = self.rng.choice([n for n in names if n not in current] or list(names))
            if name not in current:
                current.append(name)
        prefix = "sp" if names is SPACES else "cl"
        return remove, ev.Group(id=f"{prefix}-{names.index(name)}", name=name)

    # ------------------------------------------------------------------ activity
    def new_member(self) -> ev.UserCreated:
        first, last = self.rng.choice(self.first_names), self.rng.choice(self.last_names)
        member_id = self._id("u")
        country, state, city = self.rng.choice(self.places)
        env = self._envelope()
        profile = ev.MemberProfile(
            member_id=member_id,
            email=f"{first}.{last}.{member_id[2:]}@example.com".lower().replace(" ", ""),
            phone=f"+1-555-{self.rng.randint(1000000, 9999999)}" if self.rng.random() < 0.6 else None,
            first_name=first,
            last_name=last,
            title=self.rng.choice(self.titles) if self.rng.random() < 0.8 else None,
            company=self.rng.choice(self.companies) if self.rng.random() < 0.85 else None,
            location=ev.Location(country=country, state=state, city=city),
            member_type=self.rng.choices(list(ev.MemberType), weights=(2, 10, 1))[0],
            approval_status=self.rng.choices(list(ev.ApprovalStatus), weights=(8, 2, 1))[0],
            signed_up_at=self.clock,
            joined_at=self.clock,
        )
        member = _Member(profile)
        self.members[member_id] = member
        self.member_ids.append(member_id)
        return ev.UserCreated(member=profile, **env)

    def _update_profile(self, member: _Member) -> ev.UserProfileUpdate:
        env = self._envelope()
        changed = self.rng.sample(["company", "last_login_at", "phone", "title"], k=self.rng.randint(1, 2))
        profile = member.profile
        if "title" in changed:
            profile = replace(profile, title=self.rng.choice(self.titles))
        if "company" in changed:
            profile = replace(profile, company=self.rng.choice(self.companies))
        if "phone" in changed:
            profile = replace(profile, phone=f"+1-555-{self.rng.randint(1000000, 9999999)}")
        if "last_login_at" in changed:
            profile = replace(profile, last_login_at=self.clock)
        if "location" not in changed and self.rng.random() < 0.15:
            country, state, city = self.rng.choice(self.places)
            profile = replace(profile, location=ev.Location(country=country, state=state, city=city))
            changed.append("location")
        member.profile = profile
        return ev.UserProfileUpdate(member=profile, changed_fields=sorted(changed), **env)

    def _onboarding(self, member: _Member) -> ev.UserOnboarding:
        env = self._envelope()
        answers = []
        for qid, question, options in QUESTIONS:
            if self.rng.random() < 0.15:
                continue  # unanswered (or a question deleted since)
            answer: str | list[str]
            if qid == "q-goals" and options:
                answer = sorted(self.rng.sample(options, k=self.rng.randint(1, 3)))
            elif options:
                answer = self.rng.choice(options)
            elif qid == "q-city":
                answer = self.rng.choice(self.places)[2]
            else:
                answer = f"https://www.linkedin.com/in/{member.profile.member_id}"
            answers.append(ev.OnboardingAnswer(question_id=qid, question=question, answer=answer))
        member.profile = replace(member.profile, onboarding_at=self.clock)
        return ev.UserOnboarding(member=member.ref(), onboarding_at=self.clock, answers=answers, **env)

    def _event_published(self) -> ev.NewEventPublished:
        env = self._envelope()
        start = self.clock + dt.timedelta(days=self.rng.randint(1, 30), hours=self.rng.randint(0, 8))
        event_id = self._id("evt")
        event = ev.CommunityEvent(
            id=event_id,
            title=self.rng.choice(self.topics),
            description="Join us to talk shop.",
            type=self.rng.choice(EVENT_TYPES),
            start_at=start,
            end_at=start + dt.timedelta(hours=2),
            published=True,
            url=f"https://community.example.com/events/{event_id}",
        )
        self.published[event_id] = event
        self.event_ids.append(event_id)
        return ev.NewEventPublished(event=event, **env)

    def publish_event(self) -> ev.NewEventPublished:
        """A new community event, published now (for scenarios that need a number of them)."""
        return self._event_published()

    def update_event(self, event_id: str) -> ev.EventUpdated:
        """A change of the title, the description or the time of the published event ``event_id``."""
        event = self.published[event_id]
        changed = self.rng.choice(["title", "description", "start_at"])
        if changed == "title":
            updated = replace(event, title=f"{event.title} (updated)")
        elif changed == "description":
            updated = replace(event, description=f"{event.description} Agenda posted.")
        else:
            start = event.start_at + dt.timedelta(hours=1)
            updated = replace(event, start_at=start, end_at=start + dt.timedelta(hours=2))
        self.published[event_id] = updated
        return ev.EventUpdated(
            event=updated,
            changed_fields=[changed] if changed != "start_at" else ["start_at", "end_at"],
            **self._envelope(),
        )

    def next_event(self) -> ev.ProductEvent:
        """One more event; activity whose preconditions are not met yet falls back to a sign-up."""
        kind = self.rng.choices(self._kinds, weights=self._weights)[0]
        if len(self.member_ids) < 5:
            return self.new_member()
        if not self.event_ids and kind.startswith("Event"):
            return self._event_published()
        member = self._pick_member()
        event = self._pick_event()
        assert member is not None
        if kind == "UserCreated":
            return self.new_member()
        if kind == "UserProfileUpdate":
            return self._update_profile(member)
        if kind == "UserOnboarding":
            return self._onboarding(member)
        if kind == "UserApprovalChange":
            previous = member.profile.approval_status
            new = self.rng.choice([s for s in ev.ApprovalStatus if s != previous])
            member.profile = replace(member.profile, approval_status=new)
            return ev.UserApprovalChange(
                member=member.ref(), approval_status=new, previous_approval_status=previous, **self._envelope()
            )
        if kind == "UserTypeChange":
            previous_type = member.profile.member_type
            new_type = self.rng.choice([t for t in ev.MemberType if t != previous_type])
            member.profile = replace(member.profile, member_type=new_type)
            return ev.UserTypeChange(
                member=member.ref(), member_type=new_type, previous_member_type=previous_type, **self._envelope()
            )
        if kind in ("UserAddedToSpace", "UserRemovedFromSpace"):
            leaving, space = self._toggle(member.spaces, SPACES, remove=kind == "UserRemovedFromSpace")
            member.profile = replace(member.profile, spaces=list(member.spaces))
            space_cls = ev.UserRemovedFromSpace if leaving else ev.UserAddedToSpace
            return space_cls(member=member.ref(), space=space, spaces=list(member.spaces), **self._envelope())
        if kind in ("UserJoinedClub", "UserLeftClub"):
            leaving, club = self._toggle(member.clubs, CLUBS, remove=kind == "UserLeftClub")
            member.profile = replace(member.profile, clubs=list(member.clubs))
            club_cls = ev.UserLeftClub if leaving else ev.UserJoinedClub
            return club_cls(member=member.ref(), club=club, clubs=list(member.clubs), **self._envelope())
        if kind == "UserJoinedWaitlist":
            return ev.UserJoinedWaitlist(
                member=member.ref(), waitlist=ev.Group(id="wl-1", name="Beta program"), **self._envelope()
            )
        if kind == "UserDeleted" and len(self.member_ids) > 50:
            self.member_ids.remove(member.profile.member_id)
            del self.members[member.profile.member_id]
            return ev.UserDeleted(member=member.ref(), **self._envelope())
        if kind == "NewEventPublished" or event is None:
            return self._event_published()
        if kind in ("EventAttend", "EventCheckIn", "EventUnCheckIn", "EventRegistrationCancel"):
            picked = self._pick_registration()
            if picked is not None:
                member, event = picked
        key = (member.profile.member_id, event.id)
        event_ref = ev.EventRef(id=event.id, title=event.title)
        if kind == "EventUpdated":
            return self.update_event(event.id)
        if kind == "EventUnpublished" and len(self.event_ids) > 3:
            self.event_ids.remove(event.id)
            del self.published[event.id]
            return ev.EventUnpublished(event=event_ref, **self._envelope())
        if kind == "EventRegistrationCancel" and key in self.registered and key not in self.attended:
            self.registered.discard(key)
            self.checked_in.discard(key)
            return ev.EventRegistrationCancel(member=member.ref(), event=event_ref, **self._envelope())
        if kind in ("EventAttend", "EventCheckIn", "EventUnCheckIn") and key in self.registered:
            if kind == "EventCheckIn" and key not in self.checked_in:
                self.checked_in.add(key)
                return ev.EventCheckIn(member=member.ref(), event=event_ref, **self._envelope())
            if kind == "EventUnCheckIn" and key in self.checked_in:
                self.checked_in.discard(key)
                return ev.EventUnCheckIn(member=member.ref(), event=event_ref, **self._envelope())
            if kind == "EventAttend" and key not in self.attended:
                self.attended.add(key)
                return ev.EventAttend(member=member.ref(), event=event_ref, **self._envelope())
        if kind == "ForumPostCaseRequested":
            post_id = self._id("post")
            return ev.ForumPostCaseRequested(
                post=ev.ForumPost(
                    id=post_id,
                    title=f"Question about {self.rng.choice(self.topics).lower()}",
                    body="I tried the steps in the docs and it still fails. Any ideas?",
                    url=f"https://community.example.com/forum/{post_id}",
                    status=self.rng.choice(STATUSES),
                    priority=self.rng.choice(PRIORITIES),
                    created_at=self.clock,
                    author=member.ref(),
                ),
                **self._envelope(),
            )
        if key not in self.registered:
            self.registered.add(key)
            self._registrations.append(key)
            return ev.EventRegistration(member=member.ref(), event=event_ref, **self._envelope())
        return self._update_profile(member)

    def stream(self, count: int) -> Iterator[ev.ProductEvent]:
        """``count`` events, in order of occurrence."""
        for _ in range(count):
            yield self.next_event()
