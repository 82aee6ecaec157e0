"""How the mapping layer fails: a mapping file that cannot be used (:class:`MappingError`, fatal, every
problem listed) and one event a mapping cannot be evaluated on (:class:`MappingEvaluationError`,
skippable: the stream goes on without that record)."""

from __future__ import annotations

from collections.abc import Sequence

from sfsync.errors import ConfigError, FatalError, SkippableRecordError


class MappingError(ConfigError):
    """A mapping file that cannot be loaded; ``problems`` lists every problem found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.component = "mappings"
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        FatalError.__init__(self, f"invalid mapping file {source} ({len(self.problems)} problem(s)):\n{lines}")


class MappingEvaluationError(SkippableRecordError):
    """One event cannot be mapped (a CEL expression failed on it); names the mapping and field."""

    def __init__(self, mapping: str, where: str, reason: str) -> None:
        self.mapping = mapping
        self.where = where
        self.reason = reason
        super().__init__(f"mapping {mapping}, {where}: {reason}")
