"""The routing rules of the sink (pure): which connection serves a workspace, a connection's next batch, the
holds' backoff."""

from __future__ import annotations

import pytest

from sfsync.sinks.routing import Hold, HoldCause, Route, backoff_s, hold_after, route_of
from sfsync.workspaces import ENV_CONNECTION_ID, WorkspaceState
from tests.kit.workspaces import workspace


def test_without_the_registry_every_workspace_is_served_by_env() -> None:
    known = workspace("ws-1", "acme-org")
    for found in (known, None):
        assert route_of(found, enabled=False, required=True) == Route(ENV_CONNECTION_ID)


def test_with_the_registry_a_workspace_goes_to_its_connection_and_an_unknown_one_to_env_unless_required() -> None:
    assert route_of(workspace("ws-1", "acme-org"), enabled=True, required=False) == Route("acme-org")
    assert route_of(None, enabled=True, required=False) == Route(ENV_CONNECTION_ID)
    assert route_of(None, enabled=True, required=True) == Route(None)  # parked: UNKNOWN_WORKSPACE


@pytest.mark.parametrize("state", [WorkspaceState.PAUSED, WorkspaceState.DISCONNECTED])
def test_a_paused_or_disconnected_workspace_is_held_on_its_connection(state: WorkspaceState) -> None:
    assert route_of(workspace("ws-1", "acme-org", state), enabled=True, required=False) == Route("acme-org", state)


def test_a_hold_backs_off_doubling_up_to_its_bound_and_starts_again_for_another_cause() -> None:
    assert [backoff_s(n, 5, 60) for n in range(1, 7)] == [5, 10, 20, 40, 60, 60]
    first = hold_after(None, HoldCause.ORG_DOWN, 100.0, "HTTP_503", initial_s=5, max_s=60)
    second = hold_after(first, HoldCause.ORG_DOWN, 105.0, "CONNECTION_ERROR", initial_s=5, max_s=60)
    assert first == Hold(HoldCause.ORG_DOWN, 100.0, 105.0, 1, "HTTP_503")
    assert second == Hold(HoldCause.ORG_DOWN, 100.0, 115.0, 2, "CONNECTION_ERROR")  # since the first failure
    other = hold_after(second, HoldCause.CREDENTIALS, 115.0, "AUTH_FAILED", initial_s=30, max_s=300)
    assert (other.failures, other.since, other.until) == (1, 115.0, 145.0)
    budget = hold_after(other, HoldCause.BUDGET, 120.0, "API_BUDGET_PAUSED", initial_s=0, max_s=0, wait_s=300)
    assert budget.until == 420.0  # as long as the governor says
