"""The rules of the sink's routing (pure; :mod:`sfsync.sinks.router` runs them): which connection serves a
write and how long a connection that cannot take its writes is held (docs/decisions/0009-workspaces-and-connections.md).

- :func:`route_of`: a write goes to its workspace's connection; without the registry
  (``SFSYNC_WORKSPACES_ENABLED`` off) every write goes to ``env``, the environment's ``SALESFORCE_*``
  connection; with it, a workspace the registry does not know goes to ``env`` too, unless
  ``SFSYNC_WORKSPACES_REQUIRED`` is on (then it is parked, UNKNOWN_WORKSPACE); a PAUSED or DISCONNECTED
  workspace's writes are held.
- :class:`~sfsync.retry.Hold` and :func:`~sfsync.retry.hold_after` (shared with the poller's orgs):
  a connection held for a :class:`HoldCause` until a time; the
  org's outage and refused credentials are tried again on a doubling backoff, the API budget's pause
  when the governor says.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from sfsync.retry import Hold, backoff_s, hold_after
from sfsync.workspaces.records import ENV_CONNECTION_ID, Workspace, WorkspaceState

__all__ = ["Hold", "HoldCause", "Route", "backoff_s", "hold_after", "route_of"]


class HoldCause(StrEnum):
    """Why a connection's writes wait (the label of ``sfsync_sink_connections_held``)."""

    ORG_DOWN = "org_down"
    """The org answered no call of a batch (5xx, connections refused or timing out), past its retries."""
    CREDENTIALS = "credentials"
    """The login is refused (``invalid_grant``, an expired or revoked token...), or the connection cannot be
    opened (removed, sealed under a key this process lacks, invalid)."""
    REFUSED = "refused"
    """The org refuses the integration as a whole (the API disabled, a permission gone): a fatal answer."""
    BUDGET = "budget"
    """The org's API budget is paused (the governor's pause, the daily allocation spent)."""
    WORKSPACE = "workspace"
    """A workspace of the connection is PAUSED or DISCONNECTED (its writes wait; its other workspaces' go)."""


@dataclass(frozen=True)
class Route:
    """Where a workspace's writes go: ``connection_id`` (None: nowhere, the workspace is unknown and
    required); ``held``: the workspace's state when it is not ACTIVE (its writes wait)."""

    connection_id: str | None
    held: WorkspaceState | None = None


def route_of(workspace: Workspace | None, *, enabled: bool, required: bool) -> Route:
    """The route of a write whose workspace the registry holds as ``workspace`` (None: it knows none)."""
    if not enabled:
        return Route(ENV_CONNECTION_ID)
    if workspace is None:
        return Route(None) if required else Route(ENV_CONNECTION_ID)
    held = workspace.state if workspace.state is not WorkspaceState.ACTIVE else None
    return Route(workspace.connection_id, held)
