"""Drift: a field, object or permission the mappings use, removed from the org while the sink runs.

The sink validated its mappings against the org at start (:func:`sfsync.mapping.require_valid`);
afterwards an administrator may delete a field, hide it from the integration user (field-level
security) or take away the right to edit it. Salesforce then answers the sink's query or write with
one of :data:`~sfsync.salesforce.drift.DRIFT_CODES`, for the whole call (``No such column 'X'``: the
query, or a collection whose JSON names the field) or for one record (``Unable to create/update
fields: X``).

Such an answer (:func:`~sfsync.salesforce.drift.is_drift`) puts the mappings whose writes name that
field (every mapping of the call, when Salesforce names no field) in *quarantine*
(:class:`MappingQuarantine`) instead of stopping the sink:

- one error-log entry per quarantine (category CONNECTION, code ``MAPPING_QUARANTINED``, level
  ERROR, naming the mapping, object, fields and Salesforce's answer), and the mapping's value of the
  ``sfsync_mapping_quarantined`` gauge is 1;
- every write of the mapping, the ones in hand and those that come later, is parked in the DLQ with
  :class:`MappingQuarantinedError` (code ``MAPPING_QUARANTINED``: ``sfsync dlq replay --code
  MAPPING_QUARANTINED`` plans them again once the org is fixed), without an error-log entry each;
- the other mappings' writes go on as before (a write that was in the failed call with them is
  sent again in the next round).

Every ``quarantine_recheck_s`` (``SFSYNC_SINK_QUARANTINE_RECHECK_S``; 0: never, a restart lifts
it) the sink describes the mapping's objects again (bypassing the describe cache) and lifts the
quarantine when the mapping passes the start-up rules again (:meth:`MappingQuarantine.problems`):
an INFO entry ``MAPPING_RESTORED``, the gauge back to 0, and its next writes are written.

Other fatal answers (the login, the API disabled for the org) still stop the sink.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sfsync.errors import FatalError, RetriableError, SfsyncError, SkippableRecordError
from sfsync.keys import parse_record_key
from sfsync.mapping import Describe, MappingFile, gather_describes, validate_mappings
from sfsync.salesforce.drift import is_drift, named_fields
from sfsync.sinks.merge import _Segment

__all__ = [
    "QUARANTINED",
    "RESTORED",
    "DriftError",
    "MappingQuarantine",
    "MappingQuarantinedError",
    "Quarantined",
    "concerns",
    "field_problems",
    "is_drift",
]

QUARANTINED = "MAPPING_QUARANTINED"
"""The error-log and DLQ code of a quarantine and of the writes it parks."""
RESTORED = "MAPPING_RESTORED"
"""The error-log code (INFO) of a quarantine lifted."""


def concerns(drift: DriftError, seg: _Segment) -> bool:
    """Whether ``seg`` names what ``drift`` is about: one of its fields on its object (any of them,
    when Salesforce named none), counting the write's fields, match keys, external ID and lookups on
    its own objects, and the key fields by which it finds its parents on theirs."""
    wanted = {f.lower() for f in drift.fields}
    obj = drift.sobject.lower()
    names: set[str] = set()
    if obj in {o.lower() for o in (seg.sobject, *seg.objects)}:
        names |= {n.lower() for n in seg.fields}
        names |= {part.lower() for fields, _ in seg.match for part in fields.split("+")}
        names |= {lookup.lower() for lookup in seg.parents}
        if seg.external_id:
            names.add(seg.external_id[0].lower())
    for parent_key, declared in seg.parents.values():
        parent = parse_record_key(parent_key)
        if parent is not None and obj in {parent.sobject.lower(), declared.lower()}:
            names.add(parent.field.lower())
    if not names:
        return False
    return not wanted or bool(wanted & names)


class DriftError(FatalError):
    """A drift answer (:func:`is_drift`) to a call about ``sobject``; raised inside the sink's rounds.

    A FatalError, so that anything that does not handle it stops the sink as the answer would have.
    """

    def __init__(self, sobject: str, error: SfsyncError) -> None:
        self.sobject = sobject
        self.error = error
        self.fields = named_fields(error)
        super().__init__(f"{sobject}: {error}")


@dataclass
class Quarantined:
    """One mapping in quarantine: what Salesforce said, about which object and fields, since when."""

    mapping: str
    sobject: str
    fields: tuple[str, ...]
    code: str
    message: str
    since: float
    """When it began (the sink's monotonic clock)."""
    next_check: float
    """When its objects are described again (the sink's monotonic clock)."""

    def describe(self) -> str:
        where = ", ".join(f"{self.sobject}.{f}" for f in self.fields) or self.sobject
        return f"mapping {self.mapping} is quarantined: {where}: {self.code} {self.message}"


class MappingQuarantinedError(SkippableRecordError):
    """A write of a quarantined mapping: parked as it is, to be replayed once the org is fixed.

    The quarantine has its one error-log entry; the records it parks have none each
    (``log_each_record`` is False), so a backlog does not flood the error log.
    """

    default_code = QUARANTINED
    log_each_record = False

    def __init__(self, quarantined: Quarantined) -> None:
        self.quarantined = quarantined
        self.fields = list(quarantined.fields)
        super().__init__(quarantined.describe())

    def log_fields(self) -> Sequence[str]:
        return self.fields

    def log_details(self) -> dict[str, str]:
        return {"salesforce_code": self.quarantined.code, "sobject": self.quarantined.sobject}


def field_problems(describe: Mapping[str, Any], sobject: str, fields: Collection[str]) -> list[str]:
    """What is still wrong with ``fields`` of ``sobject`` in its ``describe`` body (pure): a field
    missing (deleted or hidden), or one the integration user can neither create nor update; with no
    field named, the object itself may no longer be created or updated."""
    by_name = {str(f.get("name", "")).lower(): f for f in describe.get("fields", [])}
    problems = []
    for name in fields:
        found = by_name.get(name.lower())
        if found is None:
            problems.append(f"{sobject} has no field {name}")
        elif not (found.get("createable") or found.get("updateable")):
            problems.append(f"{sobject}.{name} is read-only")
    if not fields and describe.get("createable") is False and describe.get("updateable") is False:
        problems.append(f"{sobject} can be neither created nor updated")
    return problems


class MappingQuarantine:
    """The quarantined mappings of one sink (see the module docstring).

    ``mappings``: the mapping file the sink validated at start (None: only the named fields are
    checked before a quarantine lifts); ``recheck_s``: how often a quarantined mapping's objects are
    described again (0: never); ``monotonic``: the sink's clock; ``on_change(mapping, quarantined)``:
    called when a mapping enters or leaves quarantine (the metrics gauge).
    """

    def __init__(
        self,
        *,
        recheck_s: float,
        monotonic: Callable[[], float],
        mappings: MappingFile | None = None,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.recheck_s = recheck_s
        self.mappings = mappings
        self._monotonic = monotonic
        self._on_change = on_change
        self._current: dict[str, Quarantined] = {}

    def get(self, mapping: str) -> Quarantined | None:
        """The quarantine of ``mapping``, or None when its writes go to Salesforce."""
        return self._current.get(mapping)

    @property
    def current(self) -> dict[str, Quarantined]:
        """Mapping name -> its quarantine, for every mapping in quarantine."""
        return dict(self._current)

    def enter(self, mapping: str, drift: DriftError) -> Quarantined | None:
        """Put ``mapping`` in quarantine for ``drift``; the new quarantine, or None when it already was."""
        if mapping in self._current:
            return None
        now = self._monotonic()
        error = drift.error
        quarantined = Quarantined(
            mapping=mapping,
            sobject=drift.sobject,
            fields=tuple(drift.fields),
            code=str(getattr(error, "error_code", error.log_code())),
            message=str(getattr(error, "message", None) or error),
            since=now,
            next_check=now + self.recheck_s,
        )
        self._current[mapping] = quarantined
        if self._on_change is not None:
            self._on_change(mapping, True)
        return quarantined

    def due(self) -> list[Quarantined]:
        """The quarantines whose objects are to be described again now."""
        if self.recheck_s <= 0:
            return []
        now = self._monotonic()
        return [q for q in self._current.values() if q.next_check <= now]

    async def recheck(self, describe: Describe) -> list[Quarantined]:
        """Describe again the objects of every quarantine that is due (``describe``: the body, None
        when the object is gone; it should bypass any cache) and lift those with no problem left
        (:meth:`problems`); returns the lifted ones. A transient fault while describing keeps the
        quarantine until the next recheck."""
        lifted = []
        for quarantined in self.due():
            mapping = self.mappings.get(quarantined.mapping) if self.mappings is not None else None
            try:
                if self.mappings is not None and mapping is not None:
                    describes = dict(await gather_describes(self.mappings, describe, only=[mapping.name]))
                else:
                    describes = {}
                if quarantined.sobject.lower() not in {k.lower() for k in describes}:
                    own = await describe(quarantined.sobject)
                    if own is not None:
                        describes[quarantined.sobject] = own
            except RetriableError:
                self.checked(quarantined, ["a transient fault while describing"])
                continue
            if self.checked(quarantined, self.problems(quarantined, describes)):
                lifted.append(quarantined)
        return lifted

    def problems(self, quarantined: Quarantined, describes: Mapping[str, Mapping[str, Any]]) -> list[str]:
        """What still keeps ``quarantined`` in quarantine, given fresh ``describes`` (object name ->
        body; pure): the fields Salesforce named, and the mapping against the start-up rules
        (:func:`sfsync.mapping.validate_mappings`), when the sink has its file. An object missing
        from ``describes`` is still gone."""
        by_name = {k.lower(): v for k, v in describes.items()}
        own = by_name.get(quarantined.sobject.lower())
        if own is None:
            return [f"{quarantined.sobject} cannot be described"]
        problems = field_problems(own, quarantined.sobject, quarantined.fields)
        mapping = self.mappings.get(quarantined.mapping) if self.mappings is not None else None
        if self.mappings is not None and mapping is not None:
            problems += validate_mappings(self.mappings, describes, only=[mapping.name])
        return problems

    def checked(self, quarantined: Quarantined, problems: Sequence[str]) -> bool:
        """Account for a recheck: lift the quarantine when nothing is wrong any more (True), else
        look again in ``recheck_s``."""
        if problems:
            quarantined.next_check = self._monotonic() + self.recheck_s
            return False
        del self._current[quarantined.mapping]
        if self._on_change is not None:
            self._on_change(quarantined.mapping, False)
        return True
