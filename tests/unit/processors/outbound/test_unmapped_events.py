"""An event of a type no enabled mapping acts on is counted and logged once per type, never dropped silently."""

from __future__ import annotations

import copy
import logging

import pytest
from prometheus_client import CollectorRegistry

from sfsync.processors.outbound.metrics import ProcessorMetrics
from tests.kit.mappings import mappings_from, members_yaml
from tests.kit.outbound import ProcessorRig, user_created

ONLY_PROFILE_UPDATES = members_yaml(
    ["{sf: Email, from: member.email}", "{sf: LastName, from: member.last_name}"]
).replace("    entity: member\n", "    entity: member\n    events: [UserProfileUpdate]\n")


def test_events_no_mapping_acts_on_are_counted_per_type_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    registry = CollectorRegistry()
    rig = ProcessorRig(mappings_from(ONLY_PROFILE_UPDATES))
    rig.processor.metrics = ProcessorMetrics(registry)
    first = user_created()
    second = copy.deepcopy(first)
    second["event_id"] = "00000000-0000-4000-8000-000000000002"

    with caplog.at_level(logging.WARNING, logger="sfsync.processors.outbound.processor"):
        handled = [rig.handle(rig.members.encode_checked("UserCreated", e), n) for n, e in enumerate((first, second))]

    assert all(not h.writes and not h.parked for h in handled)
    assert rig.processor.counts["unmapped"] == 2
    assert rig.processor.unmapped == {"UserCreated": 2}
    get = registry.get_sample_value
    assert get("sfsync_processor_events_unmapped_total", {"event_type": "UserCreated"}) == 2
    warnings = [r.getMessage() for r in caplog.records if "no enabled mapping acts on" in r.getMessage()]
    assert len(warnings) == 1 and "UserCreated" in warnings[0]


def test_an_event_a_mapping_acts_on_is_not_counted_as_unmapped() -> None:
    registry = CollectorRegistry()
    rig = ProcessorRig()
    rig.processor.metrics = ProcessorMetrics(registry)
    handled = rig.handle(rig.members.encode_checked("UserCreated", user_created()), 1)
    assert handled.writes
    assert rig.processor.counts["unmapped"] == 0
    assert registry.get_sample_value("sfsync_processor_events_unmapped_total", {"event_type": "UserCreated"}) is None
