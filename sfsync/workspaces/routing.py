"""Routing by workspace: which workspace record serves an event's workspace, and which mapping file plans it.

With the registry on (``SFSYNC_WORKSPACES_ENABLED``), a record's workspace is looked up in the directory
(:class:`~sfsync.workspaces.directory.Directory`, or anything with ``workspace(id)``):

- :func:`known_workspace`: the workspace, or None when the directory does not know it (the environment's
  connection ``env`` and the configured mapping serve it, as without the registry), unless
  ``SFSYNC_WORKSPACES_REQUIRED``: then :class:`UnknownWorkspaceError` (its records park, ``UNKNOWN_WORKSPACE``);
- :class:`WorkspaceMappings`: ``mappings_for(workspace_id)``, the mapping file that plans the workspace's
  events: its ``mapping`` (a file of the mapping library, None: the configured one) with its
  ``variables`` set into it, compiled once per distinct file and variables
  (:class:`~sfsync.mapping.library.MappingLibrary`); an invalid one raises :class:`WorkspaceMappingError`
  (``INVALID_WORKSPACE_MAPPING``, every problem listed): that workspace's records park, the others flow.

A workspace's state does not change which mapping plans its events: a PAUSED or DISCONNECTED
workspace's events are planned as an ACTIVE one's (the sink holds its writes until it resumes).
"""

from __future__ import annotations

from typing import Protocol

from sfsync.errors import SkippableRecordError
from sfsync.mapping import MappingError, MappingFile, MappingLibrary
from sfsync.workspaces.records import Workspace

__all__ = ["UnknownWorkspaceError", "WorkspaceLookup", "WorkspaceMappingError", "WorkspaceMappings", "known_workspace"]


class WorkspaceLookup(Protocol):
    """The directory's answer about one workspace (a :class:`~sfsync.workspaces.directory.Directory`, its state)."""

    def workspace(self, workspace_id: str) -> Workspace | None: ...


class UnknownWorkspaceError(SkippableRecordError):
    """The registry does not know the record's workspace, and ``SFSYNC_WORKSPACES_REQUIRED`` refuses one it does not."""

    default_code = "UNKNOWN_WORKSPACE"

    def __init__(self, workspace_id: str) -> None:
        self.workspace_id = workspace_id
        super().__init__(
            f"workspace {workspace_id!r} is not in the workspace registry and SFSYNC_WORKSPACES_REQUIRED is set "
            "(`sfsync workspaces add` adds it; then replay the parked records)"
        )

    def log_details(self) -> dict[str, str]:
        return {"workspace_id": self.workspace_id}


class WorkspaceMappingError(SkippableRecordError):
    """The mapping a workspace names cannot be used (missing, unreadable or invalid with its variables);
    ``problems`` lists every problem of it."""

    default_code = "INVALID_WORKSPACE_MAPPING"

    def __init__(self, workspace_id: str, mapping: str | None, error: MappingError) -> None:
        self.workspace_id = workspace_id
        self.mapping = mapping
        self.problems = list(error.problems)
        named = f"mapping {mapping!r}" if mapping is not None else "the configured mapping"
        listed = "; ".join(self.problems)
        super().__init__(
            f"workspace {workspace_id!r}: {named} with its variables cannot be used "
            f"({len(self.problems)} problem(s)): {listed}"
        )

    def log_details(self) -> dict[str, str]:
        return {"workspace_id": self.workspace_id, "workspace_mapping": self.mapping or ""}


def known_workspace(directory: WorkspaceLookup, workspace_id: str, *, required: bool) -> Workspace | None:
    """``workspace_id``'s record; None when the directory does not know it (the environment's connection
    and the configured mapping serve it).

    Raises:
        UnknownWorkspaceError: the directory does not know it and ``required``.
    """
    found = directory.workspace(workspace_id)
    if found is None and required:
        raise UnknownWorkspaceError(workspace_id)
    return found


class WorkspaceMappings:
    """``mappings_for(workspace_id)``: the mapping file that plans a workspace's events (see the module doc).

    ``library`` compiles and caches the files (its configured mapping serves a workspace the directory
    does not know, and one that names no mapping and no variables); ``required``:
    ``SFSYNC_WORKSPACES_REQUIRED``.
    """

    def __init__(self, directory: WorkspaceLookup, library: MappingLibrary, *, required: bool = False) -> None:
        self.directory = directory
        self.library = library
        self.required = required

    def __repr__(self) -> str:
        return f"WorkspaceMappings({self.library!r}, required={self.required})"

    def __call__(self, workspace_id: str) -> MappingFile:
        """The mapping file of ``workspace_id``'s events.

        Raises:
            UnknownWorkspaceError: the directory does not know the workspace and ``required``.
            WorkspaceMappingError: the workspace's mapping cannot be used (every problem listed).
        """
        workspace = known_workspace(self.directory, workspace_id, required=self.required)
        if workspace is None:
            return self.library.compiled(None)
        try:
            return self.library.compiled(workspace.mapping, workspace.variables)
        except MappingError as exc:
            raise WorkspaceMappingError(workspace_id, workspace.mapping, exc) from None
