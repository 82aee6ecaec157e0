"""Schema-specific Avro writers: one schema compiled once into a generated function per record (the
records, arrays and maps inside it written inline) that writes a value's Avro binary, byte for byte
what ``fastavro.schemaless_writer`` writes for it, at about half the cost (no per-value lookup of the
schema, no union search by validation).

A compiled writer is exact on the values it accepts and refuses the rest by raising (never writing
something fastavro would write differently or refuse): every value must have the Python type fastavro
validates for its schema (``bool`` for a boolean, ``int`` not ``bool`` within range for an int or long,
``int``/``float`` for a float or double, ``str`` for a string or a map key, ``list``/``tuple`` for an
array, ``dict`` for a record or map, a symbol for an enum). A union picks the first branch whose
Python type matches, as fastavro does for valid values; a union value in fastavro's tuple notation or
a record naming its type (``-type``) is refused. :func:`write_like_fastavro` falls back to fastavro for
whatever the compiled writer refuses, so its answer, bytes or exception, is always fastavro's.

Logical types are not converted: compile the storage form of a schema
(:func:`~sfsync.serde.schema.storage_schema`) and give values in that form.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import fastavro

from sfsync.serde.schema import PRIMITIVE_TYPES, collect_named

__all__ = ["UnsupportedSchemaError", "Writer", "compile_writer", "write_like_fastavro"]

Writer = Callable[[bytearray, Any], None]
"""Appends the Avro binary of a value to the buffer; raises when the value does not fit (see the module doc)."""

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_DOUBLE = struct.Struct("<d").pack
_FLOAT = struct.Struct("<f").pack


class UnsupportedSchemaError(ValueError):
    """A schema the compiler does not handle (a union it cannot choose a branch in by Python type alone)."""


def _long(out: bytearray, n: int) -> None:
    n = (n << 1) ^ (n >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_null(out: bytearray, value: Any) -> None:
    if value is not None:
        raise TypeError(f"expected null, got {type(value).__name__}")


def _write_boolean(out: bytearray, value: Any) -> None:
    if type(value) is not bool:
        raise TypeError(f"expected a boolean, got {type(value).__name__}")
    out.append(1 if value else 0)


def _write_int(out: bytearray, value: Any) -> None:
    if type(value) is not int or not _INT_MIN <= value <= _INT_MAX:
        raise TypeError(f"expected an int, got {type(value).__name__}")
    _long(out, value)


def _write_long(out: bytearray, value: Any) -> None:
    if type(value) is not int or not _LONG_MIN <= value <= _LONG_MAX:
        raise TypeError(f"expected a long, got {type(value).__name__}")
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _write_double(out: bytearray, value: Any) -> None:
    kind = type(value)
    if kind is not float and kind is not int:
        raise TypeError(f"expected a double, got {kind.__name__}")
    out += _DOUBLE(value)


def _write_float(out: bytearray, value: Any) -> None:
    kind = type(value)
    if kind is not float and kind is not int:
        raise TypeError(f"expected a float, got {kind.__name__}")
    out += _FLOAT(value)


def _write_string(out: bytearray, value: Any) -> None:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    data = value.encode()
    n = len(data) << 1
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    out += data


def _write_bytes(out: bytearray, value: Any) -> None:
    if type(value) is not bytes and type(value) is not bytearray:
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    _long(out, len(value))
    out += value


_PRIMITIVES: dict[str, Writer] = {
    "null": _write_null,
    "boolean": _write_boolean,
    "int": _write_int,
    "long": _write_long,
    "float": _write_float,
    "double": _write_double,
    "string": _write_string,
    "bytes": _write_bytes,
}

# The Python types each kind of branch accepts: a primitive's as validation accepts them, and the named kinds'.
_BRANCH_TYPES: dict[str, tuple[type, ...]] = {
    **PRIMITIVE_TYPES,
    "fixed": (bytes,),
    "enum": (str,),
    "array": (list,),
    "map": (dict,),
    "record": (dict,),
}


def _kind(schema: Any, named: dict[str, Any]) -> str:
    if isinstance(schema, str):
        return schema if schema in _PRIMITIVES else str(named[schema]["type"])
    if isinstance(schema, list):
        return "union"
    return str(schema["type"])


def compile_writer(schema: Any, within: Any = None) -> Writer:
    """A writer for ``schema`` (parsed by ``fastavro.parse_schema``, logical types stripped or ignored);
    ``within``: the schema it is part of (a topic's union), where the named types it refers to are defined.

    Raises:
        UnsupportedSchemaError: a union whose branch cannot be chosen by a value's Python type alone
            (two branches accepting the same type, e.g. a string and an enum, a record and a map, two
            records); use fastavro's writer for such a schema.
    """
    named: dict[str, Any] = {}
    collect_named(within, named, keep_first=True)
    collect_named(schema, named, keep_first=True)  # a type defined inside and referenced by name after
    compiled: dict[str, Writer] = {}
    return _compile(schema, named, compiled)


def _compile(schema: Any, named: dict[str, Any], compiled: dict[str, Writer]) -> Writer:
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return _PRIMITIVES[schema]
        if schema not in named:
            raise UnsupportedSchemaError(f"unknown named type {schema!r}")
        if schema in compiled:
            return compiled[schema]
        if _STARTED + schema not in compiled:
            return _compile(named[schema], named, compiled)
        # a reference to a named type compiled (or being compiled: a recursive type) elsewhere
        return lambda out, value: compiled[schema](out, value)
    if isinstance(schema, list):
        return _compile_union(schema, named, compiled)
    kind = schema["type"]
    if kind in _PRIMITIVES:
        return _PRIMITIVES[kind]
    if not isinstance(kind, str) or kind in named:  # {"type": <a schema>}
        return _compile(kind, named, compiled)
    name = schema.get("name")
    if name is not None and (name in compiled or _STARTED + name in compiled):
        return _compile(name, named, compiled)  # its definition met again (from a union's check, a reference)
    if name is not None:
        named[name] = schema
        compiled[_STARTED + name] = _refused  # being compiled: a reference to it from inside is deferred
    if kind == "record":
        writer = _compile_record(schema, named, compiled)
    elif kind == "enum":
        index = {symbol: i for i, symbol in enumerate(schema["symbols"])}

        def writer(out: bytearray, value: Any) -> None:
            if type(value) is not str:
                raise TypeError(f"expected an enum symbol, got {type(value).__name__}")
            _long(out, index[value])

    elif kind == "fixed":
        size = int(schema["size"])

        def writer(out: bytearray, value: Any) -> None:
            if type(value) is not bytes or len(value) != size:
                raise TypeError(f"expected {size} bytes")
            out += value

    elif kind == "array":
        items = _compile(schema["items"], named, compiled)

        def writer(out: bytearray, value: Any) -> None:
            if type(value) is not list and type(value) is not tuple:
                raise TypeError(f"expected an array, got {type(value).__name__}")
            if value:
                _long(out, len(value))
                for item in value:
                    items(out, item)
            out.append(0)

    elif kind == "map":
        writer = _compile_map(schema, named, compiled)

    else:
        raise UnsupportedSchemaError(f"unknown type {kind!r}")
    if name is not None:
        compiled[name] = writer
    return writer


_NO_DEFAULT = object()
_PROLOGUE = "\x00prologue"
"""The key in a generated writer's ``env`` of the lines it starts with (locals set once per call)."""
_STARTED = "\x00started:"
"""Prefix of the marker entries in ``compiled`` of the named types being compiled (no Avro name has it)."""


def _refused(out: bytearray, value: Any) -> None:
    raise TypeError("not compiled")


def _compile_record(schema: dict[str, Any], named: dict[str, Any], compiled: dict[str, Writer]) -> Writer:
    """A record's writer as one generated function: its fields written inline (no call per value), and
    so are the records, arrays and maps inside it and their fields, down to a reference to a record
    being written further out (a recursive type), which calls its compiled writer."""
    prologue: list[str] = []
    env: dict[str, Any] = {"_NO_DEFAULT": _NO_DEFAULT, "_DOUBLE": _DOUBLE, "_FLOAT": _FLOAT, _PROLOGUE: prologue}
    inlining = frozenset({schema["name"]}) if schema.get("name") is not None else frozenset()
    body = _inline_record(schema, "f", "    ", env, named, compiled, inlining)
    lines = ["def write_record(out, v):", *("    " + line for line in prologue), *body]
    del env[_PROLOGUE]
    namespace: dict[str, Any] = dict(env)
    exec("\n".join(lines), namespace)  # noqa: S102 - code generated from the schema alone
    writer: Writer = namespace["write_record"]
    return writer


def _inline_record(
    schema: dict[str, Any],
    key: str,
    pad: str,
    env: dict[str, Any],
    named: dict[str, Any],
    compiled: dict[str, Writer],
    inlining: frozenset[str],
    looped: bool = False,
) -> list[str]:
    """Lines writing the record ``v`` (of ``schema``) to ``out``; ``key`` names what they put in ``env``
    and the local names they use (unique within the generated function)."""
    code = [
        "if type(v) is not dict:",
        "    raise TypeError('expected a record, got ' + type(v).__name__)",
        f"{key}_get = v.get",
    ]
    for i, field in enumerate(schema["fields"]):
        field_type = field["type"]
        if "default" in field:
            default = field["default"]
        elif isinstance(field_type, list) and "null" in field_type:
            default = None  # fastavro writes a missing optional field as null
        else:
            default = _NO_DEFAULT
        env[f"{key}{i}_d"] = default
        code.append(f"v = {key}_get({field['name']!r}, {key}{i}_d)")
        if default is _NO_DEFAULT:
            code.append("if v is _NO_DEFAULT:")
            code.append(f"    raise ValueError({'no value and no default for ' + field['name']!r})")
        code += _inline(field_type, f"{key}{i}", "", env, named, compiled, inlining, looped)
    return [pad + line for line in code]


def _compile_map(schema: dict[str, Any], named: dict[str, Any], compiled: dict[str, Writer]) -> Writer:
    """A map's writer as one generated function: its keys and values written inline, as a map inside a
    record is (no call per entry), down to a reference to a record being written further out."""
    prologue: list[str] = []
    env: dict[str, Any] = {"_NO_DEFAULT": _NO_DEFAULT, "_DOUBLE": _DOUBLE, "_FLOAT": _FLOAT, _PROLOGUE: prologue}
    body = _inline(schema, "m", "    ", env, named, compiled, frozenset())
    lines = ["def write_map(out, v):", *("    " + line for line in prologue), *body]
    del env[_PROLOGUE]
    namespace: dict[str, Any] = dict(env)
    exec("\n".join(lines), namespace)  # noqa: S102 - code generated from the schema alone
    writer: Writer = namespace["write_map"]
    return writer


def _resolve(schema: Any, named: dict[str, Any]) -> Any:
    """``schema`` with a primitive in a dict (``{"type": "long"}``) replaced by its name, and a named
    type's name (enum, record, fixed) by its definition."""
    if isinstance(schema, dict) and isinstance(schema.get("type"), str) and schema["type"] in _PRIMITIVES:
        return schema["type"]
    if isinstance(schema, str) and schema not in _PRIMITIVES and schema in named:
        return named[schema]
    return schema


_VARINT = [
    "n = (v << 1) ^ (v >> 63)",
    "while n > 127:",
    "    out.append((n & 127) | 128)",
    "    n >>= 7",
    "out.append(n)",
]


def _inline(
    schema: Any,
    key: str,
    pad: str,
    env: dict[str, Any],
    named: dict[str, Any],
    compiled: dict[str, Writer],
    inlining: frozenset[str],
    looped: bool = False,
) -> list[str]:
    """Lines writing ``v`` (of ``schema``) to ``out``; ``key`` names what they put in ``env`` and the local
    names they use; ``inlining``: the records being written further out (a reference to one is a call);
    ``looped``: written once per item of an array or map (a long there keeps its last bytes, see
    :data:`_PROLOGUE`)."""
    reference, schema = schema, _resolve(schema, named)
    code: list[str]
    if schema == "string":
        code = [
            "if type(v) is not str:",
            "    raise TypeError('expected a string, got ' + type(v).__name__)",
            "b = v.encode()",
            "n = len(b) << 1",
            "while n > 127:",
            "    out.append((n & 127) | 128)",
            "    n >>= 7",
            "out.append(n)",
            "out += b",
        ]
    elif schema in ("long", "int"):
        low, high = (_LONG_MIN, _LONG_MAX) if schema == "long" else (_INT_MIN, _INT_MAX)
        code = [
            f"if type(v) is not int or not {low} <= v <= {high}:",
            f"    raise TypeError('expected a {schema}, got ' + type(v).__name__)",
        ]
        if looped:  # the items of one value often repeat it (a Write's fields share their updated_at)
            env[_PROLOGUE].append(f"{key}_last = None")
            code += [
                f"if v == {key}_last:",
                f"    out += {key}_bytes",
                "else:",
                f"    {key}_last = v",
                f"    {key}_start = len(out)",
                *("    " + line for line in _VARINT),
                f"    {key}_bytes = out[{key}_start:]",
            ]
        else:
            code += _VARINT
    elif schema == "boolean":
        code = [
            "if type(v) is not bool:",
            "    raise TypeError('expected a boolean, got ' + type(v).__name__)",
            "out.append(1 if v else 0)",
        ]
    elif schema == "null":
        code = ["if v is not None:", "    raise TypeError('expected null, got ' + type(v).__name__)"]
    elif isinstance(schema, dict) and schema.get("type") == "enum":
        symbols = {}
        for i, symbol in enumerate(schema["symbols"]):
            header = bytearray()
            _long(header, i)
            symbols[symbol] = bytes(header)
        env[f"{key}_symbols"] = symbols
        code = [
            "if type(v) is not str:",
            "    raise TypeError('expected an enum symbol, got ' + type(v).__name__)",
            f"out += {key}_symbols[v]",
        ]
    elif isinstance(schema, list):
        code = _inline_union(schema, key, env, named, compiled, inlining, looped)
    elif isinstance(schema, dict) and schema.get("type") == "record" and schema.get("name") not in inlining:
        within = inlining | {str(schema["name"])} if schema.get("name") is not None else inlining
        code = _inline_record(schema, key, "", env, named, compiled, within, looped)
    elif isinstance(schema, dict) and schema.get("type") == "array":
        code = [
            "if type(v) is not list and type(v) is not tuple:",
            "    raise TypeError('expected an array, got ' + type(v).__name__)",
            "if v:",
            f"    {key}_items = v",
            "    v = len(v)",
            *("    " + line for line in _VARINT),
            f"    for v in {key}_items:",
            *_inline(schema["items"], f"{key}i", "        ", env, named, compiled, inlining, looped=True),
            "out.append(0)",
        ]
    elif isinstance(schema, dict) and schema.get("type") == "map":
        code = [
            "if type(v) is not dict:",
            "    raise TypeError('expected a map, got ' + type(v).__name__)",
            "if v:",
            f"    {key}_items = v",
            "    v = len(v)",
            *("    " + line for line in _VARINT),
            f"    for {key}_k, v in {key}_items.items():",
            f"        if type({key}_k) is not str:",
            f"            raise TypeError('expected a string, got ' + type({key}_k).__name__)",
            f"        b = {key}_k.encode()",
            "        n = len(b) << 1",
            "        while n > 127:",
            "            out.append((n & 127) | 128)",
            "            n >>= 7",
            "        out.append(n)",
            "        out += b",
            *_inline(schema["values"], f"{key}v", "        ", env, named, compiled, inlining, looped=True),
            "out.append(0)",
        ]
    else:  # a record being written further out (by its name: a recursive type), a fixed
        env[f"{key}_write"] = _compile(reference, named, compiled)
        code = [f"{key}_write(out, v)"]
    return [pad + line for line in code]


def _inline_union(
    schema: list[Any],
    key: str,
    env: dict[str, Any],
    named: dict[str, Any],
    compiled: dict[str, Writer],
    inlining: frozenset[str],
    looped: bool,
) -> list[str]:
    _compile_union(schema, named, compiled)  # raises for a union no Python type decides
    code = ["t = type(v)"]
    claimed: set[type] = set()
    keyword = "if"
    for index, branch in enumerate(schema):
        header = bytearray()
        _long(header, index)
        for python_type in _BRANCH_TYPES[_kind(branch, named)]:
            if python_type in claimed:
                continue
            claimed.add(python_type)
            env[f"{key}_t{index}_{python_type.__name__}"] = python_type
            code.append(f"{keyword} t is {key}_t{index}_{python_type.__name__}:")
            keyword = "elif"
            code.append(f"    out += {bytes(header)!r}")
            if python_type is dict:
                code.append("    if '-type' in v:")
                code.append("        raise TypeError('a record naming its type: left to fastavro')")
            code += _inline(branch, f"{key}_{index}", "    ", env, named, compiled, inlining, looped)
    code.append("else:")
    code.append("    raise TypeError('no branch of the union takes a ' + t.__name__)")
    return code


def _compile_union(schema: list[Any], named: dict[str, Any], compiled: dict[str, Writer]) -> Writer:
    branches: list[tuple[tuple[type, ...], bytes, Writer]] = []
    claimed: dict[type, str] = {}
    for index, branch in enumerate(schema):
        writer = _compile(branch, named, compiled)
        kind = _kind(branch, named)
        accepted = _BRANCH_TYPES.get(kind)
        if accepted is None:
            raise UnsupportedSchemaError(f"a union of a {kind}")
        for python_type in accepted:
            earlier = claimed.get(python_type)
            # int and long, or float and double, after each other: fastavro's first valid branch
            # depends on the value (range, precision); leave such unions to fastavro
            if earlier is not None and not (python_type is int and {earlier, kind} <= {"float", "double", "long"}):
                raise UnsupportedSchemaError(f"a union of {earlier} and {kind} (both take {python_type.__name__})")
            claimed.setdefault(python_type, kind)
        header = bytearray()
        _long(header, index)
        branches.append((accepted, bytes(header), writer))
    if "float" in (_kind(b, named) for b in schema):
        raise UnsupportedSchemaError("a union with a float branch (fastavro prefers a later double)")
    chosen = tuple(branches)

    def write_union(out: bytearray, value: Any) -> None:
        kind = type(value)
        if kind is dict and "-type" in value:
            raise TypeError("a record naming its type: left to fastavro")
        for accepted, header, writer in chosen:
            if kind in accepted:
                out += header
                writer(out, value)
                return
        raise TypeError(f"no branch of the union takes a {kind.__name__}")

    return write_union


def write_like_fastavro(writer: Writer, schema: Any, value: Any, prefix: bytes = b"") -> bytes:
    """``prefix`` and the Avro binary of ``value``: ``writer``'s (compiled from ``schema``) when it
    accepts the value, else whatever ``fastavro.schemaless_writer`` makes of it (bytes or an exception)."""
    out = bytearray(prefix)
    try:
        writer(out, value)
    except Exception:  # noqa: BLE001 - refused: fastavro decides (and raises its own error)
        buf = io.BytesIO()
        buf.write(prefix)
        fastavro.schemaless_writer(buf, schema, value)
        return buf.getvalue()
    return bytes(out)
