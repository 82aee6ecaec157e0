"""Typed product events, generated from schemas/*.avsc by `sfsync schemas codegen`. Do not edit.

Each event class knows its Avro record name and topic; ``to_avro()`` gives the dict the encoder
writes. ``event_id`` and ``occurred_at`` default to a new uuid4 and the current UTC time.
"""

# ruff: noqa
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from sfsync.errors import RecordValidationError
from sfsync.time import EPOCH, is_aware
from sfsync.time import utcnow as _now

_MILLISECOND = dt.timedelta(milliseconds=1)


def _uuid() -> str:
    return str(uuid.uuid4())


def _ms(value: dt.datetime) -> int:
    """timestamp-millis as Avro stores it (the encoder's fast path writes plain longs)."""
    return (value - EPOCH) // _MILLISECOND


def _check_time(record: str, name: str, value: object) -> None:
    if value is not None and (not isinstance(value, dt.datetime) or not is_aware(value)):
        raise RecordValidationError(record, name, "expected a timezone-aware datetime (UTC)")


def _check_uuid(record: str, name: str, value: object) -> None:
    try:
        uuid.UUID(str(value))
    except ValueError:
        raise RecordValidationError(record, name, f"{value!r} is not a uuid") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where a member is."""

    country: str | None = None
    state: str | None = None
    city: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            'country': self.country,
            'state': self.state,
            'city': self.city,
        }


class MemberType(StrEnum):
    """Kind of member."""
    GUEST = 'GUEST'
    STANDARD = 'STANDARD'
    LIMITED_APPROVAL = 'LIMITED_APPROVAL'


class ApprovalStatus(StrEnum):
    """Whether the member is admitted to the community."""
    APPROVED = 'APPROVED'
    PENDING = 'PENDING'
    UNAPPROVED = 'UNAPPROVED'


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberProfile:
    """Everything the product knows about a member at the time of the event."""

    member_id: str
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    title: str | None = None
    company: str | None = None
    location: Location = field(default_factory=Location)
    member_type: MemberType = MemberType.STANDARD
    approval_status: ApprovalStatus = ApprovalStatus.PENDING
    spaces: list[str] = field(default_factory=list)
    clubs: list[str] = field(default_factory=list)
    signed_up_at: dt.datetime
    joined_at: dt.datetime | None = None
    last_login_at: dt.datetime | None = None
    onboarding_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        _check_time('MemberProfile', 'signed_up_at', self.signed_up_at)
        _check_time('MemberProfile', 'joined_at', self.joined_at)
        _check_time('MemberProfile', 'last_login_at', self.last_login_at)
        _check_time('MemberProfile', 'onboarding_at', self.onboarding_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'member_id': self.member_id,
            'email': self.email,
            'phone': self.phone,
            'first_name': self.first_name,
            'last_name': self.last_name,
            'title': self.title,
            'company': self.company,
            'location': self.location.to_avro(),
            'member_type': self.member_type,
            'approval_status': self.approval_status,
            'spaces': self.spaces,
            'clubs': self.clubs,
            'signed_up_at': _ms(self.signed_up_at),
            'joined_at': None if self.joined_at is None else _ms(self.joined_at),
            'last_login_at': None if self.last_login_at is None else _ms(self.last_login_at),
            'onboarding_at': None if self.onboarding_at is None else _ms(self.onboarding_at),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserCreated:
    """A member account was created."""

    RECORD_NAME: ClassVar[str] = 'UserCreated'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberProfile

    def __post_init__(self) -> None:
        _check_uuid('UserCreated', 'event_id', self.event_id)
        _check_time('UserCreated', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserProfileUpdate:
    """A member changed their profile."""

    RECORD_NAME: ClassVar[str] = 'UserProfileUpdate'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberProfile
    changed_fields: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_uuid('UserProfileUpdate', 'event_id', self.event_id)
        _check_time('UserProfileUpdate', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'changed_fields': self.changed_fields,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRef:
    """Who an event is about: the identity sfsync matches on, plus names for records it may create."""

    member_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            'member_id': self.member_id,
            'email': self.email,
            'first_name': self.first_name,
            'last_name': self.last_name,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class OnboardingAnswer:
    """One onboarding question and the member's answer."""

    question_id: str
    question: str
    answer: str | list[str]

    def to_avro(self) -> dict[str, Any]:
        return {
            'question_id': self.question_id,
            'question': self.question,
            'answer': self.answer,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserOnboarding:
    """A member completed or changed their onboarding answers."""

    RECORD_NAME: ClassVar[str] = 'UserOnboarding'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    onboarding_at: dt.datetime
    answers: list[OnboardingAnswer]

    def __post_init__(self) -> None:
        _check_uuid('UserOnboarding', 'event_id', self.event_id)
        _check_time('UserOnboarding', 'occurred_at', self.occurred_at)
        _check_time('UserOnboarding', 'onboarding_at', self.onboarding_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'onboarding_at': _ms(self.onboarding_at),
            'answers': [v.to_avro() for v in self.answers],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserApprovalChange:
    """A member's approval status changed."""

    RECORD_NAME: ClassVar[str] = 'UserApprovalChange'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    approval_status: ApprovalStatus
    previous_approval_status: ApprovalStatus | None = None

    def __post_init__(self) -> None:
        _check_uuid('UserApprovalChange', 'event_id', self.event_id)
        _check_time('UserApprovalChange', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'approval_status': self.approval_status,
            'previous_approval_status': self.previous_approval_status,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserTypeChange:
    """A member's type changed."""

    RECORD_NAME: ClassVar[str] = 'UserTypeChange'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    member_type: MemberType
    previous_member_type: MemberType | None = None

    def __post_init__(self) -> None:
        _check_uuid('UserTypeChange', 'event_id', self.event_id)
        _check_time('UserTypeChange', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'member_type': self.member_type,
            'previous_member_type': self.previous_member_type,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Group:
    """A space, club or waitlist of the community."""

    id: str
    name: str

    def to_avro(self) -> dict[str, Any]:
        return {
            'id': self.id,
            'name': self.name,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserAddedToSpace:
    """A member was added to a space."""

    RECORD_NAME: ClassVar[str] = 'UserAddedToSpace'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    space: Group
    spaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_uuid('UserAddedToSpace', 'event_id', self.event_id)
        _check_time('UserAddedToSpace', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'space': self.space.to_avro(),
            'spaces': self.spaces,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserRemovedFromSpace:
    """A member was removed from a space."""

    RECORD_NAME: ClassVar[str] = 'UserRemovedFromSpace'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    space: Group
    spaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_uuid('UserRemovedFromSpace', 'event_id', self.event_id)
        _check_time('UserRemovedFromSpace', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'space': self.space.to_avro(),
            'spaces': self.spaces,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserJoinedClub:
    """A member joined a club."""

    RECORD_NAME: ClassVar[str] = 'UserJoinedClub'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    club: Group
    clubs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_uuid('UserJoinedClub', 'event_id', self.event_id)
        _check_time('UserJoinedClub', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'club': self.club.to_avro(),
            'clubs': self.clubs,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserLeftClub:
    """A member left a club."""

    RECORD_NAME: ClassVar[str] = 'UserLeftClub'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    club: Group
    clubs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_uuid('UserLeftClub', 'event_id', self.event_id)
        _check_time('UserLeftClub', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'club': self.club.to_avro(),
            'clubs': self.clubs,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserJoinedWaitlist:
    """A member joined a waitlist."""

    RECORD_NAME: ClassVar[str] = 'UserJoinedWaitlist'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    waitlist: Group

    def __post_init__(self) -> None:
        _check_uuid('UserJoinedWaitlist', 'event_id', self.event_id)
        _check_time('UserJoinedWaitlist', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'waitlist': self.waitlist.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class UserDeleted:
    """A member account was deleted."""

    RECORD_NAME: ClassVar[str] = 'UserDeleted'
    TOPIC: ClassVar[str] = 'product.members'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef

    def __post_init__(self) -> None:
        _check_uuid('UserDeleted', 'event_id', self.event_id)
        _check_time('UserDeleted', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CommunityEvent:
    """An event of the community (a meetup, webinar, ...), as published."""

    id: str
    title: str
    description: str | None = None
    type: str | None = None
    start_at: dt.datetime
    end_at: dt.datetime | None = None
    published: bool
    url: str | None = None

    def __post_init__(self) -> None:
        _check_time('CommunityEvent', 'start_at', self.start_at)
        _check_time('CommunityEvent', 'end_at', self.end_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'id': self.id,
            'title': self.title,
            'description': self.description,
            'type': self.type,
            'start_at': _ms(self.start_at),
            'end_at': None if self.end_at is None else _ms(self.end_at),
            'published': self.published,
            'url': self.url,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class NewEventPublished:
    """A community event was published."""

    RECORD_NAME: ClassVar[str] = 'NewEventPublished'
    TOPIC: ClassVar[str] = 'product.events'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    event: CommunityEvent

    def __post_init__(self) -> None:
        _check_uuid('NewEventPublished', 'event_id', self.event_id)
        _check_time('NewEventPublished', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'event': self.event.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventUpdated:
    """A published event changed."""

    RECORD_NAME: ClassVar[str] = 'EventUpdated'
    TOPIC: ClassVar[str] = 'product.events'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    event: CommunityEvent
    changed_fields: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_uuid('EventUpdated', 'event_id', self.event_id)
        _check_time('EventUpdated', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'event': self.event.to_avro(),
            'changed_fields': self.changed_fields,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRef:
    """A reference to a community event."""

    id: str
    title: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            'id': self.id,
            'title': self.title,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventUnpublished:
    """An event was unpublished."""

    RECORD_NAME: ClassVar[str] = 'EventUnpublished'
    TOPIC: ClassVar[str] = 'product.events'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    event: EventRef

    def __post_init__(self) -> None:
        _check_uuid('EventUnpublished', 'event_id', self.event_id)
        _check_time('EventUnpublished', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'event': self.event.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRegistration:
    """A member registered for an event."""

    RECORD_NAME: ClassVar[str] = 'EventRegistration'
    TOPIC: ClassVar[str] = 'product.attendance'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    event: EventRef

    def __post_init__(self) -> None:
        _check_uuid('EventRegistration', 'event_id', self.event_id)
        _check_time('EventRegistration', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'event': self.event.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRegistrationCancel:
    """A member cancelled their registration."""

    RECORD_NAME: ClassVar[str] = 'EventRegistrationCancel'
    TOPIC: ClassVar[str] = 'product.attendance'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    event: EventRef

    def __post_init__(self) -> None:
        _check_uuid('EventRegistrationCancel', 'event_id', self.event_id)
        _check_time('EventRegistrationCancel', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'event': self.event.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventAttend:
    """A member attended an event."""

    RECORD_NAME: ClassVar[str] = 'EventAttend'
    TOPIC: ClassVar[str] = 'product.attendance'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    event: EventRef

    def __post_init__(self) -> None:
        _check_uuid('EventAttend', 'event_id', self.event_id)
        _check_time('EventAttend', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'event': self.event.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventCheckIn:
    """A member checked in at an event."""

    RECORD_NAME: ClassVar[str] = 'EventCheckIn'
    TOPIC: ClassVar[str] = 'product.attendance'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    event: EventRef

    def __post_init__(self) -> None:
        _check_uuid('EventCheckIn', 'event_id', self.event_id)
        _check_time('EventCheckIn', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'event': self.event.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class EventUnCheckIn:
    """A member's check-in was undone."""

    RECORD_NAME: ClassVar[str] = 'EventUnCheckIn'
    TOPIC: ClassVar[str] = 'product.attendance'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    member: MemberRef
    event: EventRef

    def __post_init__(self) -> None:
        _check_uuid('EventUnCheckIn', 'event_id', self.event_id)
        _check_time('EventUnCheckIn', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'member': self.member.to_avro(),
            'event': self.event.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ForumPost:
    """A forum post."""

    id: str
    title: str
    body: str
    url: str
    status: str
    priority: str
    created_at: dt.datetime
    author: MemberRef

    def __post_init__(self) -> None:
        _check_time('ForumPost', 'created_at', self.created_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'id': self.id,
            'title': self.title,
            'body': self.body,
            'url': self.url,
            'status': self.status,
            'priority': self.priority,
            'created_at': _ms(self.created_at),
            'author': self.author.to_avro(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ForumPostCaseRequested:
    """A moderator asked for a forum post to become a Salesforce Case."""

    RECORD_NAME: ClassVar[str] = 'ForumPostCaseRequested'
    TOPIC: ClassVar[str] = 'product.forum'

    event_id: str = field(default_factory=_uuid)
    occurred_at: dt.datetime = field(default_factory=_now)
    workspace_id: str
    post: ForumPost
    requested_by: MemberRef | None = None

    def __post_init__(self) -> None:
        _check_uuid('ForumPostCaseRequested', 'event_id', self.event_id)
        _check_time('ForumPostCaseRequested', 'occurred_at', self.occurred_at)

    def to_avro(self) -> dict[str, Any]:
        return {
            'event_id': self.event_id,
            'occurred_at': _ms(self.occurred_at),
            'workspace_id': self.workspace_id,
            'post': self.post.to_avro(),
            'requested_by': None if self.requested_by is None else self.requested_by.to_avro(),
        }


ProductEvent = UserCreated | UserProfileUpdate | UserOnboarding | UserApprovalChange | UserTypeChange | UserAddedToSpace | UserRemovedFromSpace | UserJoinedClub | UserLeftClub | UserJoinedWaitlist | UserDeleted | NewEventPublished | EventUpdated | EventUnpublished | EventRegistration | EventRegistrationCancel | EventAttend | EventCheckIn | EventUnCheckIn | ForumPostCaseRequested

EVENT_TYPES: dict[str, type[ProductEvent]] = {
    'UserCreated': UserCreated,
    'UserProfileUpdate': UserProfileUpdate,
    'UserOnboarding': UserOnboarding,
    'UserApprovalChange': UserApprovalChange,
    'UserTypeChange': UserTypeChange,
    'UserAddedToSpace': UserAddedToSpace,
    'UserRemovedFromSpace': UserRemovedFromSpace,
    'UserJoinedClub': UserJoinedClub,
    'UserLeftClub': UserLeftClub,
    'UserJoinedWaitlist': UserJoinedWaitlist,
    'UserDeleted': UserDeleted,
    'NewEventPublished': NewEventPublished,
    'EventUpdated': EventUpdated,
    'EventUnpublished': EventUnpublished,
    'EventRegistration': EventRegistration,
    'EventRegistrationCancel': EventRegistrationCancel,
    'EventAttend': EventAttend,
    'EventCheckIn': EventCheckIn,
    'EventUnCheckIn': EventUnCheckIn,
    'ForumPostCaseRequested': ForumPostCaseRequested,
}
