"""The sink of many orgs: each write to its workspace's org, a batch per connection, one governor per
connection, and one connection that cannot take its writes (down, refused credentials, spent daily limit,
a paused workspace) held while the others' go; its writes go by themselves once the cause clears.

The real router, catalog, sinks and governors; the orgs are emulators in process; the registry is a real
directory over the kit's in-memory topics (:mod:`tests.kit.routing`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from sfsync.errors import Category, Level
from sfsync.salesforce import SalesforceSettings
from sfsync.sinks.connections import ConnectionSink
from sfsync.sinks.contract import IncomingWrite
from sfsync.sinks.router import CONNECTION_RESTORED, WORKSPACE_HELD, WORKSPACE_RESUMED
from sfsync.sinks.routing import HoldCause
from sfsync.workspaces import WorkspaceState
from sfsync.workspaces.routing import UnknownWorkspaceError
from tests.kit import tls_contexts
from tests.kit.routing import RoutedRig, in_workspace
from tests.kit.sink import member


@pytest.fixture
async def rig() -> AsyncIterator[RoutedRig]:
    found = RoutedRig()
    try:
        yield found
    finally:
        await found.close()


def members(workspace: str, *numbers: int) -> list[dict[str, object]]:
    return [in_workspace(member(i), workspace) for i in numbers]


def emails(*numbers: int) -> list[str]:
    return sorted(f"member{i}@example.org" for i in numbers)


def keys_of(writes: list[IncomingWrite]) -> list[str]:
    return [str(w.write["key"]) for w in writes]


async def test_each_workspaces_writes_reach_only_its_own_org_in_batches_of_one_connection(rig: RoutedRig) -> None:
    a, b = rig.add_org("org-a"), rig.add_org("org-b")
    rig.add_workspace("ws-a", "org-a")
    rig.add_workspace("ws-a2", "org-a")
    rig.add_workspace("ws-b", "org-b")
    mixed = [*members("ws-a", 1, 2), *members("ws-b", 3, 4), *members("ws-a2", 5)]
    writes = rig.incoming(*mixed[::2], partition=0) + rig.incoming(*mixed[1::2], partition=1)

    outcome = await rig.until_done(writes)

    assert not outcome.pending and not rig.parked and len(outcome.results) == 5
    assert a.emails() == emails(1, 2, 5) and b.emails() == emails(3, 4)  # none of one workspace in the other org
    assert {r["workspace_id"] for r in outcome.results} == {"ws-a", "ws-a2", "ws-b"}  # results name it
    by_connection = {batch.connection_id: batch.workspaces for batch in rig.sent}
    assert by_connection == {"org-a": {"ws-a", "ws-a2"}, "org-b": {"ws-b"}}  # a batch holds one connection's
    sinks = {sink.connection_id: sink for sink in rig.catalog.opened}
    assert sinks["org-a"].governor is not sinks["org-b"].governor  # one governor (and budget) per org
    assert sinks["org-a"].client.budget is not sinks["org-b"].client.budget


async def test_a_connections_batch_takes_all_its_ready_writes_so_a_backoff_is_waited_once_not_per_batch_size() -> None:
    small = RoutedRig(batch_size=2, carry_max=40, retry_wait_initial_s=0.3, retry_wait_max_s=0.3)
    try:
        org = small.add_org("org-a")
        small.add_workspace("ws-a", "org-a")
        org.emulator.faults.update("lock=0.3,seed=7")  # about a third of the record writes fail once or more
        writes = small.incoming(*members("ws-a", *range(1, 21)))
        outcome = await small.until_done(writes, rounds=20)
        assert not outcome.pending and org.emails() == emails(*range(1, 21))
        assert org.emulator.faults.injected.get("lock", 0) > 0  # retries were waited out
        # all 20 went in the first batch, and the few left waiting in the next: a batch capped at 2 writes
        # would have waited a backoff in most of its 10+ batches (the full chaos run's ~70 writes/s)
        assert small.batch_sizes[0] == 20 and len(small.batch_sizes) <= 4
    finally:
        await small.close()


async def test_an_org_that_is_down_holds_its_writes_while_the_other_orgs_writes_go_then_they_go_once(
    rig: RoutedRig,
) -> None:
    a, b = rig.add_org("org-a"), rig.add_org("org-b")
    rig.add_workspace("ws-a", "org-a")
    rig.add_workspace("ws-b", "org-b")
    b.down()
    writes = rig.incoming(*members("ws-b", 1, 2), *members("ws-a", 3, 4))

    outcome = await rig.router.put(writes)
    for _ in range(20):  # the loop carries B's writes from batch to batch (until B's first batch is back)
        if not [w for w in outcome.pending if w.write["workspace_id"] == "ws-a"] and not rig.router.busy():
            break
        outcome = await rig.router.put(outcome.pending)

    assert a.emails() == emails(3, 4) and b.emails() == []
    assert keys_of(outcome.pending) == keys_of(writes[:2])  # B's, uncommitted: the offsets stay at 0
    assert outcome.committed == {("sfsync.writes", 0): 0}
    assert rig.router.held()[HoldCause.ORG_DOWN] == 1 and not rig.parked
    (down,) = rig.entries  # once, when the hold began: not per try
    assert (down.category, down.level, down.workspace_id) == (Category.CONNECTION, Level.WARNING, "ws-b")
    assert down.details["connection_id"] == "org-b" and down.code == "HTTP_503"  # its login was answered 503

    b.up()
    finished = await rig.until_done(outcome.pending)
    assert not finished.pending and b.emails() == emails(1, 2)  # by itself, once the org is back
    assert len(b.transport.writes("POST")) == 1  # created once (the outage sent nothing twice)
    assert rig.router.held()[HoldCause.ORG_DOWN] == 0
    (back,) = [e for e in rig.entries if e.code == CONNECTION_RESTORED]
    assert back.level is Level.INFO and back.workspace_id == "ws-b"


async def test_a_batch_still_retrying_an_org_that_just_went_down_does_not_hold_up_another_orgs_delivery() -> None:
    # B's batch retries its 503s for over a second before its connection is held; the batch age is 1 s
    slow = RoutedRig(batch_max_age_s=1.0, retry_wait_initial_s=0.4, retry_wait_max_s=2.0)
    try:
        a, b = slow.add_org("org-a"), slow.add_org("org-b")
        slow.add_workspace("ws-a", "org-a")
        slow.add_workspace("ws-b", "org-b")
        b.down()
        carried: list[IncomingWrite] = []
        for first in (1, 3):  # B's batch is sent with the first put, and still on its way in the second
            fresh = slow.incoming(*members("ws-b", first + 10), *members("ws-a", first, first + 1))
            started = time.monotonic()
            outcome = await slow.router.put([*carried, *fresh])
            took = time.monotonic() - started
            assert sorted(r["workspace_id"] for r in outcome.results) == ["ws-a", "ws-a"]  # A's, delivered...
            assert took < 0.5 and slow.router.busy(), took  # ...at once, not after B's batch or the batch age
            carried = outcome.pending
        assert a.emails() == emails(1, 2, 3, 4) and b.emails() == []
        assert keys_of(carried) == [m["key"] for m in members("ws-b", 11, 13)]  # B's wait, uncommitted
    finally:
        await slow.close()


async def test_refused_credentials_hold_that_connection_with_an_entry_until_it_is_reconnected(
    rig: RoutedRig,
) -> None:
    a = rig.add_org("org-a")
    b = rig.add_org("org-b", refresh_token="revoked-long-ago")
    rig.add_workspace("ws-a", "org-a")
    rig.add_workspace("ws-b", "org-b")
    writes = rig.incoming(*members("ws-b", 1), *members("ws-a", 2))

    outcome = await rig.until_done(writes, rounds=20)

    assert a.emails() == emails(2) and b.emails() == []
    assert keys_of(outcome.pending) == keys_of(writes[:1])
    assert rig.router.held()[HoldCause.CREDENTIALS] == 1 and rig.router.auth_failures >= 2  # tried again
    refused = [e for e in rig.entries if e.code == "AUTH_FAILED"]
    assert len(refused) == rig.router.auth_failures  # one entry per failed try
    assert {(e.category, e.workspace_id, e.details["connection_id"]) for e in refused} == {
        (Category.CONNECTION, "ws-b", "org-b")
    }
    workspace = rig.directory.workspace("ws-b")
    assert workspace is not None and workspace.state is WorkspaceState.ACTIVE  # the sink writes no state

    rig.put_connection("org-b")  # an operator reconnects the org (a new refresh token)
    finished = await rig.until_done(outcome.pending)
    assert not finished.pending and b.emails() == emails(1)
    assert rig.router.held()[HoldCause.CREDENTIALS] == 0


async def test_a_spent_daily_limit_holds_only_that_org_and_its_own_governor_pauses(rig: RoutedRig) -> None:
    a, b = rig.add_org("org-a"), rig.add_org("org-b")
    rig.add_workspace("ws-a", "org-a")
    rig.add_workspace("ws-b", "org-b")
    b.emulator.daily_limit = b.emulator.api_calls  # org B's allocation is spent (by other integrations)
    writes = rig.incoming(*members("ws-b", 1), *members("ws-a", 2))

    outcome = await rig.until_done(writes, rounds=5)

    assert a.emails() == emails(2) and keys_of(outcome.pending) == keys_of(writes[:1])
    sinks = {sink.connection_id: sink for sink in rig.catalog.opened}
    assert sinks["org-b"].governor.pauses == 1 and sinks["org-a"].governor.pauses == 0
    assert rig.router.held()[HoldCause.BUDGET] == 1 and not rig.parked
    (paused,) = rig.entries  # the governor's one entry, naming the org's workspace
    assert (paused.category, paused.code, paused.workspace_id) == (Category.RATE_LIMIT, "RATE_LIMIT_PAUSE", "ws-b")
    assert paused.details["connection_id"] == "org-b"

    b.emulator.daily_limit = 1_000_000  # the rolling window freed calls
    finished = await rig.until_done(outcome.pending)
    assert not finished.pending and b.emails() == emails(1)


async def test_a_paused_workspace_waits_while_the_other_workspace_of_its_connection_goes(rig: RoutedRig) -> None:
    a = rig.add_org("org-a")
    rig.add_workspace("ws-paused", "org-a", WorkspaceState.PAUSED)
    rig.add_workspace("ws-active", "org-a")
    writes = rig.incoming(*members("ws-paused", 1), *members("ws-active", 2))

    outcome = await rig.until_done(writes, rounds=5)

    assert a.emails() == emails(2) and keys_of(outcome.pending) == keys_of(writes[:1])
    assert rig.router.held()[HoldCause.WORKSPACE] == 1
    (held,) = [e for e in rig.entries if e.code == WORKSPACE_HELD]  # once, not per batch
    assert (held.workspace_id, held.level, held.details["state"]) == ("ws-paused", Level.INFO, "PAUSED")

    rig.add_workspace("ws-paused", "org-a", WorkspaceState.ACTIVE)  # `sfsync workspaces resume`
    finished = await rig.until_done(outcome.pending)
    assert not finished.pending and a.emails() == emails(1, 2)
    assert [e.workspace_id for e in rig.entries if e.code == WORKSPACE_RESUMED] == ["ws-paused"]


async def test_an_unknown_workspace_is_parked_with_its_workspace_when_the_registry_is_required() -> None:
    rig = RoutedRig(required=True)
    try:
        rig.add_org("org-a")
        rig.add_workspace("ws-a", "org-a")
        writes = rig.incoming(*members("ws-nobody", 1), *members("ws-a", 2))
        outcome = await rig.until_done(writes)
        assert not outcome.pending and len(outcome.results) == 1
        ((parked, error),) = rig.parked
        assert parked.write["workspace_id"] == "ws-nobody" and isinstance(error, UnknownWorkspaceError)
        assert error.log_code() == "UNKNOWN_WORKSPACE"
        (entry,) = rig.sync_entries
        assert (entry.code, entry.workspace_id) == ("UNKNOWN_WORKSPACE", "ws-nobody")
    finally:
        await rig.close()


async def test_a_rotated_refresh_token_is_written_back_and_its_own_write_back_is_no_reconnect(
    rig: RoutedRig,
) -> None:
    a = rig.add_org("org-a")
    a.emulator.auth.change_app(rotate_refresh_tokens=True)
    rig.add_workspace("ws-a", "org-a")
    before = rig.directory.connection("org-a")

    await rig.until_done(rig.incoming(*members("ws-a", 1)))
    rig.wait_for(lambda: rig.directory.connection("org-a") != before)  # the rotated token, written back
    await rig.until_done(rig.incoming(*members("ws-a", 2)))

    assert a.emails() == emails(1, 2)
    assert [sink.connection_id for sink in rig.catalog.opened] == ["org-a"]  # not opened again
    after = rig.directory.connection("org-a")
    assert after is not None and before is not None
    assert (
        rig.keys.open("org-a", after.secrets)["refresh_token"]
        != rig.keys.open("org-a", before.secrets)["refresh_token"]
    )


async def test_a_connection_removed_from_the_registry_is_closed_and_its_writes_wait_with_an_entry(
    rig: RoutedRig,
) -> None:
    a = rig.add_org("org-a")
    rig.add_workspace("ws-a", "org-a")
    await rig.until_done(rig.incoming(*members("ws-a", 1)))
    (opened,) = rig.catalog.opened
    rig.topics.remove_connection("org-a")
    rig.wait_for(lambda: rig.directory.connection("org-a") is None)

    outcome = await rig.until_done(rig.incoming(*members("ws-a", 2)), rounds=5)

    assert opened.client._http.is_closed  # its client closed
    assert a.emails() == emails(1) and len(outcome.pending) == 1
    assert rig.router.held()[HoldCause.CREDENTIALS] == 1
    assert {(e.code, e.workspace_id) for e in rig.entries} == {("CONNECTION_NOT_FOUND", "ws-a")}


async def test_the_sinks_of_many_connections_share_one_tls_context(rig: RoutedRig) -> None:
    before = tls_contexts()
    org = SalesforceSettings.model_validate(
        {"auth_flow": "access_token", "access_token": "00Dx!t", "instance_url": "https://org.example.test"}
    )
    sinks = [ConnectionSink(f"org-{i}", org, rig.catalog.inner.hooks) for i in range(10)]  # their own transports
    try:
        assert tls_contexts() - before <= 1  # not one CA bundle per org (200 orgs: 160 MB and 7 s)
    finally:
        for sink in sinks:
            await sink.aclose()


async def test_after_a_revocation_every_replayed_write_is_written_again_in_order_none_counted_done_by_an_old_batch(
    rig: RoutedRig,
) -> None:
    from sfsync.emulator.faults import Faults

    org = rig.add_org("org-a")
    rig.add_workspace("ws-a", "org-a")
    first, second = rig.incoming(*members("ws-a", 1, 2))
    assert not (await rig.router.put([first])).pending  # done and taken in before the revocation
    org.emulator.faults = Faults.parse("latency=300ms")  # the second's batch outlasts the router's wait
    assert keys_of((await rig.router.put([second])).pending) == keys_of([second])  # on its way
    org.emulator.faults = Faults.parse("")

    await rig.router.release({(second.topic, second.partition)})  # revoked: done, not taken in yet
    sent_before = len(rig.batch_sizes)
    replayed = await rig.router.put([first, second])  # assigned here again: both read again from the commit

    assert rig.batch_sizes[sent_before:] == [2]  # both written again, in order: the second is not counted done
    assert not replayed.pending
