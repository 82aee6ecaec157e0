"""Generate ``producers/events.py`` (typed Python events) from the ``.avsc`` files.

The schemas stay the single source of truth: ``sfsync schemas codegen`` rewrites the module and
a unit test fails when the committed module differs from what the schemas generate.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sfsync.schemas import SCHEMA_DIR
from sfsync.topics import PRODUCT_TOPICS

HEADER = '''"""Typed product events, generated from schemas/*.avsc by `sfsync schemas codegen`. Do not edit.

Each event class knows its Avro record name and topic; ``to_avro()`` gives the dict the encoder
writes. ``event_id`` and ``occurred_at`` default to a new uuid4 and the current UTC time.
"""

# ruff: noqa
from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from sfsync.errors import RecordValidationError
from sfsync.time import EPOCH, is_aware
from sfsync.time import utcnow as _now

_MILLISECOND = dt.timedelta(milliseconds=1)


def _uuid() -> str:
    return str(uuid.uuid4())


def _ms(value: dt.datetime) -> int:
    """timestamp-millis as Avro stores it (the encoder's fast path writes plain longs)."""
    return (value - EPOCH) // _MILLISECOND


def _check_time(record: str, name: str, value: object) -> None:
    if value is not None and (not isinstance(value, dt.datetime) or not is_aware(value)):
        raise RecordValidationError(record, name, "expected a timezone-aware datetime (UTC)")


def _check_uuid(record: str, name: str, value: object) -> None:
    try:
        uuid.UUID(str(value))
    except ValueError:
        raise RecordValidationError(record, name, f"{value!r} is not a uuid") from None
'''


def _short(name: str) -> str:
    return name.rsplit(".", 1)[-1]


class _Gen:
    def __init__(self, schema_dir: Path) -> None:
        self.dir = schema_dir
        self.defs: dict[str, dict[str, Any]] = {}
        for path in sorted(schema_dir.glob("*.*.*.avsc")):
            schema = json.loads(path.read_text())
            if isinstance(schema, list):  # a topic's union whose name has dots too (product.members.inbound)
                continue
            full = f"{schema['namespace']}.{schema['name']}" if "namespace" in schema else schema["name"]
            self.defs[full] = schema
        self.topic_of: dict[str, str] = {}
        for spec in PRODUCT_TOPICS:
            for name in json.loads((schema_dir / f"{spec.base}.avsc").read_text()):
                self.topic_of[_short(name)] = spec.base
        self.emitted: list[str] = []
        self.out: list[str] = []

    def py_type(self, t: Any) -> str:
        if isinstance(t, list):
            parts = [self.py_type(b) for b in t if b != "null"]
            joined = " | ".join(parts)
            return f"{joined} | None" if "null" in t else joined
        if isinstance(t, dict):
            logical = t.get("logicalType")
            if logical == "timestamp-millis":
                return "dt.datetime"
            if logical == "uuid":
                return "str"
            if t["type"] == "array":
                return f"list[{self.py_type(t['items'])}]"
            if t["type"] == "map":
                return f"dict[str, {self.py_type(t['values'])}]"
            return self.py_type(t["type"])
        prim = {
            "string": "str",
            "boolean": "bool",
            "int": "int",
            "long": "int",
            "float": "float",
            "double": "float",
            "bytes": "bytes",
            "null": "None",
        }
        if t in prim:
            return prim[t]
        self.ensure(t)
        return _short(t)

    def to_avro_expr(self, t: Any, expr: str) -> str:
        if isinstance(t, list):
            non_null = [b for b in t if b != "null"]
            if len(non_null) == 1:
                inner = self.to_avro_expr(non_null[0], expr)
                return expr if inner == expr else f"None if {expr} is None else {inner}"
            return expr
        if isinstance(t, dict):
            if t.get("type") == "array":
                inner = self.to_avro_expr(t["items"], "v")
                return expr if inner == "v" else f"[{inner} for v in {expr}]"
            if t.get("logicalType") == "timestamp-millis":
                return f"_ms({expr})"
            if "logicalType" in t or t.get("type") in ("string", "long", "int", "boolean"):
                return expr
            return self.to_avro_expr(t["type"], expr)
        if isinstance(t, str) and t in self.defs and self.defs[t]["type"] == "record":
            return f"{expr}.to_avro()"
        return expr

    @staticmethod
    def logical_of(t: Any) -> str | None:
        if isinstance(t, list):
            found = [_Gen.logical_of(b) for b in t if b != "null"]
            return found[0] if len(found) == 1 else None
        if isinstance(t, dict):
            return t.get("logicalType") if isinstance(t.get("logicalType"), str) else None
        return None

    def default_repr(self, t: Any, default: Any) -> str:
        if default is None:
            return "None"
        if isinstance(default, list):
            return "field(default_factory=list)"
        target = t if isinstance(t, str) else (t.get("type") if isinstance(t, dict) else None)
        if isinstance(target, str) and target in self.defs:
            d = self.defs[target]
            if d["type"] == "enum":
                return f"{_short(target)}.{default}"
            if d["type"] == "record":
                return f"field(default_factory={_short(target)})"
        return repr(default)

    def ensure(self, full: str) -> None:
        if full in self.emitted:
            return
        schema = self.defs[full]
        if schema["type"] == "record":
            for fld in schema["fields"]:
                self.py_type(fld["type"])  # emits dependencies first
        self.emitted.append(full)
        name = schema["name"]
        doc = schema.get("doc", "")
        if schema["type"] == "enum":
            self.out.append(f'\n\nclass {name}(StrEnum):\n    """{doc}"""\n')
            self.out.extend(f"    {sym} = {sym!r}\n" for sym in schema["symbols"])
            return
        lines = [f'\n\n@dataclass(frozen=True, slots=True, kw_only=True)\nclass {name}:\n    """{doc}"""\n\n']
        if name in self.topic_of:
            lines.append(f"    RECORD_NAME: ClassVar[str] = {name!r}\n")
            lines.append(f"    TOPIC: ClassVar[str] = {self.topic_of[name]!r}\n\n")
        to_avro = []
        checks = []
        for fld in schema["fields"]:
            logical = self.logical_of(fld["type"])
            if logical == "timestamp-millis":
                checks.append(f"        _check_time({name!r}, {fld['name']!r}, self.{fld['name']})\n")
            elif logical == "uuid":
                checks.append(f"        _check_uuid({name!r}, {fld['name']!r}, self.{fld['name']})\n")
            fname, ftype = fld["name"], fld["type"]
            annotation = self.py_type(ftype)
            if fname == "event_id":
                default = " = field(default_factory=_uuid)"
            elif fname == "occurred_at":
                default = " = field(default_factory=_now)"
            elif "default" in fld:
                default = f" = {self.default_repr(ftype, fld['default'])}"
            else:
                default = ""
            lines.append(f"    {fname}: {annotation}{default}\n")
            to_avro.append(f"            {fname!r}: {self.to_avro_expr(ftype, 'self.' + fname)},\n")
        if checks:
            lines.append("\n    def __post_init__(self) -> None:\n")
            lines.extend(checks)
        lines.append("\n    def to_avro(self) -> dict[str, Any]:\n        return {\n")
        lines.extend(to_avro)
        lines.append("        }\n")
        self.out.append("".join(lines))

    def render(self) -> str:
        for spec in PRODUCT_TOPICS:
            for name in json.loads((self.dir / f"{spec.base}.avsc").read_text()):
                self.ensure(name)
        events = [n for n in self.topic_of]
        union = "\nProductEvent = " + " | ".join(events) + "\n"
        registry = (
            "\nEVENT_TYPES: dict[str, type[ProductEvent]] = {\n" + "".join(f"    {n!r}: {n},\n" for n in events) + "}\n"
        )
        return HEADER + "".join(self.out) + "\n" + union + registry


def generate(schema_dir: Path = SCHEMA_DIR) -> str:
    """The source of ``producers/events.py`` for the schemas in ``schema_dir``."""
    return _Gen(schema_dir).render()
