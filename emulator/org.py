"""Org files: the YAML that declares an emulated org's settings, users, custom objects, custom fields
on standard objects and duplicate rules.

```yaml
org: {id: 00D8d0000000001, name: Acme, daily_api_limit: 15000, session_timeout_s: 7200}
users: [{username: rep@acme.test, first_name: Sales, last_name: Rep, email: rep@acme.test}]
objects:
  Community_Activity__c:
    label: Community Activity
    fields:
      - {name: Type__c, type: picklist, values: [A, B], restricted: true}
      - {name: Contact__c, type: reference, to: Contact, relationship: Contact__r}
  Contact:
    fields: [{name: Member_Id__c, type: string, length: 64, external_id: true, unique: true}]
    record_types:                       # optional; the object then gets a RecordTypeId field
      - {name: Business_Contact, label: Business Contact, default: true}   # default: new records get it
      - {name: Community_Member, label: Community Member}
      - {name: Legacy, active: false}
duplicate_rules: [{object: Contact, fields: [Email]}]
```

The file is validated with pydantic and by :func:`build`; every problem is reported at once in one
:class:`OrgFileError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sfsync.emulator import ids, standard
from sfsync.emulator.model import FieldDef, ObjectDef, Schema
from sfsync.emulator.standard import SFField

DEFAULT_ORG_FILE = Path(__file__).with_name("default_org.yaml")

FieldType = Literal[
    "string",
    "text",
    "textarea",
    "longtextarea",
    "richtextarea",
    "email",
    "phone",
    "url",
    "picklist",
    "multipicklist",
    "boolean",
    "checkbox",
    "int",
    "number",
    "double",
    "currency",
    "percent",
    "date",
    "datetime",
    "reference",
    "lookup",
    "master_detail",
]
_TYPE_ALIASES = {
    "text": "string",
    "checkbox": "boolean",
    "number": "double",
    "lookup": "reference",
    "master_detail": "reference",
    "longtextarea": "textarea",
    "richtextarea": "textarea",
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*__c$")
_DEVELOPER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$")
_NO_RECORD_TYPES = frozenset({"user", "organization", "recordtype"})
_EXTERNAL_ID_TYPES = frozenset({"string", "email", "int", "double"})


class OrgFileError(ValueError):
    """An invalid org file; ``errors`` lists every problem found."""

    def __init__(self, source: str, errors: list[str]) -> None:
        super().__init__(f"{source}: {len(errors)} error(s):\n" + "\n".join(f"  - {e}" for e in errors))
        self.errors = errors


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrgSettings(_Strict):
    id: str = "00D8d0000000001"
    name: str = "Emulated Org"
    edition: str = "Developer Edition"
    instance_name: str = "EMU1"
    daily_api_limit: int = Field(default=15000, ge=1)
    session_timeout_s: int = Field(default=7200, ge=60)
    time_zone: str = "America/Los_Angeles"


class UserSpec(_Strict):
    username: str
    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None  # "First Last", split when first/last are not given
    email: str | None = None
    alias: str | None = None
    title: str | None = None
    id: str | None = None
    active: bool = True
    integration: bool = False  # the user the API client authenticates as


class FieldSpec(_Strict):
    name: str
    type: FieldType
    label: str | None = None
    length: int | None = Field(default=None, ge=1)
    precision: int | None = Field(default=None, ge=1, le=18)
    scale: int | None = Field(default=None, ge=0, le=17)
    required: bool = False
    unique: bool = False
    case_sensitive: bool = False
    external_id: bool = False
    values: list[str] | None = None
    restricted: bool = False
    default: Any = None
    to: str | list[str] | None = None
    relationship: str | None = None
    child_relationship: str | None = None
    cascade_delete: bool | None = None
    help: str | None = None


class NameFieldSpec(_Strict):
    type: Literal["string", "auto_number"] = "string"
    label: str | None = None
    format: str = "{0000}"  # auto-number display format
    start: int = Field(default=1, ge=0)


class RecordTypeSpec(_Strict):
    name: str  # the developer name
    label: str | None = None
    active: bool = True
    default: bool = False  # the record type of records created without RecordTypeId (else: the first active)


class ObjectSpec(_Strict):
    label: str | None = None
    plural_label: str | None = None
    key_prefix: str | None = Field(default=None, min_length=3, max_length=3)
    name_field: NameFieldSpec = NameFieldSpec()
    fields: list[FieldSpec] = []
    record_types: list[RecordTypeSpec] = []


class DuplicateRuleSpec(_Strict):
    object: str
    fields: list[str] = Field(min_length=1)
    name: str | None = None


class OrgFile(_Strict):
    org: OrgSettings = OrgSettings()
    users: list[UserSpec] = []
    objects: dict[str, ObjectSpec] = {}
    duplicate_rules: list[DuplicateRuleSpec] = []


@dataclass
class OrgDefinition:
    """An org file turned into what the store needs."""

    settings: OrgSettings
    schema: Schema
    users: list[dict[str, Any]]  # User field values (canonical API names), each with its Id
    integration_user_id: str
    duplicate_rules: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)


def _plural(label: str) -> str:
    if label.endswith("y") and label[-2:-1] not in "aeiou":
        return label[:-1] + "ies"
    if label.endswith(("s", "x", "ch", "sh")):
        return label + "es"
    return label + "s"


def _custom_prefixes() -> list[str]:
    return [f"a{second}{third}" for second in "0123456789" for third in ids.BASE62]


def _field(
    spec: FieldSpec, obj_name: str, obj_label_plural: str, errors: list[str], schema_names: set[str]
) -> SFField | None:
    where = f"objects.{obj_name}.fields.{spec.name}"
    if not _NAME.match(spec.name):
        errors.append(f"{where}: custom field names look like Some_Name__c")
    kind = _TYPE_ALIASES.get(spec.type, spec.type)
    label = spec.label or standard._label_of(spec.name)
    common: dict[str, Any] = {
        "label": label,
        "custom": True,
        "nillable": not spec.required,
        "inline_help_text": spec.help,
    }
    if spec.external_id and kind not in _EXTERNAL_ID_TYPES:
        errors.append(f"{where}: only text, email and number fields can be external ids (not {spec.type})")
    if spec.unique and kind not in _EXTERNAL_ID_TYPES:
        errors.append(f"{where}: only text, email and number fields can be unique")
    if spec.values is not None and kind not in ("picklist", "multipicklist"):
        errors.append(f"{where}: values are only for picklists")
    if spec.to is not None and kind != "reference":
        errors.append(f"{where}: 'to' is only for reference fields")
    lookup: dict[str, Any] = {
        "external_id": spec.external_id,
        "id_lookup": spec.external_id,
        "unique": spec.unique,
        "case_sensitive": spec.case_sensitive,
    }
    if kind in ("string", "email", "phone", "url"):
        length = spec.length or {"string": 255, "email": 80, "phone": 40, "url": 255}[kind]
        if length > 255:
            errors.append(f"{where}: length {length} exceeds 255 for a {spec.type} field (use textarea)")
        if kind == "email":
            return SFField(name=spec.name, type="email", length=80, **common, **lookup)
        return SFField(name=spec.name, type=kind, length=length, default_value=spec.default, **common, **lookup)
    if kind == "textarea":
        long = spec.type != "textarea" or (spec.length or 255) > 255
        length = spec.length or (32768 if long else 255)
        if length > 131072:
            errors.append(f"{where}: length {length} exceeds 131072")
        extra = "richtextarea" if spec.type == "richtextarea" else ("plaintextarea")
        return SFField(
            name=spec.name,
            type="textarea",
            length=length,
            extra_type_info=extra,
            html_formatted=spec.type == "richtextarea",
            sortable=not long,
            filterable=not long,
            **common,
        )
    if kind in ("picklist", "multipicklist"):
        values = spec.values or []
        if not values:
            errors.append(f"{where}: a picklist needs values")
        if len(set(values)) != len(values):
            errors.append(f"{where}: duplicate picklist values")
        if spec.default is not None and spec.default not in values:
            errors.append(f"{where}: default {spec.default!r} is not one of the values")
        return SFField(
            name=spec.name,
            type=kind,
            length=4099 if kind == "multipicklist" else 255,
            picklist_values=tuple(values),
            restricted_picklist=spec.restricted,
            default_value=spec.default,
            defaulted_on_create=spec.default is not None,
            **common,
        )
    if kind == "boolean":
        common["nillable"] = False
        return SFField(
            name=spec.name, type="boolean", default_value=bool(spec.default), defaulted_on_create=True, **common
        )
    if kind == "int":
        return SFField(
            name=spec.name, type="int", digits=spec.precision or 9, default_value=spec.default, **common, **lookup
        )
    if kind in ("double", "currency", "percent"):
        precision = spec.precision or 18
        scale = spec.scale if spec.scale is not None else (2 if kind == "currency" else 0)
        if scale > precision:
            errors.append(f"{where}: scale {scale} exceeds precision {precision}")
        return SFField(
            name=spec.name, type=kind, precision=precision, scale=scale, default_value=spec.default, **common, **lookup
        )
    if kind in ("date", "datetime"):
        return SFField(name=spec.name, type=kind, **common)
    # reference
    targets = [spec.to] if isinstance(spec.to, str) else list(spec.to or [])
    if not targets:
        errors.append(f"{where}: a reference needs 'to' (the parent object)")
    for target in targets:
        if target.lower() not in schema_names:
            errors.append(f"{where}: reference to unknown object {target}")
    relationship = spec.relationship or spec.name[:-3] + "__r"
    if not relationship.endswith("__r"):
        errors.append(f"{where}: custom relationship names end in __r ({relationship})")
    child = spec.child_relationship or re.sub(r"\W+", "_", obj_label_plural).strip("_") + "__r"
    if not child.endswith("__r"):
        errors.append(f"{where}: child relationship names end in __r ({child})")
    master_detail = spec.type == "master_detail"
    cascade = spec.cascade_delete if spec.cascade_delete is not None else master_detail
    if master_detail:
        common["nillable"] = False
    return SFField(
        name=spec.name,
        type="reference",
        length=18,
        reference_to=tuple(targets),
        relationship_name=relationship,
        child_relationship_name=child,
        cascade_delete=cascade,
        **common,
    )


def _custom_object(name: str, spec: ObjectSpec, prefix: str) -> ObjectDef:
    label = spec.label or standard._label_of(name)
    plural = spec.plural_label or _plural(label)
    name_spec = spec.name_field
    name_label = name_spec.label or f"{label} Name"
    if name_spec.type == "auto_number":
        name_field = SFField(
            name="Name",
            type="string",
            label=name_label,
            length=80,
            nillable=False,
            createable=False,
            updateable=False,
            defaulted_on_create=True,
            name_field=True,
            id_lookup=True,
            auto_number=name_spec.format,
            auto_number_start=name_spec.start,
        )
    else:
        name_field = SFField(
            name="Name",
            type="string",
            label=name_label,
            length=80,
            nillable=True,
            defaulted_on_create=True,
            name_field=True,
            id_lookup=True,
        )
    fields: list[FieldDef] = [*standard.system_fields(label), name_field, standard.owner(("Group", "User"))]
    fields.append(standard.date("LastActivityDate", label="Last Activity Date", createable=False, updateable=False))
    return standard.make_object(name, prefix, label, plural, fields, custom=True)


def _record_types(obj: ObjectDef, specs: list[RecordTypeSpec], errors: list[str]) -> None:
    """Give ``obj`` its record types: describe entries (the master last) and the RecordTypeId field."""
    where = f"objects.{obj.name}.record_types"
    if obj.name.lower() in _NO_RECORD_TYPES:
        errors.append(f"{where}: {obj.name} has no record types")
        return
    seen: set[str] = set()
    for spec in specs:
        if not _DEVELOPER_NAME.match(spec.name) or len(spec.name) > 80:
            errors.append(f"{where}.{spec.name}: developer names are letters, digits and single underscores")
        if spec.name.lower() in seen or spec.name.lower() == "master":
            errors.append(f"{where}.{spec.name}: declared twice / reserved")
        seen.add(spec.name.lower())
        if spec.default and not spec.active:
            errors.append(f"{where}.{spec.name}: an inactive record type cannot be the default")
    if sum(spec.default for spec in specs) > 1:
        errors.append(f"{where}: only one default record type")
    active = [spec for spec in specs if spec.active]
    default = next((spec for spec in active if spec.default), active[0] if active else None)
    obj.record_type_infos = [
        {
            "active": spec.active,
            "available": spec.active,
            "defaultRecordTypeMapping": spec is default,
            "developerName": spec.name,
            "master": False,
            "name": spec.label or standard._label_of(spec.name),
            "recordTypeId": ids.stable_id("012", f"RecordType:{obj.name}.{spec.name}"),
        }
        for spec in specs
    ]
    obj.record_type_infos.append(standard.master_record_type(only=default is None))
    fields = list(obj.fields.values())
    at = next((i + 1 for i, f in enumerate(fields) if f.name in ("MasterRecordId", "IsDeleted")), 1)
    fields.insert(at, standard.record_type_field())
    obj.fields = {f.name.lower(): f for f in fields}


def build(spec: OrgFile, source: str = "<org file>") -> OrgDefinition:
    """Turn a parsed org file into a schema, users and rules; OrgFileError lists every problem."""
    errors: list[str] = []
    schema = standard.standard_schema()
    prefixes = iter(p for p in _custom_prefixes())
    used_prefixes = {o.key_prefix for o in schema}
    declared: dict[str, ObjectSpec] = {}
    for name, obj_spec in spec.objects.items():
        if schema.get(name) is not None:
            continue
        if not _NAME.match(name):
            errors.append(f"objects.{name}: unknown standard object (custom objects are named Some_Name__c)")
            continue
        prefix = obj_spec.key_prefix
        if prefix is None:
            prefix = next(p for p in prefixes if p not in used_prefixes)
        elif prefix in used_prefixes:
            errors.append(f"objects.{name}: key prefix {prefix} already used")
        used_prefixes.add(prefix)
        schema.add(_custom_object(name, obj_spec, prefix))
        declared[name] = obj_spec
    names = set(schema.objects)
    for name, obj_spec in spec.objects.items():
        obj = schema.get(name)
        if obj is None:
            continue
        seen: set[str] = set()
        for field_spec in obj_spec.fields:
            lowered = field_spec.name.lower()
            if lowered in seen or (obj.field(field_spec.name) is not None and not obj.custom):
                errors.append(f"objects.{name}.fields.{field_spec.name}: declared twice / already exists")
            seen.add(lowered)
            definition = _field(field_spec, name, obj.label_plural, errors, names)
            if definition is not None:
                obj.add(definition)
        if obj_spec.record_types:
            _record_types(obj, obj_spec.record_types, errors)
    for rule in spec.duplicate_rules:
        obj = schema.get(rule.object)
        if obj is None:
            errors.append(f"duplicate_rules: unknown object {rule.object}")
            continue
        for field_name in rule.fields:
            if obj.field(field_name) is None:
                errors.append(f"duplicate_rules: no field {field_name} on {obj.name}")
    if not ids.is_valid_id(spec.org.id) or not spec.org.id.startswith("00D"):
        errors.append(f"org.id: {spec.org.id!r} is not an Organization id (00D + 12 or 15 characters)")
    users, integration_user_id = _users(spec, errors)
    if errors:
        raise OrgFileError(source, errors)
    standard.link_children(schema)
    standard.list_sobject_types(schema)
    rules: list[tuple[str, tuple[str, ...]]] = []
    for rule in spec.duplicate_rules:
        obj = schema.objects[rule.object.lower()]
        rules.append((obj.name, tuple(obj.fields[f.lower()].name for f in rule.fields)))
    return OrgDefinition(
        settings=spec.org, schema=schema, users=users, integration_user_id=integration_user_id, duplicate_rules=rules
    )


def user_values(
    username: str,
    *,
    first_name: str | None = None,
    last_name: str | None = None,
    email: str | None = None,
    alias: str | None = None,
    title: str | None = None,
    active: bool = True,
    user_id: str | None = None,
) -> dict[str, Any]:
    """The User field values for one org user."""
    last = last_name or username.split("@")[0]
    return {
        "Id": ids.normalize(user_id) if user_id else ids.stable_id("005", username.lower()),
        "Username": username,
        "FirstName": first_name,
        "LastName": last,
        "Email": email or username,
        "Alias": alias or (((first_name or "")[:1] + last)[:8]).lower(),
        "Title": title,
        "IsActive": active,
    }


def _users(spec: OrgFile, errors: list[str]) -> tuple[list[dict[str, Any]], str]:
    users: list[dict[str, Any]] = []
    integration: str | None = None
    seen: set[str] = set()
    for index, user in enumerate(spec.users):
        where = f"users[{index}]"
        if user.username.lower() in seen:
            errors.append(f"{where}: duplicate username {user.username}")
        seen.add(user.username.lower())
        if user.id is not None and (not ids.is_valid_id(user.id) or not user.id.startswith("005")):
            errors.append(f"{where}: {user.id!r} is not a User id")
            continue
        first, last = user.first_name, user.last_name
        if user.name and not (first or last):
            first, _, last = user.name.rpartition(" ")
            first = first or None
        values = user_values(
            user.username,
            first_name=first,
            last_name=last,
            email=user.email,
            alias=user.alias,
            title=user.title,
            active=user.active,
            user_id=user.id,
        )
        users.append(values)
        if user.integration:
            if integration is not None:
                errors.append(f"{where}: only one integration user")
            integration = values["Id"]
    if integration is None:
        values = user_values("integration@emulator.invalid", first_name="Integration", last_name="User", alias="integ")
        users.append(values)
        integration = values["Id"]
    return users, integration


def parse(data: Any, source: str = "<org file>") -> OrgDefinition:
    """Validate already-loaded YAML/JSON data."""
    try:
        spec = OrgFile.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        raise OrgFileError(source, problems) from exc
    return build(spec, source)


def load(path: str | Path | None = None) -> OrgDefinition:
    """Read and validate an org file (None: the shipped ``default_org.yaml``)."""
    file = Path(path) if path is not None else DEFAULT_ORG_FILE
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise OrgFileError(str(file), [f"not valid YAML: {exc}"]) from exc
    return parse(data, str(file))
