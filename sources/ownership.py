"""Which orgs a poller replica polls, with the workspace registry (pure; decision 0009).

The replicas form one consumer group on the compacted ``sfsync.workspaces`` topic; Kafka assigns each
replica some of its partitions, and the workspaces whose records sit on those partitions are the replica's
(:func:`owned_connections` is given their ids). The poller polls connections (orgs), not workspaces:

- a connection is polled by the replica that owns the **smallest workspace id** among the connection's
  workspaces, so a connection several workspaces share is polled once, by one replica; the rule needs
  nothing but the directory, which every replica reads, and it does not move when a workspace is paused;
- a connection is polled only while one of its workspaces is ACTIVE: a PAUSED or DISCONNECTED
  workspace's org is left alone, its checkpoints where they were, and polling goes on from them when
  it is ACTIVE again, nothing skipped;
- the environment's connection ``env`` (which serves the workspaces the directory does not know, unless
  ``SFSYNC_WORKSPACES_REQUIRED``) belongs to no workspace: the replica assigned partition 0 polls it
  (:data:`ENV_PARTITION`).

Two replicas can both believe they own a connection for a moment (one has read a workspace record the
other has not yet): the transactions fence the one that took it over first (docs in
:mod:`sfsync.sources.poller`), so nothing is emitted twice.

:func:`change_workspace`: a change read from a connection belongs to its org; it names the workspace
when exactly one workspace uses the connection, else none (several workspaces each may need it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from sfsync.workspaces.records import Workspace, WorkspaceState

__all__ = ["ENV_PARTITION", "change_workspace", "owned_connections"]

ENV_PARTITION = 0
"""The partition of ``sfsync.workspaces`` whose replica polls the environment's connection."""


def owned_connections(owned: Collection[str], workspaces: Iterable[Workspace]) -> dict[str, tuple[Workspace, ...]]:
    """Connection id -> every workspace using it (by id), for each connection this replica polls: the smallest
    id of its workspaces is in ``owned`` and one of them is ACTIVE. ``workspaces``: every workspace the
    directory holds."""
    by_connection: dict[str, list[Workspace]] = {}
    for workspace in sorted(workspaces, key=lambda w: w.workspace_id):
        by_connection.setdefault(workspace.connection_id, []).append(workspace)
    return {
        connection_id: tuple(members)
        for connection_id, members in sorted(by_connection.items())
        if members[0].workspace_id in owned and any(w.state is WorkspaceState.ACTIVE for w in members)
    }


def change_workspace(workspaces: Sequence[Workspace]) -> str | None:
    """The workspace a connection's changes name: the one workspace using it, else None."""
    return workspaces[0].workspace_id if len(workspaces) == 1 else None
