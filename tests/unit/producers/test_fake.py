"""The synthetic community is realistic: every activity, causally consistent, reproducible."""

from __future__ import annotations

from sfsync.producers import events as ev
from sfsync.producers.fake import CommunitySimulator


def test_every_event_type_occurs_and_the_stream_is_reproducible() -> None:
    first = list(CommunitySimulator(seed=3).stream(5_000))
    again = list(CommunitySimulator(seed=3).stream(5_000))
    assert [e.to_avro() for e in first] == [e.to_avro() for e in again]
    assert {e.RECORD_NAME for e in first} == set(ev.EVENT_TYPES)


def test_activity_follows_cause_and_time() -> None:
    members: set[str] = set()
    published: set[str] = set()
    registered: set[tuple[str, str]] = set()
    last = None
    for event in CommunitySimulator(seed=9).stream(20_000):
        assert last is None or event.occurred_at > last
        last = event.occurred_at
        if isinstance(event, ev.UserCreated):
            members.add(event.member.member_id)
            continue
        if isinstance(event, ev.NewEventPublished):
            published.add(event.event.id)
            continue
        member = getattr(event, "member", None)
        if member is not None:
            assert member.member_id in members, f"{event.RECORD_NAME} for unknown member"
        if isinstance(event, ev.UserDeleted):
            members.discard(event.member.member_id)
        if isinstance(event, ev.EventUnpublished):
            published.discard(event.event.id)
        if isinstance(event, ev.EventRegistration):
            assert event.event.id in published
            registered.add((event.member.member_id, event.event.id))
        if isinstance(event, (ev.EventAttend, ev.EventCheckIn, ev.EventUnCheckIn, ev.EventRegistrationCancel)):
            assert (event.member.member_id, event.event.id) in registered, event.RECORD_NAME
        if isinstance(event, ev.EventRegistrationCancel):
            registered.discard((event.member.member_id, event.event.id))


def test_members_look_like_people() -> None:
    created = [e for e in CommunitySimulator(seed=1).stream(2_000) if isinstance(e, ev.UserCreated)]
    emails = [e.member.email for e in created]
    assert len(set(emails)) == len(emails)
    assert all(e and "@" in e for e in emails)
    assert sum(1 for e in created if e.member.company) > len(created) / 2
    assert {e.member.member_type for e in created} == set(ev.MemberType)


def test_a_scenario_can_publish_events_and_update_each_one() -> None:
    sim = CommunitySimulator(seed=5)
    published = [sim.publish_event() for _ in range(3)]
    updates = [sim.update_event(e.event.id) for e in published for _ in range(2)]
    assert len({e.event.id for e in published}) == 3
    assert [u.event.id for u in updates] == [e.event.id for e in published for _ in range(2)]
    for first, second in zip(updates[::2], updates[1::2], strict=True):
        assert second.occurred_at > first.occurred_at
        assert second.event != first.event and second.changed_fields
        assert sim.published[second.event.id] == second.event  # later activity sees the update
    assert all(u.event.published for u in updates)
