"""Several emulated orgs in one process, each its own Salesforce org: its own org id, users, connected app
(consumer key and secret), daily limit, faults, sessions and data -- as separate customers' orgs are.

An :class:`OrgSpec` says what one org differs in; :class:`OrgBuilder` makes the :class:`Emulator` of
each (:func:`sfsync.emulator.server.serve_orgs_in_thread` serves them, one port each). Identities are
deterministic from the fleet's ``seed`` and the org's index (:func:`org_identity`):

- org id: ``00D`` + a stable id of ``(seed, index)``;
- usernames: the org file's, with the org's name appended as a last domain label
  (``integration@acme.test`` -> ``integration@acme.test.org3``), the way a sandbox's usernames get the
  sandbox name -- a Salesforce username is unique across every org; user ids follow from the usernames;
- the connected app's consumer key: ``3MVG9`` + 40 characters from ``(seed, index)``; its consumer
  secret: the spec's, else a random one, known only in this process.

Cost: an org file is read and its schema built once per :class:`OrgBuilder`; every org built from it
shares the (immutable until changed) object definitions -- an org that changes a field
(``POST /__admin/fields``) copies that object's definition first (:meth:`OrgStore.put_field`), so the
change shows on that org only. Rows, indexes, sessions, usage and faults are per org.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfsync.emulator import ids
from sfsync.emulator import org as org_file
from sfsync.emulator.app import Emulator
from sfsync.emulator.faults import Faults
from sfsync.emulator.oauth import AuthServer, default_config
from sfsync.emulator.org import OrgDefinition
from sfsync.emulator.store import OrgStore

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


@dataclass(frozen=True)
class OrgSpec:
    """One org of several: what it differs in. ``name``: a DNS-label-like tag (``org-b``; default
    ``org<index>``), appended to its usernames; ``org_file``: its YAML (None: the default org);
    ``faults``: a fault spec (:mod:`sfsync.emulator.faults`); ``daily_limit``: its daily API allocation
    (None: the org file's); ``rotate_refresh_tokens``: its connected app's refresh token rotation;
    ``client_secret``: its connected app's consumer secret (None: random); ``clock``: its record
    timestamps' clock."""

    name: str | None = None
    org_file: Path | None = None
    faults: str | None = None
    daily_limit: int | None = None
    rotate_refresh_tokens: bool = False
    client_secret: str | None = field(default=None, repr=False)
    clock: Callable[[], dt.datetime] | None = None

    def __post_init__(self) -> None:
        if self.name is not None and not _NAME.match(self.name):
            raise ValueError(f"org name {self.name!r}: lower-case letters, digits and '-', starting with a letter")
        if self.daily_limit is not None and self.daily_limit < 1:
            raise ValueError("daily_limit is at least 1")
        Faults.parse(self.faults)  # FaultSpecError (a ValueError) now rather than when serving


@dataclass(frozen=True)
class OrgIdentity:
    """Who an org of several is: its name, org id and connected app consumer key."""

    name: str
    org_id: str
    client_id: str


def org_identity(spec: OrgSpec, index: int, seed: int) -> OrgIdentity:
    """The identity of the org at ``index`` of a fleet seeded ``seed`` (same inputs, same identity)."""
    digest = hashlib.sha256(f"sfsync-emulator/{seed}/{index}".encode()).digest()
    number = int.from_bytes(digest, "big")
    key = []
    for _ in range(40):
        number, rest = divmod(number, 62)
        key.append(ids.BASE62[rest])
    return OrgIdentity(
        name=spec.name or f"org{index}",
        org_id=ids.stable_id("00D", f"org/{seed}/{index}"),
        client_id="3MVG9" + "".join(key),
    )


class OrgBuilder:
    """Builds the emulators of several orgs; reads each org file once (see the module docstring)."""

    def __init__(self) -> None:
        self._definitions: dict[Path | None, OrgDefinition] = {}

    def definition(self, path: Path | None) -> OrgDefinition:
        """The org file at ``path`` (None: the default org), read once (OrgFileError for a bad one)."""
        key = path.resolve() if path is not None else None
        if key not in self._definitions:
            self._definitions[key] = org_file.load(key)
        return self._definitions[key]

    def build(self, spec: OrgSpec, identity: OrgIdentity, base_url: str) -> Emulator:
        """The emulator of one org served at ``base_url`` (its instance and login URL)."""
        store = OrgStore.from_definition(_own_identity(self.definition(spec.org_file), identity), clock=spec.clock)
        config = default_config(
            instance_url=base_url,
            store=store,
            client_id=identity.client_id,
            client_secret=spec.client_secret,
            rotate_refresh_tokens=spec.rotate_refresh_tokens,
        )
        return Emulator(store, AuthServer(config), faults=Faults.parse(spec.faults), daily_limit=spec.daily_limit)


def _own_identity(shared: OrgDefinition, identity: OrgIdentity) -> OrgDefinition:
    """``shared`` with this org's id, name and usernames (and so user ids); the schema stays shared."""
    users: list[dict[str, Any]] = []
    user_ids: dict[str, str] = {}
    for values in shared.users:
        username = f"{values['Username']}.{identity.name}"
        user_id = ids.stable_id("005", username.lower())
        user_ids[values["Id"]] = user_id
        users.append({**values, "Username": username, "Id": user_id})
    settings = shared.settings.model_copy(
        update={"id": identity.org_id, "name": f"{shared.settings.name} ({identity.name})"}
    )
    return OrgDefinition(
        settings=settings,
        schema=shared.schema,
        users=users,
        integration_user_id=user_ids[shared.integration_user_id],
        duplicate_rules=list(shared.duplicate_rules),
    )
