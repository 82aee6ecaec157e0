"""The workspace registry (docs/decisions/0009-workspaces-and-connections.md): many customer workspaces,
each connecting its own Salesforce org, kept as data in two compacted topics.

- :mod:`~sfsync.workspaces.records`: :class:`Connection` (``sfsync.connections``), :class:`Workspace`
  (``sfsync.workspaces``), their states and flows (pure);
- :mod:`~sfsync.workspaces.sealing`: connections' secrets sealed with AES-256-GCM under
  ``SFSYNC_CONNECTION_KEYS`` (:class:`ConnectionKeys`);
- :mod:`~sfsync.workspaces.settings`: :class:`WorkspacesSettings`;
- :mod:`~sfsync.workspaces.directory`: :class:`Directory`, both topics read and followed;
- :mod:`~sfsync.workspaces.writer`: :class:`RegistryWriter`, records and tombstones written;
- :mod:`~sfsync.workspaces.logins`: a connection's ``SalesforceSettings``, its client, and the write-back of
  a rotated refresh token (:class:`RefreshTokenWriteBack`).
"""

from sfsync.workspaces.directory import Directory, DirectoryState
from sfsync.workspaces.logins import RefreshTokenWriteBack, open_client, salesforce_settings
from sfsync.workspaces.records import (
    ENV_CONNECTION_ID,
    SECRET_FIELDS,
    Connection,
    ConnectionFlow,
    ConnectionNotFoundError,
    EncryptedSecrets,
    Workspace,
    WorkspaceNotFoundError,
    WorkspaceState,
)
from sfsync.workspaces.sealing import ConnectionKeys, SealError, new_key, parse_keys
from sfsync.workspaces.settings import WorkspacesSettings, load_workspaces_settings
from sfsync.workspaces.writer import RegistryWriter

__all__ = [
    "ENV_CONNECTION_ID",
    "SECRET_FIELDS",
    "Connection",
    "ConnectionFlow",
    "ConnectionKeys",
    "ConnectionNotFoundError",
    "Directory",
    "DirectoryState",
    "EncryptedSecrets",
    "RefreshTokenWriteBack",
    "RegistryWriter",
    "SealError",
    "Workspace",
    "WorkspaceNotFoundError",
    "WorkspaceState",
    "WorkspacesSettings",
    "load_workspaces_settings",
    "new_key",
    "open_client",
    "parse_keys",
    "salesforce_settings",
]
