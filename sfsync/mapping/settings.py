"""The mapping setting: which mapping file runs, with which variables, the same in every process.

Every process that maps reads it through :func:`load_mapping_settings` and loads the file with
:func:`load_configured_mappings`: the outbound processor, the inbound processor, the poller and
``sfsync mappings validate``. Given the same environment they run the same mappings, so a variable
such as ``member_object=Lead`` moves the writes, the polls and the inbound rules together.

- ``SFSYNC_MAPPING_FILE``: the mapping YAML; unset, the shipped default mapping. A relative path is
  relative to the process's working directory.
- ``SFSYNC_MAPPING_VARS``: values of the file's ``${name}`` variables, over the file's own: a JSON
  object (``{"member_object": "Lead"}``) or ``name=value`` pairs separated by commas
  (``member_object=Lead,prefix=acme__``).
- ``SFSYNC_MAPPING_LIBRARY``: the folder of the mapping files workspaces name (a workspace's ``mapping``,
  docs/decisions/0009-workspaces-and-connections.md; :class:`~sfsync.mapping.library.MappingLibrary`);
  unset, a workspace can only run the mapping above, with variables of its own.

The per-process names of earlier releases (:data:`RETIRED_NAMES`) are refused: a process started
with one set stops with a :class:`~sfsync.errors.ConfigError` naming the setting that replaces it,
rather than running the default mapping (docs/decisions/0003-one-mapping-setting.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sfsync.errors import ConfigError
from sfsync.mapping.loading import load_mappings
from sfsync.mapping.model import MappingFile
from sfsync.mapping.variables import parse_variables
from sfsync.settings import load

RETIRED_NAMES: dict[str, str] = {
    "SFSYNC_PROCESSOR_MAPPING_FILE": "SFSYNC_MAPPING_FILE",
    "SFSYNC_PROCESSOR_MAPPING_VARIABLES": "SFSYNC_MAPPING_VARS",
    "SFSYNC_INBOUND_MAPPING_FILE": "SFSYNC_MAPPING_FILE",
    "SFSYNC_INBOUND_MAPPING_VARIABLES": "SFSYNC_MAPPING_VARS",
    "SFSYNC_SOURCE_MAPPING_FILE": "SFSYNC_MAPPING_FILE",
}
"""Environment names no process reads any more -> the setting that replaces them."""


class MappingSettings(BaseSettings):
    """The mapping file and its variables (env ``SFSYNC_MAPPING_FILE``, ``SFSYNC_MAPPING_VARS``)."""

    model_config = SettingsConfigDict(env_prefix="SFSYNC_MAPPING_", extra="ignore", populate_by_name=True)

    file: Path | None = Field(None, description="The mapping YAML (default: the shipped default mapping).")
    vars: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="${name} values over the file's own: a JSON object or name=value[,name=value...].",
    )

    library: Path | None = Field(
        None,
        description=(
            "The folder of mapping files a workspace may name (its mapping: a file name in it); unset: every "
            "workspace runs SFSYNC_MAPPING_FILE, with its own variables over SFSYNC_MAPPING_VARS."
        ),
    )

    @field_validator("vars", mode="before")
    @classmethod
    def _variables(cls, value: Any) -> dict[str, str]:
        return parse_variables(value)

    def with_overrides(
        self, file: Path | None = None, variables: MappingABC[str, str] | None = None
    ) -> MappingSettings:
        """These settings with ``file`` instead of theirs (when given) and ``variables`` over their ``vars``,
        name by name (``sfsync mappings validate FILE --set name=value``)."""
        return self.model_copy(
            update={
                "file": file if file is not None else self.file,
                "vars": {**self.vars, **(variables or {})},
            }
        )


def retired_names_set(environ: MappingABC[str, str] | None = None) -> list[str]:
    """A problem for each retired name set in ``environ`` (None: this process's environment), naming
    the setting that replaces it; names match in any case, as settings do."""
    names = {name.upper() for name in (os.environ if environ is None else environ)}
    return [
        f"{old} is no longer read: set {new}, which every process that maps reads"
        for old, new in RETIRED_NAMES.items()
        if old in names
    ]


def load_mapping_settings(**overrides: Any) -> MappingSettings:
    """:class:`MappingSettings` from the environment (and ``overrides``). A ConfigError lists every
    problem: invalid values, and each retired name that is set."""
    retired = retired_names_set()
    try:
        settings = load(MappingSettings, "mapping", **overrides)
    except ConfigError as exc:
        raise ConfigError("mapping", [*exc.problems, *retired]) from None
    if retired:
        raise ConfigError("mapping", retired)
    return settings


def load_configured_mappings(settings: MappingSettings | None = None) -> MappingFile:
    """The mapping file ``settings`` name, with their variables (None: :func:`load_mapping_settings`).
    Raises :class:`~sfsync.mapping.errors.MappingError` listing every problem of the file."""
    chosen = settings if settings is not None else load_mapping_settings()
    return load_mappings(chosen.file, variables=chosen.vars)
