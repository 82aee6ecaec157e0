"""The outbound processor plans each event with its workspace's mapping, and every record key carries the workspace."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from sfsync.keys import parse_record_key
from sfsync.mapping import DEFAULT_MAPPING_FILE, MappingLibrary, MappingSettings, load_mappings
from sfsync.ops.errorlog import entry_for
from sfsync.processors.outbound.processor import Handled
from sfsync.workspaces import DirectoryState, WorkspaceState
from sfsync.workspaces.routing import UnknownWorkspaceError, WorkspaceMappingError, WorkspaceMappings
from tests.kit.mappings import BAD_MAPPING, write_mappings
from tests.kit.outbound import ProcessorRig, user_created
from tests.kit.workspaces import workspace


def routed(
    *workspaces: Any, required: bool = False, library: Path | None = None
) -> tuple[ProcessorRig, MappingLibrary]:
    """A rig whose processor plans with each workspace's mapping (the directory holds ``workspaces``)."""
    directory = DirectoryState()
    for found in workspaces:
        directory.put_workspace(found.workspace_id, found)
    mappings = MappingLibrary(MappingSettings(library=library), configured=load_mappings())
    return ProcessorRig(mappings_for=WorkspaceMappings(directory, mappings, required=required)), mappings


@cache
def created() -> dict[str, Any]:
    return user_created()


def created_in(rig: ProcessorRig, workspace_id: str, offset: int = 0) -> Any:
    """One member's UserCreated, in ``workspace_id``, handled by ``rig``."""
    event = {**created(), "workspace_id": workspace_id}
    return rig.handle(rig.members.encode_checked("UserCreated", event), offset)


def test_two_workspaces_with_different_variables_plan_different_writes_for_the_same_event() -> None:
    rig, _ = routed(workspace("ws-a"), workspace("ws-b", variables={"member_object": "Lead"}))
    in_a, in_b = created_in(rig, "ws-a"), created_in(rig, "ws-b", 1)
    assert in_a.parked == [] and in_b.parked == []
    person_a, person_b = rig.writes(in_a)[0], rig.writes(in_b)[0]
    member_id = created()["member"]["member_id"]
    assert (person_a["sobject"], person_a["key"]) == ("Contact", f"ws-a|Contact:Member_Id__c:{member_id}")
    assert (person_b["sobject"], person_b["key"]) == ("Lead", f"ws-b|Lead:Member_Id__c:{member_id}")
    assert "Company" in person_b["fields"] and "Company" not in person_a["fields"]  # Lead's own placeholder
    assert (person_a["workspace_id"], person_b["workspace_id"]) == ("ws-a", "ws-b")


def test_every_key_of_a_plan_carries_the_workspace_parent_references_too() -> None:
    rig, _ = routed(workspace("ws-a"))
    writes = rig.writes(created_in(rig, "ws-a"))
    person, activity = writes
    assert {parse_record_key(w["key"]).workspace for w in writes} == {"ws-a"}  # type: ignore[union-attr]
    assert activity["parents"] == {"Contact__c": {"key": person["key"], "sobject": "Contact"}}
    assert rig.clock.keys() == {person["key"]}  # the record clock is keyed by the record key (activities: none)


def test_the_same_member_in_two_workspaces_is_two_records_with_two_clocks() -> None:
    rig, _ = routed(workspace("ws-a"), workspace("ws-b"))
    a, b = rig.writes(created_in(rig, "ws-a"))[0], rig.writes(created_in(rig, "ws-b", 1))[0]
    assert a["key"] != b["key"]
    assert {a["key"], b["key"]} <= rig.clock.keys()
    # the same event in one workspace again: its clock keeps ties (a replay), the other's is its own
    again = rig.writes(created_in(rig, "ws-a", 2))[0]
    assert again["key"] == a["key"] and again["fields"] == a["fields"]


def test_an_invalid_workspace_mapping_parks_that_workspaces_events_and_the_others_plan() -> None:
    rig, _ = routed(workspace("ws-bad", variables={"activities": "maybe"}), workspace("ws-good"))
    bad = created_in(rig, "ws-bad")
    good = created_in(rig, "ws-good", 1)
    assert bad.writes == [] and len(bad.parked) == 1
    reason = bad.parked[0].reason
    assert isinstance(reason, WorkspaceMappingError)
    assert reason.log_code() == "INVALID_WORKSPACE_MAPPING" and reason.workspace_id == "ws-bad"
    assert any("enabled" in p and "boolean" in p for p in reason.problems)  # every problem, named
    assert "ws-bad" in str(reason) and entry_for(reason).details["workspace_id"] == "ws-bad"
    assert bad.parked[0].original.offset == 0  # the event itself, for a replay once the mapping is fixed
    assert good.parked == [] and [w["mapping"] for w in rig.writes(good)] == ["members", "activities"]
    assert rig.processor.counts["parked"] == 1


def test_a_workspace_mapping_from_the_library_plans_its_events(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    write_mappings(library, DEFAULT_MAPPING_FILE.read_text(), "acme.yaml")
    write_mappings(library, BAD_MAPPING, "broken.yaml")
    rig, _ = routed(
        workspace("ws-acme", mapping="acme", variables={"member_object": "Lead"}),
        workspace("ws-broken", mapping="broken.yaml"),
        workspace("ws-escape", mapping="../acme.yaml"),
        library=library,
    )
    assert rig.writes(created_in(rig, "ws-acme"))[0]["sobject"] == "Lead"  # acme.yaml, its variables set
    for name in ("ws-broken", "ws-escape"):
        (parked,) = created_in(rig, name).parked
        assert isinstance(parked.reason, WorkspaceMappingError) and parked.reason.workspace_id == name
    broken = created_in(rig, "ws-broken").parked[0].reason
    assert any("constant" in p for p in broken.problems)  # type: ignore[attr-defined]


def test_the_cache_compiles_once_per_distinct_mapping_and_variables() -> None:
    rig, library = routed(
        workspace("ws-a", variables={"member_object": "Lead"}),
        workspace("ws-b", variables={"member_object": "Lead"}),
        workspace("ws-c", variables={"member_object": "Lead", "lead_source": "Partner"}),
        workspace("ws-d"),  # no mapping, no variables: the configured one, never compiled again
        workspace("ws-bad", variables={"activities": "maybe"}),
    )
    for offset in range(3):
        for name in ("ws-a", "ws-b", "ws-c", "ws-d", "ws-bad"):
            created_in(rig, name, offset)
    assert library.compilations == 3  # {Lead}, {Lead, Partner} and the invalid one: each once
    assert rig.processor.counts["parked"] == 3  # the invalid one's three events, from its cached answer


def test_a_workspace_the_directory_does_not_know_is_planned_with_the_configured_mapping_unless_required() -> None:
    rig, _ = routed(workspace("ws-a", variables={"member_object": "Lead"}))
    (person, _) = rig.writes(created_in(rig, "ws-new"))
    assert (person["sobject"], parse_record_key(person["key"]).workspace) == ("Contact", "ws-new")  # type: ignore[union-attr]
    strict, _ = routed(workspace("ws-a"), required=True)
    (parked,) = created_in(strict, "ws-new").parked
    assert isinstance(parked.reason, UnknownWorkspaceError) and parked.reason.log_code() == "UNKNOWN_WORKSPACE"
    assert created_in(strict, "ws-a", 1).parked == []


def test_a_paused_or_disconnected_workspaces_events_are_still_planned() -> None:
    rig, _ = routed(
        workspace("ws-p", state=WorkspaceState.PAUSED, variables={"member_object": "Lead"}),
        workspace("ws-d", state=WorkspaceState.DISCONNECTED),
    )
    assert rig.writes(created_in(rig, "ws-p"))[0]["key"].startswith("ws-p|Lead:")
    assert rig.writes(created_in(rig, "ws-d", 1))[0]["key"].startswith("ws-d|Contact:")


def test_ordering_reads_the_workspaces_own_mapping_for_what_needs_no_clock() -> None:
    rig, _ = routed(workspace("ws-a"), workspace("ws-bad", variables={"activities": "maybe"}))
    planned = rig.plan(rig.members.encode_checked("UserCreated", {**created(), "workspace_id": "ws-a"}), 0)
    person, activity = rig.writes(planned)
    rig.order(planned)
    assert set(rig.clock) == {person["key"]}  # an activity record (one per event) needs no clock in ws-a
    # a write whose workspace's mapping is unusable by the time it is ordered keeps a clock (never wrong)
    _, as_planned = rig.processor.plans_decoder.decode(planned.writes[1][1])  # storage form, as ordering reads it
    moved = {**as_planned, "workspace_id": "ws-bad"}
    rig.order(Handled([(moved["key"].encode(), rig.processor.encoder.encode_checked("Write", moved))], [], []))
    assert set(rig.clock) == {person["key"], activity["key"]}
