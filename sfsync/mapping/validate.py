"""Checking a mapping file, reporting every problem at once: the one rule set every process runs.

:func:`validate_mappings` is the entry point. Without an org (``describes`` None: the outbound and
inbound processors) it checks what needs none: the structural rules (known event types of the
mapping's entities; at most :data:`MAX_CONSTANTS` constants per mapping, each text of at most
:data:`MAX_CONSTANT_LENGTH` characters and only towards Salesforce; no Salesforce field mapped
twice; parents that name an enabled mapping whose match keys the events carry; match keys with a
source), the product fields named by ``from`` (against the Avro schemas in ``schemas/``) and the CEL
expressions (compiled, then dry-run on a synthetic event of each event type, so an undefined
function is found too). With the org's describes (the sink, the poller, ``sfsync mappings
validate``) it adds the org rules: the object and every field exist; the object may be created,
updated and deleted as the mapping needs, and each written field is createable (when the mapping
creates) and updateable; type mismatches (a constant only into a text or picklist field, so never
into a date); picklist values; required fields on create; record types; lookups to parent
mappings; a custom field a mapping matches on alone is an External ID (or idLookup) field, since
sfsync upserts on it. :func:`require_valid` raises :class:`~sfsync.mapping.errors.MappingError`
listing the problems: what a process calls at start to refuse an invalid mapping.

:func:`validate_against_describe` is :func:`validate_mappings` with the org's describes;
:func:`validate_reads` checks what a reader of Salesforce (the poller) would select. All return the
problems as ``source:line: mapping.field: message`` lines; empty means valid.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from collections.abc import Mapping as MappingABC
from typing import Any

from sfsync.mapping.cel import compile_problem, run_cel
from sfsync.mapping.errors import MappingError
from sfsync.mapping.evaluate import apply_value_map
from sfsync.mapping.model import FieldMap, Mapping, MappingFile, MatchKey
from sfsync.mapping.products import (
    ProductType,
    entity_event_types,
    known_event_types,
    product_field_type,
    sample_event,
)

MAX_CONSTANTS = 5
MAX_CONSTANT_LENGTH = 255
TEXT_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "encryptedstring"}
)
PICKLIST_TYPES = frozenset({"picklist", "multipicklist"})

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
    """Collects problems for one mapping file, against one org's describe unless ``offline``
    (``describes`` None: the rules that need no org only); ``only``: check just these mappings."""

    def __init__(
        self,
        file: MappingFile,
        describes: MappingABC[str, MappingABC[str, Any]] | None,
        only: Collection[str] | None = None,
    ) -> None:
        self.file = file
        self.offline = describes is None
        self.describes = {name.lower(): d for name, d in (describes or {}).items()}
        self.only = set(only) if only is not None else None
        self.problems: list[str] = []

    def report(self, loc: tuple[str | int, ...], label: str, message: str) -> None:
        line = self.file.line_of(loc)
        where = f"{self.file.source}:{line}" if line else self.file.source
        problem = f"{where}: {label}: {message}"
        if problem not in self.problems:
            self.problems.append(problem)

    def run(self) -> list[str]:
        known_events = known_event_types()
        for index, mapping in enumerate(self.file.mappings):
            if mapping.enabled and (self.only is None or mapping.name in self.only):
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
        if describe is None and not self.offline:
            known = {d.get("name", k) for k, d in self.describes.items()}
            self.report(
                (*base, "target"), name, f"unknown Salesforce object {mapping.target}{_suggest(mapping.target, known)}"
            )
        fields = _fields_by_name(describe) if describe else {}
        self.check_fields(mi, mapping, mapping.fields, ("fields",), fields, event_types)
        if mapping.delete is not None and mapping.delete.action == "update":
            removing = [t for t in mapping.delete.when if t in known_events]
            self.check_fields(mi, mapping, mapping.delete.fields, ("delete", "fields"), fields, removing)
        self.check_match(mi, mapping, fields if describe else None, event_types)
        self.check_parents(mi, mapping, fields if describe else None, event_types)
        if describe is None:
            return
        self.check_permissions(mi, mapping, describe)
        self.check_inbound(mi, mapping, fields)
        self.check_record_type(mi, mapping, describe)
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
                if self.offline and field.expr is not None:  # no field type to check the result against
                    self.dry_run_field(loc, label, mapping, field, None, None, [], event_types)
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
            creates = mapping.create_if_missing and where == ("fields",)
            self.check_one(loc, label, mapping, field, sf_field, product_types, event_types, creates=creates)

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
        *,
        creates: bool,
    ) -> None:
        sf_type = str(sf_field.get("type"))
        sf_name = f"{mapping.target}.{sf_field.get('name', field.sf)}"
        if field.outbound:
            self.check_writable((*loc, "sf"), label, sf_name, sf_field, creates=creates, updates=True)
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

    def check_writable(
        self,
        loc: tuple[str | int, ...],
        label: str,
        sf_name: str,
        sf_field: MappingABC[str, Any],
        *,
        creates: bool,
        updates: bool,
    ) -> None:
        """The integration user may set the field where the mapping writes it: on the records it
        creates (``creates``) and on those it matches and updates (``updates``)."""
        createable, updateable = bool(sf_field.get("createable")), bool(sf_field.get("updateable"))
        if not (createable or updateable):
            self.report(loc, label, f"{sf_name} is read-only; it cannot be written")
        elif creates and not createable:
            self.report(loc, label, f"{sf_name} cannot be set on create (not createable); sfsync creates records")
        elif updates and not updateable:
            self.report(
                loc, label, f"{sf_name} cannot be updated (not updateable); sfsync updates the records it matches"
            )

    def check_permissions(self, mi: int, mapping: Mapping, describe: MappingABC[str, Any]) -> None:
        """What the integration user may do to the mapping's object: create it (``create_if_missing``),
        update it (any outbound field) and delete it (a delete action)."""
        loc: tuple[str | int, ...] = ("mappings", mi, "target")
        needs = []
        if mapping.create_if_missing:
            needs.append(("createable", "create"))
        if any(f.outbound for f in mapping.active_fields()) or mapping.parents:
            needs.append(("updateable", "update"))
        if mapping.delete is not None and mapping.delete.action == "delete":
            needs.append(("deletable", "delete"))
        for key, verb in needs:
            if describe.get(key) is False:
                self.report(
                    loc, mapping.name, f"the integration user may not {verb} {mapping.target} records ({key} false)"
                )

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
        sf_name: str | None,
        sf_type: str | None,
        picklist: list[str],
        event_types: list[str],
    ) -> None:
        """Run the expression on synthetic events: undefined functions, result types, and picklist
        values the result takes whatever the text of the event (e.g. derived from event.type).
        Without the Salesforce field (``sf_type`` None: no org) only what fails to run is reported."""
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
            if len(results) != 2 or sf_name is None or sf_type is None:
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
            value = apply_value_map(results[0], field.value_map)
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
        self,
        mi: int,
        mapping: Mapping,
        fields: MappingABC[str, MappingABC[str, Any]] | None,
        event_types: list[str],
    ) -> None:
        """Each match key has a source (a product field the events carry, a CEL expression that
        compiles, or a parent); with the org's ``fields``, the key field exists, can be filtered on,
        has the product field's type, and is an External ID when it is a custom field matched on
        alone (sfsync upserts on those: an ordinary field would be refused with INVALID_FIELD)."""
        for ai, entry in enumerate(mapping.match):  # every entry as written (a repeated one too), for its line
            keys = [entry] if isinstance(entry, MatchKey) else entry
            for ki, key in enumerate(keys):
                loc: tuple[str | int, ...] = ("mappings", mi, "match", ai)
                if not isinstance(entry, MatchKey):
                    loc = (*loc, ki)
                label = f"{mapping.name}.match"
                sf_field = fields.get(key.field.lower()) if fields is not None else None
                if fields is not None and sf_field is None:
                    self.report(
                        (*loc, "field"),
                        label,
                        f"{mapping.target} has no field {key.field}{_suggest(key.field, _names(fields))}",
                    )
                    continue
                if sf_field is not None:
                    self.check_match_field(loc, label, mapping, sf_field, alone=len(keys) == 1)
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
                if sf_field is None:
                    continue
                for product_type in types[:1]:
                    self.check_type(
                        (*loc, "from"), label, f"{mapping.target}.{key.field}", str(sf_field.get("type")),
                        product_type.kind, "product field",
                    )  # fmt: skip

    def check_match_field(
        self, loc: tuple[str | int, ...], label: str, mapping: Mapping, sf_field: MappingABC[str, Any], *, alone: bool
    ) -> None:
        name = f"{mapping.target}.{sf_field.get('name')}"
        indexed = bool(sf_field.get("externalId") or sf_field.get("idLookup"))
        if not (sf_field.get("filterable") or indexed):
            self.report((*loc, "field"), label, f"{name} cannot be matched on (not filterable)")
        if alone and sf_field.get("custom") and not indexed:
            self.report(
                (*loc, "field"),
                label,
                f"{name} is not an External ID field: sfsync upserts on a custom field matched on alone, "
                "which Salesforce refuses (INVALID_FIELD); make it an External ID or match on another field",
            )

    def check_parents(
        self,
        mi: int,
        mapping: Mapping,
        fields: MappingABC[str, MappingABC[str, Any]] | None,
        event_types: list[str],
    ) -> None:
        """Each parent names an enabled mapping whose match keys the events carry; with the org's
        ``fields``, the lookup exists, points to the parent's object and can be set."""
        matched_on = {k.field.lower() for keys in mapping.match_alternatives for k in keys}
        for lookup, ref in mapping.parents.items():
            loc: tuple[str | int, ...] = ("mappings", mi, "parents", lookup)
            label = f"{mapping.name}.parents.{lookup}"
            parent = self.file.get(ref.mapping)
            if parent is None:
                self.report(loc, label, f"no mapping named {ref.mapping}")
                continue
            if not parent.enabled:
                self.report(loc, label, f"parent mapping {ref.mapping} is disabled")
            self.check_parent_keys(loc, label, parent, ref.required, event_types)
            if fields is None:
                continue
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
            # a lookup the mapping matches on is only set on create (the sink leaves it out of updates)
            updates = lookup.lower() not in matched_on
            self.check_writable(
                loc, label, f"{mapping.target}.{lookup}", sf_field, creates=mapping.create_if_missing, updates=updates
            )

    def check_parent_keys(
        self, loc: tuple[str | int, ...], label: str, parent: Mapping, required: bool, event_types: list[str]
    ) -> None:
        """The events of a child carry its parent's match keys (all of them, for a required parent)."""
        paths = [k.from_ for keys in parent.match_alternatives for k in keys if k.from_]
        usable = [e for e in event_types if any(p and product_field_type(e, p) is not None for p in paths)]
        if event_types and paths and not usable:
            self.report(loc, label, f"no event of this mapping carries {parent.name}'s match keys ({', '.join(paths)})")
        elif required and paths and len(usable) < len(event_types):
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


def validate_mappings(
    mappings: MappingFile,
    describe_by_object: MappingABC[str, MappingABC[str, Any]] | None = None,
    *,
    only: Collection[str] | None = None,
) -> list[str]:
    """Every problem of the enabled mappings (``only``: of these mappings), as ``source:line:
    mapping.field: message`` lines; empty: valid. ``describe_by_object``: object name -> the body of
    ``GET /sobjects/{name}/describe`` for every object the mappings write (:func:`objects_to_describe`);
    None: the rules that need no org (see the module docstring)."""
    return _Checker(mappings, describe_by_object, only).run()


def validate_against_describe(
    mappings: MappingFile, describe_by_object: MappingABC[str, MappingABC[str, Any]]
) -> list[str]:
    """:func:`validate_mappings` against the org's describes (every rule)."""
    return validate_mappings(mappings, describe_by_object)


def require_valid(
    mappings: MappingFile,
    describe_by_object: MappingABC[str, MappingABC[str, Any]] | None = None,
    *,
    against: str = "",
) -> MappingFile:
    """``mappings`` when :func:`validate_mappings` finds no problem and at least one mapping is
    enabled; else :class:`~sfsync.mapping.errors.MappingError` listing every problem (what a process
    raises to refuse to start). ``against``: what the describes came from, for the message."""
    problems = validate_mappings(mappings, describe_by_object)
    if not mappings.enabled():
        problems.append(f"{mappings.source}: no enabled mapping: nothing would be synced")
    if problems:
        source = f"{mappings.source} (against {against})" if against else mappings.source
        raise MappingError(source, problems)
    return mappings


def objects_to_describe(mappings: MappingFile, only: Collection[str] | None = None) -> list[str]:
    """The objects whose describes the org rules of :func:`validate_mappings` need: the targets of the
    enabled mappings (``only``: of these), in file order, once each."""
    chosen = [m for m in mappings.enabled() if only is None or m.name in only]
    return list({m.target.lower(): m.target for m in chosen}.values())


Describe = Callable[[str], Awaitable[MappingABC[str, Any] | None]]
"""Describes one object: its describe body, or None when the org has no such object (or hides it)."""


async def gather_describes(
    mappings: MappingFile,
    describe: Describe,
    *,
    reads: MappingABC[str, Sequence[str]] | None = None,
    only: Collection[str] | None = None,
) -> dict[str, MappingABC[str, Any]]:
    """Object name -> describe body of everything :func:`validate_mappings` and :func:`validate_reads`
    need, each object described once: the targets of the enabled mappings (``only``: of these),
    then, one level per round, the objects the relationship paths they read lead to (each mapping's
    inbound fields, plus ``reads``: mapping name -> more fields and paths it reads, e.g. what the
    poller selects). An object ``describe`` answers None for is left out, so the rules report it as
    unknown. What ``describe`` raises is raised."""
    chosen = [m for m in mappings.enabled() if only is None or m.name in only]
    paths = {m.name: [f.sf for f in m.inbound_fields() if "." in f.sf] for m in chosen}
    for name, more in (reads or {}).items():
        if name in paths:
            paths[name] = list(dict.fromkeys([*paths[name], *more]))
    reads = paths
    describes: dict[str, MappingABC[str, Any]] = {}
    tried: set[str] = set()
    needed = set(objects_to_describe(mappings, only))
    while needed:
        for sobject in sorted(needed):
            tried.add(sobject.lower())
            body = await describe(sobject)
            if body is not None:
                describes[sobject] = body
        found = describes_needed_for_reads(mappings, reads, describes)
        needed = {o for o in found if o.lower() not in tried}
    return describes


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
