"""The mapping model: which product fields go to which Salesforce fields, and how.

A mapping file is YAML validated by pydantic (:class:`MappingFile`; JSON Schema from
:func:`json_schema`). One mapping = one product entity to one Salesforce object. Each field takes
its value from a product field (``from``, a dotted path into the event payload), a ``constant`` or
a CEL ``expr`` (variables ``source``: the event payload, ``event``: its envelope ``type``,
``event_id``, ``occurred_at``, ``workspace_id``).

Checking happens in two phases, each reporting every problem at once:

1. :func:`load_mappings` / :func:`parse_mappings`: YAML, ``${variable}`` substitution and the
   pydantic shape, with line numbers; raises :class:`MappingError`.
2. :func:`validate_against_describe`: the org's describe (unknown object or field, read-only
   fields, type mismatches, picklist values, required fields on create), the constant rules, the
   product fields named by ``from`` (against the Avro schemas in ``schemas/``) and CEL compile
   errors. Returns the problems as strings.

:func:`evaluate_fields` is the pure outbound rule: one product event in, the Salesforce field
values of one mapping out (outbound filter, direction, update policy, defaults and value maps
applied). Nothing here talks to Kafka or Salesforce.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import threading
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any, Literal

import cel
import cel.stdlib
import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from sfsync.errors import ConfigError, FatalError, SkippableRecordError

DEFAULT_MAPPING_FILE = Path(__file__).with_name("default.yaml")

Direction = Literal["to_salesforce", "to_product", "both"]
Policy = Literal["always", "if_empty"]
Conflict = Literal["last_write_wins", "product_wins", "salesforce_wins"]
Entity = Literal["member", "event", "attendance", "forum"]
DeleteAction = Literal["delete", "update", "ignore"]
InboundDeleteAction = Literal["ignore", "flag", "delete"]
Unlinked = Literal["ignore", "import"]
Action = Literal["upsert", "update", "delete", "ignore"]

ENTITY_TOPICS: dict[str, str] = {
    "member": "product.members",
    "event": "product.events",
    "attendance": "product.attendance",
    "forum": "product.forum",
}
MAX_CONSTANTS = 5
MAX_CONSTANT_LENGTH = 255
TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "encryptedstring"}
)
PICKLIST_TYPES = frozenset({"picklist", "multipicklist"})
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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


# ---------------------------------------------------------------------- the model
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
    _outbound: dict[int, tuple[list[FieldMap], int, str, list[FieldMap]]] = PrivateAttr(default_factory=dict)

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
        return [[m] if isinstance(m, MatchKey) else list(m) for m in self.match]

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
        cache: dict[int, tuple[list[FieldMap], int, str, list[FieldMap]]] = self._private()["_outbound"]
        found = cache.get(id(fields))
        if found is not None and found[0] is fields and found[1] == len(fields) and found[2] == self.target:
            return found[3]
        selected = [f for f in self.active_fields(fields) if f.outbound]
        cache[id(fields)] = (fields, len(fields), self.target, selected)
        return selected

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

    @model_validator(mode="after")
    def _unique_names(self) -> MappingFile:
        names = [m.name for m in self.mappings]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"mapping names must be unique: {', '.join(duplicates)}")
        return self

    @property
    def source(self) -> str:
        return self._source

    def get(self, name: str) -> Mapping | None:
        return next((m for m in self.mappings if m.name == name), None)

    def enabled(self) -> list[Mapping]:
        return [m for m in self.mappings if m.enabled]

    def for_event(self, event_type: str) -> list[Mapping]:
        """The enabled mappings that act on ``event_type`` (upsert, update or delete), in file order."""
        return [m for m in self.enabled() if m.action_for(event_type) != "ignore"]

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line (1-based) of the deepest known prefix of ``loc`` in the source file."""
        for end in range(len(loc), 0, -1):
            line = self._lines.get(tuple(loc[:end]))
            if line is not None:
                return line
        return None


# ---------------------------------------------------------------------- loading
def _node_lines(node: yaml.Node, path: tuple[str | int, ...], out: dict[tuple[str | int, ...], int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                out[(*path, key.value)] = key.start_mark.line + 1
                _node_lines(value, (*path, key.value), out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, (*path, index), out)


def _yaml_path(lines: dict[tuple[str | int, ...], int], loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """The part of a pydantic error location that exists in the file (skipping the union tags it adds)."""
    path: tuple[str | int, ...] = ()
    for part in loc:
        if (*path, part) in lines:
            path = (*path, part)
    return path


def _line_for(lines: dict[tuple[str | int, ...], int], loc: Sequence[str | int]) -> int | None:
    return lines.get(_yaml_path(lines, loc))


def _resolve_variables(
    raw: MappingABC[str, Any], overrides: MappingABC[str, Any], problems: list[str], source: str
) -> dict[str, Any]:
    values: dict[str, Any] = {**raw, **overrides}
    for _ in range(5):  # variables may refer to variables (e.g. "${prefix}Member_Id__c")
        changed = False
        for name, value in values.items():
            if isinstance(value, str) and _VARIABLE.search(value):
                new = _substitute(value, values, [], source, (), {})
                changed |= new != value
                values[name] = new
        if not changed:
            break
    for name, value in values.items():
        if isinstance(value, str) and _VARIABLE.search(value):
            problems.append(f"{source}: variables.{name}: unresolved or circular reference in {value!r}")
    return values


def _substitute(
    value: Any,
    variables: MappingABC[str, Any],
    problems: list[str],
    source: str,
    path: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
) -> Any:
    if isinstance(value, dict):
        return {
            _substitute(k, variables, problems, source, path, lines): _substitute(
                v, variables, problems, source, (*path, k), lines
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, variables, problems, source, (*path, i), lines) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _VARIABLE.fullmatch(value)
    if whole and whole.group(1) in variables:
        return variables[whole.group(1)]  # keeps the type: `enabled: ${tasks}` with tasks: false

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            line = lines.get(path)
            where = f"{source}:{line}" if line else source
            problems.append(f"{where}: {'.'.join(str(p) for p in path)}: unknown variable ${{{name}}}")
            return match.group(0)
        found = variables[name]
        return "" if found is None else str(found).lower() if isinstance(found, bool) else str(found)

    return _VARIABLE.sub(replace, value)


def parse_mappings(
    text: str, source: str = "<mappings>", *, variables: MappingABC[str, Any] | None = None
) -> MappingFile:
    """Parse a mapping file's text; ``variables`` override the file's. Raises :class:`MappingError`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(source, [f"not valid YAML: {exc}"]) from None
    lines: dict[tuple[str | int, ...], int] = {}
    if node is not None:
        _node_lines(node, (), lines)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise MappingError(source, ["the file must be a YAML mapping with a `mappings:` list"])
    problems: list[str] = []
    raw_vars = data.get("variables") or {}
    if not isinstance(raw_vars, dict):
        raise MappingError(source, [f"{source}: variables must be a mapping of name -> value"])
    resolved = _resolve_variables(raw_vars, variables or {}, problems, source)
    body = {k: v for k, v in data.items() if k != "variables"}
    substituted = _substitute(body, resolved, problems, source, (), lines)
    substituted["variables"] = resolved
    try:
        model = MappingFile.model_validate(substituted)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_for(lines, loc)
            where = ".".join(str(p) for p in _yaml_path(lines, loc))
            prefix = f"{source}:{line}" if line else source
            problems.append(f"{prefix}: {where or '<root>'}: {err['msg']}")
        raise MappingError(source, problems) from None
    if problems:
        raise MappingError(source, problems)
    model._source = source
    model._lines = lines
    return model


def load_mappings(path: str | Path | None = None, *, variables: MappingABC[str, Any] | None = None) -> MappingFile:
    """Read and parse a mapping file (None: the shipped default mapping)."""
    file = Path(path) if path is not None else DEFAULT_MAPPING_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(str(file), [f"cannot read: {exc.strerror or exc}"]) from None
    return parse_mappings(text, file.name if path is None else str(file), variables=variables)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a mapping file, as editors and CI linters use it.

    Booleans also accept a ``${variable}`` string, since substitution happens before validation.
    """
    schema = MappingFile.model_json_schema(by_alias=True)

    def allow_variables(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "boolean":
                node.pop("type")
                node["anyOf"] = [{"type": "boolean"}, {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$"}]
                return
            for value in node.values():
                allow_variables(value)
        elif isinstance(node, list):
            for value in node:
                allow_variables(value)

    allow_variables(schema)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://sfsync.dev/schemas/mappings.json",
        **schema,
        "title": "sfsync mapping file",
    }


# ---------------------------------------------------------------------- product types (Avro)
@dataclass(frozen=True)
class ProductType:
    """What a product field holds, as far as type checks care."""

    kind: str  # string, enum, boolean, number, timestamp, date, array, record, map, bytes
    nullable: bool = False
    symbols: tuple[str, ...] = ()


@cache
def _product_schemas() -> tuple[dict[str, Any], dict[str, Any], dict[str, list[str]]]:
    """(record short name -> schema, full name -> named type, topic -> record short names)."""
    from sfsync.serde.schema import collect_named, load_topic_schema

    records: dict[str, Any] = {}
    named: dict[str, Any] = {}
    topics: dict[str, list[str]] = {}
    for topic in ENTITY_TOPICS.values():
        schema = load_topic_schema(topic)
        collect_named(schema.schema, named)
        topics[topic] = list(schema.record_names)
        for branch in schema.schema:
            records[str(branch["name"]).rsplit(".", 1)[-1]] = branch
    return records, named, topics


def entity_event_types(entities: Iterable[str]) -> list[str]:
    """Every product event type of these entities, in schema order."""
    _, _, topics = _product_schemas()
    return [name for entity in entities if entity in ENTITY_TOPICS for name in topics[ENTITY_TOPICS[entity]]]


def _deref(node: Any, named: MappingABC[str, Any]) -> Any:
    if isinstance(node, str) and node in named:
        return named[node]
    if isinstance(node, str) and f"sfsync.product.{node}" in named:
        return named[f"sfsync.product.{node}"]
    return node


def _kind(node: Any, named: MappingABC[str, Any], nullable: bool) -> ProductType:
    node = _deref(node, named)
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        kinds = {_kind(b, named, False).kind for b in branches}
        kind = kinds.pop() if len(kinds) == 1 else "union"
        return ProductType(kind, nullable or "null" in node)
    if isinstance(node, dict):
        logical = node.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros"):
            return ProductType("timestamp", nullable)
        if logical == "date":
            return ProductType("date", nullable)
        avro_type = node.get("type")
        if avro_type == "enum":
            return ProductType("enum", nullable, tuple(node.get("symbols", ())))
        if avro_type in ("record", "array", "map"):
            return ProductType(str(avro_type), nullable)
        return _kind(avro_type, named, nullable)
    if node in ("int", "long", "float", "double"):
        return ProductType("number", nullable)
    if node in ("string", "boolean", "bytes"):
        return ProductType(str(node), nullable)
    return ProductType(str(node), nullable)


def product_field_type(event_type: str, path: str) -> ProductType | None:
    """The type at dotted ``path`` in ``event_type``'s payload, or None when the event has no such field."""
    records, named, _ = _product_schemas()
    node: Any = records.get(event_type)
    if node is None:
        return None
    nullable = False
    for part in path.split("."):
        node = _deref(node, named)
        if isinstance(node, list):  # optional record: follow the non-null branch
            nullable = nullable or "null" in node
            records_in = [_deref(b, named) for b in node if b != "null"]
            node = next((b for b in records_in if isinstance(b, dict) and b.get("type") == "record"), None)
        if not isinstance(node, dict) or node.get("type") != "record":
            return None
        found = next((f for f in node["fields"] if f["name"] == part), None)
        if found is None:
            return None
        node = found["type"]
    return _kind(node, named, nullable)


def _sample(node: Any, named: MappingABC[str, Any], text: str) -> Any:
    """A value of this Avro type (for dry-running CEL); ``text`` fills strings."""
    node = _deref(node, named)
    if isinstance(node, list):
        branches = [b for b in node if b != "null"]
        return _sample(branches[0], named, text) if branches else None
    if isinstance(node, dict):
        logical = node.get("logicalType")
        if logical in ("timestamp-millis", "timestamp-micros"):
            return dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        if logical == "date":
            return dt.date(2026, 1, 2)
        kind = node.get("type")
        if kind == "record":
            return {f["name"]: _sample(f["type"], named, text) for f in node["fields"]}
        if kind == "enum":
            return node["symbols"][0]
        if kind == "array":
            return [_sample(node["items"], named, text)]
        if kind == "map":
            return {text: _sample(node["values"], named, text)}
        return _sample(kind, named, text)
    return {"string": text, "boolean": True, "int": 1, "long": 1, "float": 1.5, "double": 1.5, "bytes": b""}.get(
        str(node), text
    )


def sample_event(event_type: str, text: str = "sample") -> tuple[dict[str, Any], dict[str, Any]]:
    """A synthetic (source, envelope) pair for ``event_type``, every optional field filled."""
    records, named, _ = _product_schemas()
    source = _sample(records[event_type], named, text)
    return source, envelope_of(source, event_type)


# ---------------------------------------------------------------------- CEL
def _json_text(value: Any) -> str:
    """Compact JSON with sorted keys: the same value always gives the same text (echo suppression
    compares what was written)."""
    return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _jsonable(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): _jsonable(v) for k, v in value.items()}
    if kind is list:
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _json_object(items: list[Any], key: str, value: str) -> str:
    """``json_object(list, 'k', 'v')``: a JSON object {item.k: item.v} (later items win)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if isinstance(item, dict) and item.get(key) is not None:
            out[str(item[key])] = _jsonable(item.get(value))
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _date(value: Any) -> str | None:
    """``date(ts)``: the UTC calendar date of a timestamp, as Salesforce date text."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC).date().isoformat()
    return str(value)[:10]


CEL_FUNCTIONS: dict[str, Any] = {
    **cel.stdlib.STDLIB_FUNCTIONS,
    "json": _json_text,
    "json_object": _json_object,
    "date": _date,
}
"""Functions available to mapping expressions: the cel-go extension libraries (strings, lists,
math, sets, encoders) plus ``json(x)``, ``json_object(list, key, value)`` and ``date(ts)``."""


def envelope_of(source: MappingABC[str, Any], event_type: str | None) -> dict[str, Any]:
    """The ``event`` variable: type, event_id, occurred_at, workspace_id."""
    return {
        "type": event_type,
        "event_id": source.get("event_id"),
        "occurred_at": source.get("occurred_at"),
        "workspace_id": source.get("workspace_id"),
    }


def run_cel(program: cel.Program, variables: MappingABC[str, Any]) -> Any:
    """Evaluate a compiled expression with sfsync's functions. Raises what CEL raises."""
    return program.execute(cel.Context(variables=dict(variables), functions=CEL_FUNCTIONS))


class _SharedContext:
    """The CEL contexts of the event being evaluated, built once for all of its expressions.

    Building a ``cel.Context`` converts every variable (the whole event payload) to CEL values:
    ~45 µs, against ~5 µs to run a compiled expression in it. A plan evaluates a dozen
    expressions over the same ``source`` object with one of a few small ``event`` envelopes
    (compared by value), so their contexts are kept while ``source`` stays the same object (it is
    held here, so its id cannot be reused meanwhile). Callers must not change ``source`` in place
    between evaluations (``plan()`` works on its own copy).
    """

    __slots__ = ("contexts", "source")

    def __init__(self) -> None:
        self.source: object = None
        self.contexts: list[tuple[MappingABC[str, Any], cel.Context]] = []

    def get(self, source: MappingABC[str, Any], event: MappingABC[str, Any]) -> cel.Context:
        if source is not self.source:
            self.source, self.contexts = source, []
        for known, context in self.contexts:
            if known is event or known == event:
                return context
        context = cel.Context(variables={"source": source, "event": event}, functions=CEL_FUNCTIONS)
        if len(self.contexts) < 4:
            self.contexts.append((dict(event), context))
        return context


_shared = threading.local()


def run_expression(mapping: Mapping, expression: str, source: MappingABC[str, Any], event: MappingABC[str, Any]) -> Any:
    """Evaluate one of ``mapping``'s outbound expressions over ``source`` and ``event`` with CEL, in a
    context shared by every expression of the same event (see :class:`_SharedContext`). Raises what
    CEL raises."""
    shared = getattr(_shared, "context", None)
    if shared is None:
        shared = _shared.context = _SharedContext()
    return mapping.program(expression).execute(shared.get(source, event))


def compile_problem(expression: str) -> str | None:
    """Why ``expression`` does not compile, or None."""
    try:
        cel.compile(expression)
    except (ValueError, RuntimeError, TypeError) as exc:
        return str(exc).splitlines()[0]
    return None


# ---------------------------------------------------------------------- evaluation
_ABSENT = object()


def get_path(source: MappingABC[str, Any], path: str) -> Any:
    """The value at dotted ``path``, or the ``_ABSENT`` marker when the payload does not carry it."""
    node: Any = source
    for part in _path_parts(path):
        if type(node) is not dict and not isinstance(node, MappingABC):
            return _ABSENT
        if part not in node:
            return _ABSENT
        node = node[part]
    return node


@lru_cache(maxsize=4096)
def _path_parts(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def format_datetime(value: dt.datetime) -> str:
    """Salesforce datetime text: ``2026-01-02T03:04:05.000Z`` (UTC, milliseconds)."""
    if value.tzinfo is dt.UTC and type(value) is dt.datetime:
        return _format_utc(value)
    value = value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@lru_cache(maxsize=4096)
def _format_utc(value: dt.datetime) -> str:
    # an event's times are formatted several times (fields, json(source), the envelope): once is enough
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def to_salesforce_value(value: Any) -> Any:
    """A product/CEL value as Salesforce's REST API takes it: timestamps as UTC text, lists of
    scalars as ``;``-separated text (the multi-select convention), maps and nested lists as JSON."""
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        if not value:
            return None
        if all(isinstance(v, str | int | float) and not isinstance(v, bool) for v in value):
            return ";".join(str(v) for v in value)
        return _json_text(value)
    if isinstance(value, dict):
        return _json_text(value)
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, list | tuple) and not value)


def _current_value(current: MappingABC[str, Any], field: str) -> Any:
    if field in current:
        return current[field]
    lowered = field.lower()
    return next((v for k, v in current.items() if k.lower() == lowered), None)


def _mapped(value: Any, value_map: MappingABC[str, str] | None) -> Any:
    if not value_map:
        return value
    if isinstance(value, list):
        return [value_map.get(str(v), v) for v in value]
    return value_map.get(str(value), value) if isinstance(value, str) else value


def passes_outbound_filter(mapping: Mapping, source: MappingABC[str, Any], event: MappingABC[str, Any]) -> bool:
    """Whether the mapping's outbound filter lets this event through (no filter: yes)."""
    if not mapping.outbound_filter:
        return True
    try:
        result = run_expression(mapping, mapping.outbound_filter, source, event)
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise MappingEvaluationError(mapping.name, "outbound_filter", f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(result, bool):
        raise MappingEvaluationError(mapping.name, "outbound_filter", f"must be true or false, got {result!r}")
    return result


def field_value(mapping: Mapping, field: FieldMap, source: MappingABC[str, Any], event: MappingABC[str, Any]) -> Any:
    """One field's raw value for this event (before defaults and conversion); ``_ABSENT`` when the
    event does not carry it (a ``from`` path it lacks, or a CEL expression reading a missing key)."""
    if field.constant is not None:
        return field.constant
    if field.expr is not None:
        try:
            return run_expression(mapping, field.expr, source, event)
        except KeyError:
            return _ABSENT
        except (ValueError, TypeError, RuntimeError) as exc:
            raise MappingEvaluationError(mapping.name, f"field {field.sf}", f"{type(exc).__name__}: {exc}") from exc
    paths = field.from_
    if isinstance(paths, str):
        return get_path(source, paths)
    for path in paths or ():
        found = get_path(source, path)
        if found is not _ABSENT:
            return found
    return _ABSENT


def _envelope(source: MappingABC[str, Any], event: MappingABC[str, Any] | str | None) -> dict[str, Any]:
    if event is None or type(event) is str:
        return envelope_of(source, event)  # already filled from the payload
    envelope = dict(event) if isinstance(event, MappingABC) else envelope_of(source, event)
    for key, value in envelope_of(source, None).items():
        if envelope.get(key) is None:
            envelope[key] = value
    return envelope


def evaluate_fields(
    mapping: Mapping,
    source: MappingABC[str, Any],
    event: MappingABC[str, Any] | str | None = None,
    *,
    current: MappingABC[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The Salesforce values ``mapping`` writes for one product event.

    ``source`` is the decoded event payload; ``event`` its envelope (or just its type name). Returns
    None when the mapping does not write for this event: not one of its event types, a delete or
    ignore action (see :meth:`Mapping.action_for`), or the outbound filter said no. Otherwise
    ``{sf_field: value}`` with values ready for the REST API.

    Only ``to_salesforce`` / ``both`` fields count. A field the event does not carry is left out.
    ``current`` is the existing record's values (None: a new record): ``if_empty`` fields are left
    out when the record already has a value, and so is a ``default`` standing in for a field the
    event does not carry at all.
    """
    return _evaluate(mapping, source, event, current, None)


def evaluate_outbound(
    mapping: Mapping, source: MappingABC[str, Any], event: MappingABC[str, Any] | str | None = None
) -> tuple[dict[str, Any], set[str]] | None:
    """``evaluate_fields(mapping, source, event)`` and, in the same pass, the fields it still writes when
    the record already has every field filled (no ``if_empty`` policy, no ``default`` standing in for an
    absent value): what ``evaluate_fields(..., current=<every field set>)`` would keep."""
    always: set[str] = set()
    values = _evaluate(mapping, source, event, None, always)
    return None if values is None else (values, always)


def _evaluate(
    mapping: Mapping,
    source: MappingABC[str, Any],
    event: MappingABC[str, Any] | str | None,
    current: MappingABC[str, Any] | None,
    always: set[str] | None,
) -> dict[str, Any] | None:
    envelope = _envelope(source, event)
    event_type = envelope.get("type")
    fields: list[FieldMap] = mapping.fields
    if event_type is not None:
        action = mapping.action_for(str(event_type))
        if action in ("delete", "ignore"):
            return None
        if action == "update" and mapping.delete is not None:
            fields = mapping.delete.fields
    if not passes_outbound_filter(mapping, source, envelope):
        return None
    out: dict[str, Any] = {}
    for field in mapping.outbound_fields(fields):
        path = field.from_
        value = get_path(source, path) if type(path) is str else field_value(mapping, field, source, envelope)
        policy = field.policy
        if value is _ABSENT:
            if field.default is None:
                continue
            value, policy = field.default, "if_empty"
        if field.value_map:
            value = _mapped(value, field.value_map)
        if field.default is not None and _empty(value):
            value = field.default
        if policy == "if_empty" and current is not None and not _empty(_current_value(current, field.sf)):
            continue
        if always is not None and policy != "if_empty":
            always.add(field.sf)
        out[field.sf] = to_salesforce_value(value)
    return out


def match_values(
    mapping: Mapping, source: MappingABC[str, Any], event: MappingABC[str, Any] | str | None = None
) -> list[dict[str, Any]]:
    """The match alternatives this event can use, in order: ``{field: value}`` each. A key without
    ``from`` (a parent lookup) maps to ``ParentLookup``; alternatives whose value is empty are left out."""
    envelope = _envelope(source, event)
    out: list[dict[str, Any]] = []
    for keys in mapping.match_alternatives:
        values: dict[str, Any] = {}
        for key in keys:
            if key.from_ is None and key.expr is None:
                ref = mapping.parents.get(key.field)
                values[key.field] = ParentLookup(ref.mapping if ref else key.field)
                continue
            if key.expr is not None:
                try:
                    found = run_expression(mapping, key.expr, source, envelope)
                except KeyError:
                    found = _ABSENT
                except (ValueError, TypeError, RuntimeError) as exc:
                    raise MappingEvaluationError(mapping.name, f"match {key.field}", f"{exc}") from exc
            else:
                found = get_path(source, str(key.from_))
            if found is _ABSENT or _empty(found):
                break
            values[key.field] = to_salesforce_value(found)
        else:
            out.append(values)
    return out


@dataclass(frozen=True)
class ParentLookup:
    """Stands for "the Id of the record mapping ``mapping`` matches for this event"."""

    mapping: str


def evaluate_inbound(mapping: Mapping, record: MappingABC[str, Any]) -> dict[str, Any] | None:
    """Product field path -> value for a Salesforce record (``to_product`` / ``both`` fields with a
    ``from`` path); None when the inbound filter (CEL over ``record``) says no."""
    if mapping.inbound_filter:
        try:
            keep = run_cel(mapping.program(mapping.inbound_filter), {"record": dict(record)})
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise MappingEvaluationError(mapping.name, "inbound_filter", f"{type(exc).__name__}: {exc}") from exc
        if keep is not True:
            return None
    out: dict[str, Any] = {}
    for field in mapping.active_fields():
        if not field.inbound or not field.paths:
            continue
        value = _current_value(record, field.sf)
        if field.value_map:
            reverse = {v: k for k, v in field.value_map.items()}
            value = reverse.get(value, value) if isinstance(value, str) else value
        out[field.paths[0]] = value
    return out


# ---------------------------------------------------------------------- validation
_COMPATIBLE: dict[str, frozenset[str]] = {
    "string": TEXT_TYPES | {"id", "reference"},
    "enum": TEXT_TYPES,
    "boolean": frozenset({"boolean", "string", "textarea"}),
    "number": frozenset({"int", "double", "currency", "percent", "string", "textarea"}),
    "timestamp": frozenset({"datetime", "date", "string", "textarea"}),
    "date": frozenset({"date", "datetime", "string", "textarea"}),
    "array": frozenset({"multipicklist", "string", "textarea"}),
    "record": frozenset({"textarea", "string"}),
    "map": frozenset({"textarea", "string"}),
    "union": frozenset({"textarea", "string"}),
}


def _python_kind(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dt.datetime):
        return "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "map"
    return None


def _parses_as(text: str, sf_type: str) -> bool:
    try:
        if sf_type == "date":
            dt.date.fromisoformat(text)
        else:
            dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _fields_by_name(describe: MappingABC[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(f["name"]).lower(): f for f in describe.get("fields", [])}


def _picklist(field: MappingABC[str, Any]) -> list[str]:
    return [str(v["value"]) for v in field.get("picklistValues", []) if v.get("active", True)]


class _Checker:
    """Collects problems for one mapping file against one org's describe."""

    def __init__(self, file: MappingFile, describes: MappingABC[str, MappingABC[str, Any]]) -> None:
        self.file = file
        self.describes = {name.lower(): d for name, d in describes.items()}
        self.problems: list[str] = []

    def report(self, loc: tuple[str | int, ...], label: str, message: str) -> None:
        line = self.file.line_of(loc)
        where = f"{self.file.source}:{line}" if line else self.file.source
        problem = f"{where}: {label}: {message}"
        if problem not in self.problems:
            self.problems.append(problem)

    def run(self) -> list[str]:
        known_events = set(_product_schemas()[0])
        for index, mapping in enumerate(self.file.mappings):
            if mapping.enabled:
                self.check_mapping(index, mapping, known_events)
        return self.problems

    # ------------------------------------------------------------------ one mapping
    def check_mapping(self, mi: int, mapping: Mapping, known_events: set[str]) -> None:
        base: tuple[str | int, ...] = ("mappings", mi)
        name = mapping.name
        entity_types = set(entity_event_types(mapping.entities))
        for key, listed in (
            ("events", mapping.events or []),
            ("delete", mapping.delete.when if mapping.delete else []),
        ):
            for i, event_type in enumerate(listed):
                loc = (*base, key, i) if key == "events" else (*base, "delete", "when", i)
                if event_type not in known_events:
                    self.report(
                        loc, name, f"unknown product event type {event_type}{_suggest(event_type, known_events)}"
                    )
                elif event_type not in entity_types:
                    self.report(loc, name, f"{event_type} is not an event of {', '.join(mapping.entities)}")
        event_types = [t for t in mapping.event_types() if t in known_events]
        self.check_rules(mi, mapping)
        for key in ("outbound_filter", "inbound_filter"):
            expression = getattr(mapping, key)
            if expression:
                problem = compile_problem(expression)
                if problem:
                    self.report((*base, key), name, f"{key} does not compile: {problem}")
                elif key == "outbound_filter":
                    self.dry_run_filter(mi, mapping, expression, event_types)
        describe = self.describes.get(mapping.target.lower())
        if describe is None:
            known = {d.get("name", k) for k, d in self.describes.items()}
            self.report(
                (*base, "target"), name, f"unknown Salesforce object {mapping.target}{_suggest(mapping.target, known)}"
            )
        fields = _fields_by_name(describe) if describe else {}
        self.check_fields(mi, mapping, mapping.fields, ("fields",), fields, event_types)
        if mapping.delete is not None and mapping.delete.action == "update":
            removing = [t for t in mapping.delete.when if t in known_events]
            self.check_fields(mi, mapping, mapping.delete.fields, ("delete", "fields"), fields, removing)
        if describe is None:
            return
        self.check_inbound(mi, mapping, fields)
        self.check_record_type(mi, mapping, describe)
        self.check_match(mi, mapping, fields, event_types)
        self.check_parents(mi, mapping, fields, event_types)
        if mapping.create_if_missing:
            self.check_required(mi, mapping, fields)

    def check_rules(self, mi: int, mapping: Mapping) -> None:
        """The constant rules, and duplicate targets (no describe needed)."""
        base: tuple[str | int, ...] = ("mappings", mi)
        groups: list[tuple[tuple[str | int, ...], list[FieldMap]]] = [((*base, "fields"), mapping.fields)]
        if mapping.delete is not None:
            groups.append(((*base, "delete", "fields"), mapping.delete.fields))
        constants = 0
        for prefix, fields in groups:
            seen: dict[str, int] = {}
            for fi, field in enumerate(fields):
                loc = (*prefix, fi)
                label = f"{mapping.name}.{field.sf}"
                applies = field in mapping.active_fields([field])
                if applies and field.outbound:
                    if field.sf.lower() in seen:
                        self.report(loc, label, f"{field.sf} is mapped twice (also entry {seen[field.sf.lower()] + 1})")
                    seen[field.sf.lower()] = fi
                if field.constant is None:
                    continue
                constants += 1
                if field.direction != "to_salesforce":
                    self.report(
                        (*loc, "direction"), label, f"constants only go to Salesforce (direction is {field.direction})"
                    )
                if not isinstance(field.constant, str):
                    self.report(
                        (*loc, "constant"), label, f"a constant must be text (got {type(field.constant).__name__})"
                    )
                elif len(field.constant) > MAX_CONSTANT_LENGTH:
                    self.report(
                        (*loc, "constant"),
                        label,
                        f"constant is {len(field.constant)} characters; at most {MAX_CONSTANT_LENGTH}",
                    )
        if constants > MAX_CONSTANTS:
            self.report((*base, "fields"), mapping.name, f"{constants} constants; at most {MAX_CONSTANTS} per mapping")

    def check_fields(
        self,
        mi: int,
        mapping: Mapping,
        fields: list[FieldMap],
        where: tuple[str, ...],
        describe_fields: MappingABC[str, MappingABC[str, Any]],
        event_types: list[str],
    ) -> None:
        for fi, field in enumerate(fields):
            if field not in mapping.active_fields([field]):
                continue
            loc: tuple[str | int, ...] = ("mappings", mi, *where, fi)
            label = f"{mapping.name}.{field.sf}"
            if field.expr is not None:
                problem = compile_problem(field.expr)
                if problem:
                    self.report((*loc, "expr"), label, f"expression does not compile: {problem}")
                    continue
            product_types = self.check_paths(loc, label, field, event_types)
            if not describe_fields and self.describes.get(mapping.target.lower()) is None:
                continue
            if "." in field.sf and not field.outbound:  # a relationship path read back (Account.Name)
                problem, missing = _resolve_read(self.describes, mapping.target, field.sf)
                if missing:
                    problem = f"cannot check it, {', '.join(sorted(missing))} could not be described"
                if problem:
                    self.report((*loc, "sf"), label, problem)
                continue
            sf_field = describe_fields.get(field.sf.lower())
            if sf_field is None:
                self.report(
                    (*loc, "sf"),
                    label,
                    f"{mapping.target} has no field {field.sf}{_suggest(field.sf, _names(describe_fields))}",
                )
                continue
            self.check_one(loc, label, mapping, field, sf_field, product_types, event_types)

    def check_paths(
        self, loc: tuple[str | int, ...], label: str, field: FieldMap, event_types: list[str]
    ) -> list[ProductType]:
        found: list[ProductType] = []
        for path in field.paths:
            types = [t for t in (product_field_type(e, path) for e in event_types) if t is not None]
            if not types and event_types:
                self.report((*loc, "from"), label, f"no event of this mapping has a product field {path}")
            found.extend(types)
        return found

    def check_one(
        self,
        loc: tuple[str | int, ...],
        label: str,
        mapping: Mapping,
        field: FieldMap,
        sf_field: MappingABC[str, Any],
        product_types: list[ProductType],
        event_types: list[str],
    ) -> None:
        sf_type = str(sf_field.get("type"))
        sf_name = f"{mapping.target}.{sf_field.get('name', field.sf)}"
        if field.outbound and not (sf_field.get("createable") or sf_field.get("updateable")):
            self.report((*loc, "sf"), label, f"{sf_name} is read-only; it cannot be written")
        picklist = _picklist(sf_field) if sf_type in PICKLIST_TYPES else []
        if field.constant is not None:
            if sf_type not in TEXT_TYPES:
                self.report(
                    (*loc, "constant"),
                    label,
                    f"constants only go to text and picklist fields; {sf_name} is {sf_type}",
                )
            elif isinstance(field.constant, str):
                self.check_text(loc, "constant", label, sf_name, sf_field, picklist, field.constant)
        if field.default is not None and sf_type in TEXT_TYPES:
            self.check_text(loc, "default", label, sf_name, sf_field, picklist, field.default)
        if field.value_map and picklist:
            for value in field.value_map.values():
                self.check_text(loc, "value_map", label, sf_name, sf_field, picklist, value)
        for product_type in dict.fromkeys(product_types):
            self.check_type((*loc, "from"), label, sf_name, sf_type, product_type.kind, "product field")
            if product_type.kind == "enum" and picklist:
                for symbol in product_type.symbols:
                    value = (field.value_map or {}).get(symbol, symbol)
                    if value not in picklist:
                        self.report(
                            (*loc, "from"),
                            label,
                            f"product value {symbol} becomes {value!r}, not a value of picklist {sf_name} "
                            f"({', '.join(picklist)}); add it to value_map",
                        )
                        break
        if field.expr is not None:
            self.dry_run_field(loc, label, mapping, field, sf_name, sf_type, picklist, event_types)

    def check_text(
        self,
        loc: tuple[str | int, ...],
        key: str,
        label: str,
        sf_name: str,
        sf_field: MappingABC[str, Any],
        picklist: list[str],
        value: str,
    ) -> None:
        if picklist:
            choices = value.split(";") if sf_field.get("type") == "multipicklist" else [value]
            bad = [c for c in choices if c not in picklist]
            if bad:
                close = difflib.get_close_matches(bad[0], picklist, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.report(
                    (*loc, key),
                    label,
                    f"{key} {bad[0]!r} is not an active value of picklist {sf_name}{hint}; "
                    f"values: {', '.join(picklist)}",
                )
            return
        length = int(sf_field.get("length") or 0)
        if length and len(value) > length:
            self.report((*loc, key), label, f"{key} is {len(value)} characters; {sf_name} holds {length}")

    def check_type(
        self, loc: tuple[str | int, ...], label: str, sf_name: str, sf_type: str, kind: str, what: str
    ) -> None:
        allowed = _COMPATIBLE.get(kind)
        if allowed is not None and sf_type not in allowed:
            self.report(loc, label, f"type mismatch: {what} is {kind}, {sf_name} is {sf_type}")

    def dry_run_filter(self, mi: int, mapping: Mapping, expression: str, event_types: list[str]) -> None:
        for event_type in event_types:
            source, envelope = sample_event(event_type)
            try:
                result = run_cel(mapping.program(expression), {"source": source, "event": envelope})
            except (KeyError, ValueError, TypeError):
                continue
            except RuntimeError as exc:
                self.report(("mappings", mi, "outbound_filter"), mapping.name, f"outbound_filter: {exc}")
                return
            if not isinstance(result, bool):
                self.report(
                    ("mappings", mi, "outbound_filter"),
                    mapping.name,
                    f"outbound_filter must give true or false (gives {type(result).__name__} on {event_type})",
                )
                return

    def dry_run_field(
        self,
        loc: tuple[str | int, ...],
        label: str,
        mapping: Mapping,
        field: FieldMap,
        sf_name: str,
        sf_type: str,
        picklist: list[str],
        event_types: list[str],
    ) -> None:
        """Run the expression on synthetic events: undefined functions, result types, and picklist
        values the result takes whatever the text of the event (e.g. derived from event.type)."""
        assert field.expr is not None
        program = mapping.program(field.expr)
        missing = 0
        for event_type in event_types:
            results = []
            for text in ("sample", "other sample"):
                source, envelope = sample_event(event_type, text)
                try:
                    results.append(run_cel(program, {"source": source, "event": envelope}))
                except KeyError:
                    missing += 1
                    break
                except (ValueError, TypeError):
                    break
                except RuntimeError as exc:
                    self.report((*loc, "expr"), label, f"expression fails: {str(exc).splitlines()[0]}")
                    return
            if len(results) != 2:
                continue
            kind = _python_kind(results[0])
            if kind == "string" and sf_type in ("date", "datetime"):  # text Salesforce parses, e.g. date(ts)
                if not _parses_as(results[0], sf_type):
                    self.report(
                        (*loc, "expr"),
                        label,
                        f"expression gives {results[0]!r} on {event_type}, not {sf_type} text for {sf_name}",
                    )
                    return
            elif kind is not None:
                before = len(self.problems)
                self.check_type((*loc, "expr"), label, sf_name, sf_type, kind, f"expression result (on {event_type})")
                if len(self.problems) > before:
                    return
            value = _mapped(results[0], field.value_map)
            if picklist and isinstance(value, str) and results[0] == results[1] and value not in picklist:
                self.report(
                    (*loc, "expr"),
                    label,
                    f"expression gives {value!r} on {event_type}, not a value of picklist {sf_name} "
                    f"({', '.join(picklist)})",
                )
                return
        if event_types and missing == len(event_types):
            self.report((*loc, "expr"), label, "expression reads a product field that no event of this mapping has")

    def check_inbound(self, mi: int, mapping: Mapping, fields: MappingABC[str, MappingABC[str, Any]]) -> None:
        """The fields the inbound options name exist (member id field, link fields)."""
        loc: tuple[str | int, ...] = ("mappings", mi, "inbound")
        named = [("member_id_field", mapping.inbound.member_id_field)]
        named += [(f"links.{link.name}", link.sf) for link in mapping.active_links()]
        for key, sf_name in named:
            if sf_name and sf_name.lower() not in fields:
                self.report(
                    loc, f"{mapping.name}.inbound.{key}",
                    f"{mapping.target} has no field {sf_name}{_suggest(sf_name, _names(fields))}",
                )  # fmt: skip

    def check_record_type(self, mi: int, mapping: Mapping, describe: MappingABC[str, Any]) -> None:
        if mapping.record_type is None:
            return
        # the master is no record type a record can be given (an object without others has no RecordTypeId)
        infos = [i for i in describe.get("recordTypeInfos", []) if i.get("active", True) and not i.get("master")]
        names = {str(i.get("developerName")) for i in infos} | {str(i.get("name")) for i in infos}
        if mapping.record_type not in names:
            self.report(
                ("mappings", mi, "record_type"),
                mapping.name,
                f"{mapping.target} has no active record type {mapping.record_type} "
                f"(has: {', '.join(sorted(n for n in names if n != 'None')) or 'none but the master'})",
            )

    def check_match(
        self, mi: int, mapping: Mapping, fields: MappingABC[str, MappingABC[str, Any]], event_types: list[str]
    ) -> None:
        for ai, keys in enumerate(mapping.match_alternatives):
            for ki, key in enumerate(keys):
                loc: tuple[str | int, ...] = ("mappings", mi, "match", ai)
                if not isinstance(mapping.match[ai], MatchKey):
                    loc = (*loc, ki)
                label = f"{mapping.name}.match"
                sf_field = fields.get(key.field.lower())
                if sf_field is None:
                    self.report(
                        (*loc, "field"),
                        label,
                        f"{mapping.target} has no field {key.field}{_suggest(key.field, _names(fields))}",
                    )
                    continue
                if not (sf_field.get("filterable") or sf_field.get("externalId") or sf_field.get("idLookup")):
                    self.report(
                        (*loc, "field"), label, f"{mapping.target}.{key.field} cannot be matched on (not filterable)"
                    )
                if key.expr is not None:
                    problem = compile_problem(key.expr)
                    if problem:
                        self.report((*loc, "expr"), label, f"expression does not compile: {problem}")
                    continue
                if key.from_ is None:
                    if key.field not in mapping.parents:
                        self.report(
                            (*loc, "field"), label, f"{key.field} has no `from` and is not one of the mapping's parents"
                        )
                    continue
                types = [t for t in (product_field_type(e, key.from_) for e in event_types) if t is not None]
                if event_types and not types:
                    self.report((*loc, "from"), label, f"no event of this mapping has a product field {key.from_}")
                for product_type in types[:1]:
                    self.check_type(
                        (*loc, "from"), label, f"{mapping.target}.{key.field}", str(sf_field.get("type")),
                        product_type.kind, "product field",
                    )  # fmt: skip

    def check_parents(
        self, mi: int, mapping: Mapping, fields: MappingABC[str, MappingABC[str, Any]], event_types: list[str]
    ) -> None:
        for lookup, ref in mapping.parents.items():
            loc: tuple[str | int, ...] = ("mappings", mi, "parents", lookup)
            label = f"{mapping.name}.parents.{lookup}"
            parent = self.file.get(ref.mapping)
            if parent is None:
                self.report(loc, label, f"no mapping named {ref.mapping}")
                continue
            if not parent.enabled:
                self.report(loc, label, f"parent mapping {ref.mapping} is disabled")
            sf_field = fields.get(lookup.lower())
            if sf_field is None:
                self.report(loc, label, f"{mapping.target} has no field {lookup}{_suggest(lookup, _names(fields))}")
                continue
            targets = {str(t).lower() for t in sf_field.get("referenceTo", [])}
            if sf_field.get("type") != "reference":
                self.report(loc, label, f"{mapping.target}.{lookup} is not a lookup ({sf_field.get('type')})")
            elif parent.target.lower() not in targets:
                self.report(
                    loc,
                    label,
                    f"{mapping.target}.{lookup} points to {', '.join(sf_field.get('referenceTo', []))}, "
                    f"not to {parent.target} (the target of {parent.name})",
                )
            if not (sf_field.get("createable") or sf_field.get("updateable")):
                self.report(loc, label, f"{mapping.target}.{lookup} is read-only")
            paths = [k.from_ for keys in parent.match_alternatives for k in keys if k.from_]
            usable = [
                e for e in event_types if any(p and product_field_type(e, p) is not None for p in paths)
            ]  # fmt: skip
            if event_types and paths and not usable:
                self.report(
                    loc, label, f"no event of this mapping carries {parent.name}'s match keys ({', '.join(paths)})"
                )
            elif ref.required and paths and len(usable) < len(event_types):
                lacking = [e for e in event_types if e not in usable]
                self.report(
                    loc,
                    label,
                    f"{', '.join(lacking)} do not carry {parent.name}'s match keys; set required: false "
                    "or remove them from events",
                )

    def check_required(self, mi: int, mapping: Mapping, fields: MappingABC[str, MappingABC[str, Any]]) -> None:
        """On create, Salesforce needs every createable, non-nillable field without a default."""
        written: dict[str, FieldMap | None] = {k.lower(): None for k in mapping.parents}
        for keys in mapping.match_alternatives:
            written.update({k.field.lower(): None for k in keys})
        for field in mapping.active_fields():
            if field.outbound:
                written[field.sf.lower()] = field
        event_types = mapping.event_types()
        for name, sf_field in fields.items():
            if not sf_field.get("createable") or sf_field.get("nillable", True) or sf_field.get("defaultedOnCreate"):
                continue
            label = f"{mapping.name}.{sf_field.get('name')}"
            if name not in written:
                self.report(
                    ("mappings", mi, "fields"),
                    mapping.name,
                    f"{mapping.target}.{sf_field.get('name')} is required to create a record; map it "
                    "(with a default for members who have none) or set create_if_missing: false",
                )
                continue
            source = written[name]
            if source is None or source.default is not None or not source.paths:
                continue
            types = [t for p in source.paths for t in (product_field_type(e, p) for e in event_types) if t is not None]
            absent = [e for e in event_types if all(product_field_type(e, p) is None for p in source.paths)]
            if any(t.nullable for t in types) or absent:
                index = mapping.fields.index(source)
                self.report(
                    ("mappings", mi, "fields", index),
                    label,
                    f"{mapping.target}.{sf_field.get('name')} is required but the product value may be empty; "
                    "give a default (a placeholder)",
                )


def _names(fields: MappingABC[str, MappingABC[str, Any]]) -> set[str]:
    return {str(f.get("name")) for f in fields.values()}


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def validate_against_describe(
    mappings: MappingFile, describe_by_object: MappingABC[str, MappingABC[str, Any]]
) -> list[str]:
    """Every problem of the enabled mappings against the org's describe (object name -> the body of
    ``GET /sobjects/{name}/describe``), as ``source:line: mapping.field: message`` lines. Empty: valid."""
    return _Checker(mappings, describe_by_object).run()


# ---------------------------------------------------------------------- what a reader selects
def _resolve_read(
    describes: MappingABC[str, MappingABC[str, Any]], sobject: str, path: str
) -> tuple[str | None, set[str]]:
    """Whether ``path`` (a field, or a relationship path such as ``Account.Owner.Name``) can be read on
    ``sobject``: (the problem or None, the objects whose describe is needed and missing)."""
    objects, parts = [sobject], path.split(".")
    for depth, part in enumerate(parts):
        missing = {o for o in objects if o.lower() not in describes}
        if missing:
            return None, missing
        through = f" (through {'.'.join(parts[:depth])} on {sobject})" if depth else ""
        owner = "/".join(objects)
        bodies = [describes[o.lower()] for o in objects]
        if depth == len(parts) - 1:
            fields = {k: f for d in bodies for k, f in _fields_by_name(d).items() if not f.get("deprecatedAndHidden")}
            if part.lower() in fields:
                return None, set()
            hint = _suggest(part, _names(fields))
            return f"{owner} has no field {part} the integration user can read{through}{hint}", set()
        relationships = {
            str(f.get("relationshipName")).lower(): f
            for d in bodies
            for f in d.get("fields", [])
            if f.get("relationshipName")
        }
        link = relationships.get(part.lower())
        if link is None or not link.get("referenceTo"):
            hint = _suggest(part, {str(f.get("relationshipName")) for f in relationships.values()})
            return f"{owner} has no relationship {part}{through}{hint}", set()
        objects = [str(o) for o in link["referenceTo"]]
    return None, set()


def validate_reads(
    mappings: MappingFile,
    reads: MappingABC[str, Sequence[str]],
    describe_by_object: MappingABC[str, MappingABC[str, Any]],
) -> list[str]:
    """Every field a reader of Salesforce (the poller) would SELECT that the org cannot give, as
    ``source:line: mapping.field: message`` lines like :func:`validate_against_describe` (pure).

    ``reads``: mapping name -> the fields and relationship paths (``Account.Name``) it reads on its
    target; ``describe_by_object``: object name -> describe body, including the objects relationship
    paths lead to (:func:`describes_needed_for_reads` says which). A field the integration user may
    not read is absent from the describe, so it is reported like a missing one. Empty: readable."""
    checker = _Checker(mappings, describe_by_object)
    for index, mapping in enumerate(mappings.mappings):
        if mapping.name not in reads:
            continue
        base: tuple[str | int, ...] = ("mappings", index)
        describe = checker.describes.get(mapping.target.lower())
        if describe is None:
            checker.report((*base, "target"), mapping.name, f"unknown Salesforce object {mapping.target}")
            continue
        if describe.get("queryable") is False:
            checker.report((*base, "target"), mapping.name, f"{mapping.target} cannot be queried")
            continue
        for name in reads[mapping.name]:
            problem, missing = _resolve_read(checker.describes, mapping.target, name)
            if missing:
                problem = f"{name}: cannot check it, {', '.join(sorted(missing))} could not be described"
            if problem:
                checker.report(_read_loc(mapping, index, name), f"{mapping.name}.{name}", problem)
    return checker.problems


def describes_needed_for_reads(
    mappings: MappingFile,
    reads: MappingABC[str, Sequence[str]],
    describe_by_object: MappingABC[str, MappingABC[str, Any]],
) -> set[str]:
    """The objects whose describe :func:`validate_reads` still needs (targets, then the objects each
    relationship path leads to, one level per round); empty once it has all it can use."""
    describes = {k.lower(): v for k, v in describe_by_object.items()}
    needed: set[str] = set()
    for mapping in mappings.mappings:
        if mapping.name not in reads:
            continue
        if mapping.target.lower() not in describes:
            needed.add(mapping.target)
            continue
        for name in reads[mapping.name]:
            needed |= _resolve_read(describes, mapping.target, name)[1]
    return needed


def _read_loc(mapping: Mapping, index: int, name: str) -> tuple[str | int, ...]:
    """Where in the file a read field comes from: its field entry, the inbound options, or the filter."""
    base: tuple[str | int, ...] = ("mappings", index)
    for fi, field in enumerate(mapping.fields):
        if field.sf.lower() == name.lower():
            return (*base, "fields", fi, "sf")
    if name.lower() in {
        (mapping.inbound.member_id_field or "").lower(),
        *(k.sf.lower() for k in mapping.active_links()),
    }:
        return (*base, "inbound")
    return (*base, "inbound_filter")
