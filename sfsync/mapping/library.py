"""The mapping library: the mapping files workspaces run, each compiled once per distinct variables.

A workspace (docs/decisions/0009-workspaces-and-connections.md) runs a mapping file with variables of
its own. :meth:`MappingLibrary.compiled` answers the :class:`~sfsync.mapping.model.MappingFile` of a
file name and variables:

- the name is a file in the library folder (``SFSYNC_MAPPING_LIBRARY``; ``acme`` also finds
  ``acme.yaml``); None is the configured mapping (``SFSYNC_MAPPING_FILE``, else the shipped default);
- the variables are set into it as ``sfsync mappings validate --set`` does: over ``SFSYNC_MAPPING_VARS``,
  which are over the file's own (:meth:`~sfsync.mapping.settings.MappingSettings.with_overrides`);
- each distinct (name, variables) is read, parsed and checked against every rule that needs no org
  (:func:`~sfsync.mapping.validate.require_valid`, as a process checks its mapping at start) once, when
  first asked for; the answer, a mapping file or the :class:`~sfsync.mapping.errors.MappingError` that
  lists every problem, is kept for the ``capacity`` most recently used (a least-recently-used cache).
  A file changed on disk is read again only once its answer left the cache (or after a restart).

Nothing here talks to Kafka or Salesforce.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping as MappingABC
from pathlib import Path

from sfsync.errors import ConfigError
from sfsync.mapping.errors import MappingError
from sfsync.mapping.model import MappingFile
from sfsync.mapping.settings import MappingSettings, load_configured_mappings
from sfsync.mapping.validate import require_valid

__all__ = ["DEFAULT_CAPACITY", "LIBRARY_SETTING", "MappingLibrary"]

DEFAULT_CAPACITY = 256
"""How many compiled (file, variables) a library keeps by default."""
LIBRARY_SETTING = "SFSYNC_MAPPING_LIBRARY"

_Key = tuple[str | None, tuple[tuple[str, str], ...]]


class MappingLibrary:
    """Mapping files by (name, variables), compiled and validated once each (see the module doc).

    ``settings``: the mapping setting (the configured file, its variables, the library folder).
    ``configured``: that setting's mapping file already loaded and validated (a process's own), answered
    for no name and no variables without reading anything; None: compiled like any other.

    Raises (making it):
        ConfigError: the library folder is set and is not a folder.
    """

    def __init__(
        self,
        settings: MappingSettings,
        *,
        configured: MappingFile | None = None,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        if capacity < 1:
            raise ValueError("a mapping library keeps at least one compiled mapping")
        if settings.library is not None and not settings.library.is_dir():
            raise ConfigError("mapping", [f"{LIBRARY_SETTING}: {settings.library} is not a folder"])
        self.settings = settings
        self.capacity = capacity
        self.configured = configured
        self._compiled: OrderedDict[_Key, MappingFile | MappingError] = OrderedDict()
        self.compilations = 0
        """How many times a file was read and compiled (each distinct (name, variables) once while cached)."""

    def __repr__(self) -> str:
        return f"MappingLibrary(folder={self.settings.library!s}, cached={len(self._compiled)}/{self.capacity})"

    def compiled(self, name: str | None, variables: MappingABC[str, str] | None = None) -> MappingFile:
        """The mapping file ``name`` (None: the configured one) with ``variables`` set into it, valid.

        Raises:
            MappingError: the file cannot be found, read or parsed, or breaks a rule (every problem
                listed); the same error for the same (name, variables) while it is cached.
        """
        key: _Key = (name, tuple(sorted((str(k), str(v)) for k, v in (variables or {}).items())))
        if name is None and not key[1] and self.configured is not None:
            return self.configured
        found = self._compiled.get(key)
        if found is None:
            found = self._compile(name, dict(key[1]))
            self._compiled[key] = found
            if len(self._compiled) > self.capacity:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        if isinstance(found, MappingError):
            raise found
        return found

    def _compile(self, name: str | None, variables: dict[str, str]) -> MappingFile | MappingError:
        self.compilations += 1
        try:
            file = self.settings.file if name is None else self.path_of(name)
            return require_valid(load_configured_mappings(self.settings.with_overrides(file, variables)))
        except MappingError as exc:
            return exc

    def path_of(self, name: str) -> Path:
        """Where the library's file ``name`` is (``name``, else ``name.yaml``, in the library folder).

        Raises:
            MappingError: no library folder is set, or ``name`` is not a plain file name (a folder, ``..``).
        """
        folder = self.settings.library
        if folder is None:
            raise MappingError(name, [f"{LIBRARY_SETTING} is not set: a workspace cannot name a mapping file"])
        if name in ("", ".", "..") or Path(name).name != name:
            raise MappingError(name, [f"{name!r} is not the name of a file in the mapping library {folder}"])
        path = folder / name
        if not path.suffix and not path.is_file() and (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
        return path
