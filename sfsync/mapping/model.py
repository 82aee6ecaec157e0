"""The mapping model: pydantic classes for a mapping file after ``${variable}`` substitution.

A :class:`MappingFile` holds :class:`Mapping` s, each one product entity to one Salesforce object;
each :class:`FieldMap` takes its value from a product field (``from``), a ``constant`` or a CEL
``expr``. Validation here is the shape only (one source per field, unique names, lower_snake_case);
:mod:`sfsync.mapping.validate` checks a file against an org and the product schemas.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal, NamedTuple

import cel
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from sfsync.mapping.cel import OutboundScope
from sfsync.mapping.products import entity_event_types

Direction = Literal["to_salesforce", "to_product", "both"]
Policy = Literal["always", "if_empty"]
Conflict = Literal["last_write_wins", "product_wins", "salesforce_wins"]
Entity = Literal["member", "event", "attendance", "forum"]
DeleteAction = Literal["delete", "update", "ignore"]
InboundDeleteAction = Literal["ignore", "flag", "delete"]
Unlinked = Literal["ignore", "import"]
Action = Literal["upsert", "update", "delete", "ignore"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FieldMap(_Strict):
    """One Salesforce field and where its value comes from (exactly one of from / constant / expr)."""

    sf: str = Field(min_length=1, description="Salesforce field API name.")
    from_: str | list[str] | None = Field(
        None,
        alias="from",
        description="Dotted path into the event payload (e.g. member.email); a list: the first path the event carries.",
    )
    constant: str | int | float | bool | None = Field(
        None, description="A fixed text or picklist value (towards Salesforce only; at most 5 per mapping)."
    )
    expr: str | None = Field(None, description="A CEL expression over `source` (the payload) and `event` (envelope).")
    direction: Direction = "to_salesforce"
    policy: Policy = Field("always", description="always: overwrite; if_empty: only fill an empty Salesforce field.")
    default: str | None = Field(
        None,
        description="Written when the product value is empty; when the event does not carry the field at all, "
        "only fills an empty Salesforce field (or a new record).",
    )
    value_map: dict[str, str] | None = Field(
        None, description="Product value -> Salesforce value (e.g. enum symbols to picklist values)."
    )
    only_for: list[str] | None = Field(
        None, description="Only when the mapping's target is one of these objects (e.g. [Lead])."
    )
    conflict: Conflict | None = Field(None, description="Overrides the mapping's conflict policy for this field.")

    @model_validator(mode="after")
    def _one_source(self) -> FieldMap:
        given = [
            k for k, v in (("from", self.from_), ("constant", self.constant), ("expr", self.expr)) if v is not None
        ]
        if len(given) != 1:
            raise ValueError(f"field {self.sf}: give exactly one of from, constant, expr (got {given or 'none'})")
        return self

    @property
    def paths(self) -> list[str]:
        if self.from_ is None:
            return []
        return [self.from_] if isinstance(self.from_, str) else list(self.from_)

    @property
    def outbound(self) -> bool:
        return self.direction in ("to_salesforce", "both")

    @property
    def inbound(self) -> bool:
        return self.direction in ("to_product", "both")


class MatchKey(_Strict):
    """``field`` equals the value at ``from`` (or of ``expr``); with neither, ``field`` is one of the
    mapping's parents (the parent record's Id)."""

    field: str = Field(min_length=1)
    from_: str | None = Field(None, alias="from")
    expr: str | None = Field(None, description="CEL giving the value, when no single product field holds it.")

    @model_validator(mode="after")
    def _at_most_one(self) -> MatchKey:
        if self.from_ is not None and self.expr is not None:
            raise ValueError(f"match {self.field}: give from or expr, not both")
        return self


class ParentRef(_Strict):
    """A lookup filled with the Id of the record another mapping matches for the same event."""

    mapping: str
    required: bool = Field(True, description="false: leave the lookup empty when the event has no such parent.")


class DeletePolicy(_Strict):
    """What product events that remove the entity do to its Salesforce record."""

    when: list[str] = Field(min_length=1, description="Product event types, e.g. [EventUnpublished].")
    action: DeleteAction = "delete"
    fields: list[FieldMap] = Field(default_factory=list, description="Written when action is update.")


class InboundLink(_Strict):
    """An identity link sent to the product: ``salesforce:<name>`` holds the record's ``sf`` field."""

    name: str = Field(description="Link name after `salesforce:` (e.g. account_id).")
    sf: str = Field(min_length=1, description="Salesforce field holding the linked Id (e.g. AccountId).")
    only_for: list[str] | None = Field(None, description="Only when the mapping's target is one of these objects.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lower_snake_case (a-z, 0-9, _)")
        return value


class InboundOptions(_Strict):
    """What Salesforce-side changes to this mapping's records do in the product (member mappings)."""

    delete: InboundDeleteAction = Field(
        "ignore", description="A deleted Salesforce record: ignore, flag (set flag_field), or delete the member."
    )
    flag_field: str | None = Field(None, description="Product field set true on delete (false on undelete).")
    unlinked: Unlinked = Field(
        "ignore",
        description="A record linked to no member: ignore (only records sfsync synced flow back), "
        "or import (emit an import candidate).",
    )
    member_id_field: str | None = Field(
        None, description="Salesforce field holding the member id (default: the field mapped from member.member_id)."
    )
    links: list[InboundLink] = Field(default_factory=list, description="Identity links besides salesforce:id.")

    @model_validator(mode="after")
    def _flag_needs_field(self) -> InboundOptions:
        if self.delete == "flag" and not self.flag_field:
            raise ValueError("inbound delete: flag needs flag_field (the product field to set)")
        return self


class OutboundField(NamedTuple):
    """What the outbound rule reads of one field, read once per mapping (see :meth:`Mapping.outbound_specs`)."""

    field: FieldMap
    sf: str
    path: str | None
    """``from_`` when it is one path; None: a list of paths, a constant or an expression (``field_value``)."""
    policy: Policy
    default: str | None
    value_map: dict[str, str] | None


class Mapping(_Strict):
    """One product entity to one Salesforce object."""

    name: str = Field(description="Unique name (lower_snake_case); parents refer to it.")
    entity: Entity | list[Entity] = Field(description="Product entity (topic) or entities feeding this mapping.")
    events: list[str] | None = Field(None, description="Event types that write; default: every type of the entity.")
    target: str = Field(min_length=1, description="Salesforce object API name.")
    enabled: bool = True
    match: list[MatchKey | list[MatchKey]] = Field(
        default_factory=list, description="Ordered alternatives; a list inside is a composite key."
    )
    create_if_missing: bool = True
    record_type: str | None = Field(None, description="Record type developer name for created records.")
    outbound_filter: str | None = Field(None, description="CEL; the mapping fires only when it is true.")
    inbound_filter: str | None = Field(None, description="CEL over `record` (the Salesforce values).")
    conflict: Conflict = "last_write_wins"
    fields: list[FieldMap] = Field(default_factory=list)
    parents: dict[str, ParentRef] = Field(default_factory=dict, description="Lookup field -> parent mapping.")
    delete: DeletePolicy | None = None
    inbound: InboundOptions = Field(default_factory=lambda: InboundOptions.model_validate({}))

    _programs: dict[str, cel.Program] = PrivateAttr(default_factory=dict)
    _scope: OutboundScope | None = PrivateAttr(None)
    _outbound: dict[int, tuple[list[FieldMap], int, str, list[FieldMap], list[OutboundField]]] = PrivateAttr(
        default_factory=dict
    )
    _alternatives: tuple[list[MatchKey | list[MatchKey]], int, list[list[MatchKey]]] | None = PrivateAttr(None)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lower_snake_case (a-z, 0-9, _)")
        return value

    @field_validator("record_type")
    @classmethod
    def _empty_is_none(cls, value: str | None) -> str | None:
        return value or None

    @property
    def entities(self) -> list[str]:
        return [self.entity] if isinstance(self.entity, str) else list(self.entity)

    @property
    def match_alternatives(self) -> list[list[MatchKey]]:
        """``match`` as ordered alternatives, each a list of keys (one, or a composite key's). They are
        tried in order and the first that finds a record wins; an alternative that repeats an earlier
        one (variables choosing Email for both keys) counts once. Remembered per ``match`` list (and its
        length), as the outbound rule asks for them on every event."""
        private = self._private()
        found: tuple[list[MatchKey | list[MatchKey]], int, list[list[MatchKey]]] | None = private["_alternatives"]
        if found is not None and found[0] is self.match and found[1] == len(self.match):
            return found[2]
        out: list[list[MatchKey]] = []
        seen: set[tuple[tuple[str, str | None, str | None], ...]] = set()
        for entry in self.match:
            keys = [entry] if isinstance(entry, MatchKey) else list(entry)
            signature = tuple((k.field, k.from_, k.expr) for k in keys)
            if signature not in seen:
                seen.add(signature)
                out.append(keys)
        private["_alternatives"] = (self.match, len(self.match), out)
        return out

    def event_types(self) -> list[str]:
        """The event types that write through ``fields`` (``events``, else every type of the entities
        except those of the delete policy)."""
        if self.events is not None:
            return list(self.events)
        removing = set(self.delete.when) if self.delete else set()
        return [t for t in entity_event_types(self.entities) if t not in removing]

    def action_for(self, event_type: str) -> Action:
        """upsert (``fields``), update (``delete.fields``), delete, or ignore (not this mapping's event)."""
        if self.delete is not None and event_type in self.delete.when:
            return "ignore" if self.delete.action == "ignore" else self.delete.action
        types = self.events if self.events is not None else self.event_types()
        return "upsert" if event_type in types else "ignore"

    def active_fields(self, fields: Iterable[FieldMap] | None = None) -> list[FieldMap]:
        """The fields that apply to this mapping's target (``only_for``)."""
        chosen = self.fields if fields is None else fields
        target = self.target.lower()
        return [f for f in chosen if f.only_for is None or target in {t.lower() for t in f.only_for}]

    def outbound_fields(self, fields: list[FieldMap]) -> list[FieldMap]:
        """``active_fields(fields)`` that flow to Salesforce; remembered per list (and its length and the
        target), as the outbound rule asks for them on every event."""
        return self._outbound_of(fields)[3]

    def outbound_specs(self, fields: list[FieldMap]) -> list[OutboundField]:
        """:meth:`outbound_fields` as :class:`OutboundField` tuples (what the outbound rule reads of each,
        read once), remembered with them."""
        return self._outbound_of(fields)[4]

    def _outbound_of(
        self, fields: list[FieldMap]
    ) -> tuple[list[FieldMap], int, str, list[FieldMap], list[OutboundField]]:
        cache: dict[int, tuple[list[FieldMap], int, str, list[FieldMap], list[OutboundField]]] = self._private()[
            "_outbound"
        ]
        found = cache.get(id(fields))
        if found is not None and found[0] is fields and found[1] == len(fields) and found[2] == self.target:
            return found
        selected = [f for f in self.active_fields(fields) if f.outbound]
        specs = [
            OutboundField(f, f.sf, f.from_ if isinstance(f.from_, str) else None, f.policy, f.default, f.value_map)
            for f in selected
        ]
        found = cache[id(fields)] = (fields, len(fields), self.target, selected, specs)
        return found

    @property
    def reads_before_write(self) -> bool:
        """True when evaluating needs the record's current values (if_empty policies, defaults)."""
        return any(f.policy == "if_empty" or f.default is not None for f in self.outbound_fields(self.fields))

    def conflict_for(self, field: FieldMap) -> Conflict:
        """The field's conflict policy (its own, else the mapping's)."""
        return field.conflict or self.conflict

    def inbound_fields(self) -> list[FieldMap]:
        """The fields that flow back to the product (``to_product``/``both`` with a ``from`` path)."""
        return [f for f in self.active_fields() if f.inbound and f.paths]

    def member_id_field(self) -> str | None:
        """The Salesforce field holding the member id: ``inbound.member_id_field``, else the field
        mapped from ``member.member_id``; None when there is none."""
        if self.inbound.member_id_field:
            return self.inbound.member_id_field
        return next((f.sf for f in self.active_fields() if "member.member_id" in f.paths), None)

    def active_links(self) -> list[InboundLink]:
        """The identity links that apply to this mapping's target (``only_for``)."""
        target = self.target.lower()
        return [k for k in self.inbound.links if k.only_for is None or target in {t.lower() for t in k.only_for}]

    def inbound_read_fields(self) -> list[str]:
        """The Salesforce fields the inbound side reads (what a poller should select): the inbound
        fields, the member id field and the link fields, once each, in that order."""
        names = [f.sf for f in self.inbound_fields()]
        member_field = self.member_id_field()
        if member_field:
            names.append(member_field)
        names += [k.sf for k in self.active_links()]
        return list(dict.fromkeys(names))

    def program(self, expression: str) -> cel.Program:
        """The compiled CEL program for ``expression`` (compiled once per mapping)."""
        programs: dict[str, cel.Program] = self._private()["_programs"]
        found = programs.get(expression)
        if found is None:
            found = cel.compile(expression)
            programs[expression] = found
        return found

    def outbound_expressions(self) -> list[str]:
        """Every CEL expression evaluated on product events: the outbound filter's, the fields' (and the
        delete policy's fields') and the match keys'."""
        out = [self.outbound_filter] if self.outbound_filter else []
        out += [f.expr for f in self.fields if f.expr is not None]
        if self.delete is not None:
            out += [f.expr for f in self.delete.fields if f.expr is not None]
        out += [key.expr for keys in self.match_alternatives for key in keys if key.expr is not None]
        return out

    def outbound_scope(self) -> OutboundScope:
        """:meth:`outbound_expressions` compiled and analysed (:class:`~sfsync.mapping.cel.OutboundScope`),
        once per mapping; an expression added later is evaluated on its own (see
        :class:`~sfsync.mapping.cel.OutboundEvaluation`)."""
        private = self._private()
        scope: OutboundScope | None = private["_scope"]
        if scope is None:
            scope = private["_scope"] = OutboundScope(self.outbound_expressions())
        return scope

    def _private(self) -> dict[str, Any]:
        # the private attributes' dict: reading it directly skips pydantic's __getattr__ (per-event path)
        private = self.__pydantic_private__
        assert private is not None
        return private


class MappingFile(_Strict):
    """A mapping file: variables and mappings."""

    version: Literal[1] = 1
    connection: str = Field("default", description="Connection name; credentials come from settings, never here.")
    variables: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="Values substituted for ${name} anywhere else in the file."
    )
    mappings: list[Mapping] = Field(default_factory=list)

    _source: str = PrivateAttr("<mappings>")
    _lines: dict[tuple[str | int, ...], int] = PrivateAttr(default_factory=dict)
    _index: MappingIndex | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _unique_names(self) -> MappingFile:
        names = [m.name for m in self.mappings]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"mapping names must be unique: {', '.join(duplicates)}")
        return self

    @property
    def source(self) -> str:
        """Where the file came from (its path, or a name such as ``<mappings>``), as problems cite it."""
        return self._source

    def locate(self, source: str, lines: dict[tuple[str | int, ...], int]) -> None:
        """Record where the file came from: its name and the line (1-based) of each YAML path."""
        self._source = source
        self._lines = lines

    def get(self, name: str) -> Mapping | None:
        return next((m for m in self.mappings if m.name == name), None)

    def enabled(self) -> list[Mapping]:
        return [m for m in self.mappings if m.enabled]

    def for_event(self, event_type: str) -> list[Mapping]:
        """The enabled mappings that act on ``event_type`` (upsert, update or delete), in file order."""
        return [m for m in self.enabled() if m.action_for(event_type) != "ignore"]

    def index(self) -> MappingIndex:
        """The file's mappings indexed for planning (:class:`MappingIndex`), built once per list of
        mappings: a copy of the file with other mappings (``model_copy(update=...)``) gets its own."""
        private = self.__pydantic_private__  # read directly: pydantic's __getattr__ is slow (per-event path)
        assert private is not None
        index: MappingIndex | None = private["_index"]
        if index is None or index.mappings is not self.mappings:
            index = private["_index"] = MappingIndex(self.mappings)
        return index

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line (1-based) of the deepest known prefix of ``loc`` in the source file."""
        for end in range(len(loc), 0, -1):
            line = self._lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


class MappingIndex:
    """A list of mappings (loaded, so no longer changed) indexed for the per-event outbound path: what
    :meth:`MappingFile.for_event`, :meth:`MappingFile.get`, the file order of each parent mapping and
    :attr:`Mapping.reads_before_write` give, computed once (per event type for ``for_event``)."""

    __slots__ = ("_acting", "by_name", "mappings", "parents", "position", "reads_before_write")

    def __init__(self, mappings: list[Mapping]) -> None:
        self.mappings = mappings
        self.by_name: dict[str, Mapping] = {}
        for mapping in mappings:
            self.by_name.setdefault(mapping.name, mapping)
        self.position = {m.name: i for i, m in enumerate(mappings)}
        """Mapping name -> its place in the file."""
        last = len(self.position)
        self.parents: dict[str, list[tuple[str, ParentRef, Mapping | None]]] = {
            m.name: [
                (lookup, ref, self.by_name.get(ref.mapping))
                for lookup, ref in sorted(m.parents.items(), key=lambda item: self.position.get(item[1].mapping, last))
            ]
            for m in mappings
        }
        """Mapping name -> (lookup field, reference, parent mapping or None), parents in file order (unknown last)."""
        self.reads_before_write = {m.name: m.reads_before_write for m in mappings}
        self._acting: dict[str, list[Mapping]] = {}

    def for_event(self, event_type: str) -> list[Mapping]:
        """As :meth:`MappingFile.for_event`: the enabled mappings acting on ``event_type``, in file order."""
        found = self._acting.get(event_type)
        if found is None:
            found = self._acting[event_type] = [
                m for m in self.mappings if m.enabled and m.action_for(event_type) != "ignore"
            ]
        return found
