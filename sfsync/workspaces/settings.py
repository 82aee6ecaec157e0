"""Settings of the workspace registry: whether the workers read it (``SFSYNC_WORKSPACES_ENABLED``) and
whether an event of a workspace it does not know is parked (``SFSYNC_WORKSPACES_REQUIRED``), where Kafka
and the schema registry are, the keys that seal connections' secrets (``SFSYNC_CONNECTION_KEYS``), and
how long its reads and writes may take.

Load with :func:`load_workspaces_settings`: one :class:`~sfsync.errors.ConfigError` lists every problem,
each bad key among them (by item number or key id, never its bytes).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator

from sfsync.errors import ConfigError
from sfsync.settings import KafkaConnection, RegistryConnection, load
from sfsync.workspaces.sealing import KEYS_SETTING, ConnectionKeys, key_problems, parse_keys

__all__ = ["WorkspacesSettings", "load_workspaces_settings"]

_VALUE_ERROR = ": Value error, "
_PROBLEMS_APART = "\n"


class WorkspacesSettings(KafkaConnection, RegistryConnection):
    """The workspace registry's settings (the CLI's ``workspaces`` and ``connections`` commands, and every
    process that reads the registry)."""

    enabled: bool = Field(
        False,
        validation_alias="SFSYNC_WORKSPACES_ENABLED",
        description=(
            "Whether the workers read the workspace registry to route each workspace's records (its mapping, its "
            "org). Off: the environment's connection (SALESFORCE_*, the configured mapping) serves every workspace."
        ),
    )
    required: bool = Field(
        False,
        validation_alias="SFSYNC_WORKSPACES_REQUIRED",
        description=(
            "With the registry on, whether a workspace it does not know is refused (its records parked with "
            "UNKNOWN_WORKSPACE) rather than served by the environment's connection and the configured mapping."
        ),
    )
    connection_keys: SecretStr | None = Field(
        None,
        validation_alias=KEYS_SETTING,
        description=(
            "The keys that seal connections' secrets: key_id:base64(32 bytes) items separated by commas; the "
            "first seals, every one opens. Unset: no secret is written or read (the commands that need one refuse)."
        ),
    )
    load_timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        validation_alias="SFSYNC_WORKSPACES_LOAD_TIMEOUT_S",
        description="How long reading the registry's topics to their end may take before it is reported.",
    )
    delivery_timeout_s: float = Field(
        30.0,
        gt=0,
        le=600,
        validation_alias="SFSYNC_WORKSPACES_DELIVERY_TIMEOUT_S",
        description="How long Kafka may take to store a record the registry writes.",
    )

    @field_validator("connection_keys")
    @classmethod
    def _keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        problems = key_problems(value.get_secret_value())
        if problems:
            raise ValueError(_PROBLEMS_APART.join(problems))
        return value

    def keys(self) -> ConnectionKeys:
        """The sealing keys.

        Raises:
            ConfigError: ``SFSYNC_CONNECTION_KEYS`` is not set.
        """
        if self.connection_keys is None:
            raise ConfigError(
                "workspaces",
                [
                    f"{KEYS_SETTING} is not set: connections' secrets are never written or read in clear; set it "
                    "to key_id:base64(32 bytes) (`sfsync connections keygen` makes one)"
                ],
            )
        return parse_keys(self.connection_keys)


def load_workspaces_settings(**overrides: Any) -> WorkspacesSettings:
    """:class:`WorkspacesSettings` from the environment (and ``overrides``).

    Raises:
        ConfigError: every invalid value, each problem of ``SFSYNC_CONNECTION_KEYS`` on its own line.
    """
    try:
        return load(WorkspacesSettings, "workspaces", **overrides)
    except ConfigError as exc:
        problems: list[str] = []
        for problem in exc.problems:
            head, found, tail = problem.partition(_VALUE_ERROR)
            problems.extend(tail.split(_PROBLEMS_APART) if found and head == KEYS_SETTING else [problem])
        raise ConfigError("workspaces", problems) from None
