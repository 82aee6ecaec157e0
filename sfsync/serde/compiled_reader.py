"""Schema-specific Avro readers: one writer schema compiled once into a Python function that reads a
value's Avro binary from ``bytes``, giving what ``fastavro.schemaless_reader(fo, schema, None)`` gives
for it, at a fraction of the cost (fastavro's reader calls ``fo.read`` for every byte of every varint
and looks every field's type up again, value after value).

The reader takes the storage form: logical types are not converted (``logicalType`` annotations are
ignored, as in :func:`~sfsync.serde.schema.storage_schema`), so a timestamp is its long, a uuid its
string, a decimal its bytes. A record is a ``dict`` in field order, an enum its symbol, a map a
``dict``, an array a ``list``, a union the value of the branch its index names (no record names: a
schema with a union of several records is refused, :class:`UnreadableSchemaError`, and left to
fastavro, which names them). Trailing bytes are ignored, as fastavro ignores them.

Bad input raises (a :class:`ValueError`, :class:`IndexError`, ``UnicodeDecodeError``,
``struct.error``): a truncated value, a negative length or count, a union or enum index out of
range, a string that is not UTF-8. On such input fastavro may raise something else, or read
something; the caller treats any exception as an undecodable record.

How: the schema becomes the source text of one function per record type reached through recursion
(every other record, array, map, union and primitive is read inline), compiled with ``exec``. The
text holds no part of the schema: field names, enum symbols and fixed sizes are passed in as
constants, so a schema from the registry cannot inject code.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from sfsync.serde.schema import collect_named

__all__ = ["Reader", "UnreadableSchemaError", "compile_reader"]

Reader = Callable[[bytes, int], tuple[Any, int]]
"""Reads one value from ``data`` at ``pos``: (the value, the position after it)."""

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_MAX_VARINT_SHIFT = 63  # a long is at most 10 bytes of 7 bits


class UnreadableSchemaError(ValueError):
    """A schema the compiler does not read exactly as fastavro does (a union of several records, whose
    values fastavro names), or that is not a valid schema (an unknown type name)."""


def _read_long(data: bytes, pos: int) -> tuple[int, int]:
    """A zigzag varint at ``pos``: (its value, the position after it). Up to 6 bytes (an epoch-millis
    timestamp takes 6) without a loop."""
    b = data[pos]
    n = b & 0x7F
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), pos + 1
    b = data[pos + 1]
    n |= (b & 0x7F) << 7
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), pos + 2
    b = data[pos + 2]
    n |= (b & 0x7F) << 14
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), pos + 3
    b = data[pos + 3]
    n |= (b & 0x7F) << 21
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), pos + 4
    b = data[pos + 4]
    n |= (b & 0x7F) << 28
    if b < 0x80:
        return (n >> 1) ^ -(n & 1), pos + 5
    b = data[pos + 5]
    n |= (b & 0x7F) << 35
    pos += 6
    shift = 42
    while b & 0x80:
        if shift > _MAX_VARINT_SHIFT:
            raise ValueError("varint longer than 10 bytes")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
    return (n >> 1) ^ -(n & 1), pos


def _negative(what: str, n: int) -> ValueError:
    return ValueError(f"negative {what} {n}")


def _out_of_range(what: str, index: int) -> IndexError:
    return IndexError(f"{what} index {index} out of range")


class _Compiler:
    """Writes the source of the readers of one schema (see the module docstring)."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.constants: dict[str, Any] = {
            "_read_long": _read_long,
            "_negative": _negative,
            "_out_of_range": _out_of_range,
            "_double": struct.Struct("<d").unpack_from,
            "_float": struct.Struct("<f").unpack_from,
        }
        self.functions: dict[str, str] = {}
        """record full name -> the name of its function, for records read through recursion"""
        self.sources: list[str] = []
        self._counter = 0
        self._inlining: list[str] = []

    def fresh(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def constant(self, value: Any) -> str:
        name = self.fresh("C")
        self.constants[name] = value
        return name

    def resolve(self, schema: Any) -> Any:
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return schema
            found = self.named.get(schema)
            if found is None:
                raise UnreadableSchemaError(f"unknown type {schema!r}")
            return found
        if isinstance(schema, dict) and schema.get("type") in _PRIMITIVES:
            return schema["type"]  # a primitive with attributes (a logical type: read in storage form)
        return schema

    # -- code -----------------------------------------------------------------------------
    def long_into(self, target: str, pad: str) -> list[str]:
        """Lines that read a zigzag varint into ``target`` (one byte inline, longer ones by a call)."""
        b = self.fresh("b")
        return [
            f"{pad}{b} = data[pos]",
            f"{pad}if {b} < 128:",
            f"{pad}    {target} = ({b} >> 1) ^ -({b} & 1)",
            f"{pad}    pos += 1",
            f"{pad}else:",
            f"{pad}    {target}, pos = _read_long(data, pos)",
        ]

    def read(self, schema: Any, target: str, pad: str) -> list[str]:
        """Lines (indented by ``pad``) that read one value of ``schema`` into the variable ``target``."""
        node = self.resolve(schema)
        if isinstance(node, list):
            return self.union(node, target, pad)
        kind = node if isinstance(node, str) else node.get("type")
        if kind == "null":
            return [f"{pad}{target} = None"]
        if kind == "boolean":
            return [f"{pad}{target} = data[pos] != 0", f"{pad}pos += 1"]
        if kind in ("int", "long"):
            return self.long_into(target, pad)
        if kind in ("float", "double"):
            unpack, size = ("_float", 4) if kind == "float" else ("_double", 8)
            return [f"{pad}{target} = {unpack}(data, pos)[0]", f"{pad}pos += {size}"]
        if kind in ("string", "bytes"):
            n = self.fresh("n")
            end = self.fresh("e")
            decode = ".decode()" if kind == "string" else ""
            return [
                *self.long_into(n, pad),
                f"{pad}if {n} < 0:",
                f"{pad}    raise _negative('length', {n})",
                f"{pad}{end} = pos + {n}",
                f"{pad}{target} = data[pos:{end}]{decode}",
                f"{pad}pos = {end}",
            ]
        if kind == "fixed":
            size = int(node["size"])
            return [f"{pad}{target} = data[pos:pos + {size}]", f"{pad}pos += {size}"]
        if kind == "enum":
            symbols = self.constant(tuple(node["symbols"]))
            i = self.fresh("i")
            return [
                *self.long_into(i, pad),
                f"{pad}if {i} < 0:",
                f"{pad}    raise _out_of_range('enum', {i})",
                f"{pad}{target} = {symbols}[{i}]",
            ]
        if kind == "array":
            return self.blocks(target, pad, None, node["items"])
        if kind == "map":
            return self.blocks(target, pad, "string", node["values"])
        if kind == "record":
            return self.record(node, target, pad)
        raise UnreadableSchemaError(f"unknown type {kind!r}")

    def union(self, branches: list[Any], target: str, pad: str) -> list[str]:
        resolved = [self.resolve(b) for b in branches]
        if sum(1 for b in resolved if isinstance(b, dict) and b.get("type") == "record") > 1:
            raise UnreadableSchemaError("a union of several records (fastavro names them)")
        i = self.fresh("i")
        lines = self.long_into(i, pad)
        for index, branch in enumerate(branches):
            lines.append(f"{pad}{'if' if index == 0 else 'elif'} {i} == {index}:")
            lines += self.read(branch, target, pad + "    ")
        lines += [f"{pad}else:", f"{pad}    raise _out_of_range('union', {i})"]
        return lines

    def blocks(self, target: str, pad: str, key: str | None, values: Any) -> list[str]:
        """An array (``key`` None) or a map: blocks of items, each block a count (negative: a byte size follows)."""
        count, item, name, skipped = self.fresh("c"), self.fresh("x"), self.fresh("k"), self.fresh("s")
        inner = pad + "        "
        lines = [
            f"{pad}{target} = {{}}" if key is not None else f"{pad}{target} = []",
            f"{pad}while True:",
            *self.long_into(count, pad + "    "),
            f"{pad}    if {count} == 0:",
            f"{pad}        break",
            f"{pad}    if {count} < 0:",
            f"{pad}        {count} = -{count}",
            *self.long_into(skipped, pad + "        "),
            f"{pad}    for _ in range({count}):",
        ]
        if key is not None:
            lines += self.read(key, name, inner)
        lines += self.read(values, item, inner)
        lines.append(f"{inner}{target}[{name}] = {item}" if key is not None else f"{inner}{target}.append({item})")
        return lines

    def record(self, node: dict[str, Any], target: str, pad: str) -> list[str]:
        full_name = str(node["name"])
        if full_name in self._inlining:  # recursive: read through its own function
            return [f"{pad}{target}, pos = {self.function(node)}(data, pos)"]
        self._inlining.append(full_name)
        try:
            lines: list[str] = []
            parts: list[str] = []
            for fld in node["fields"]:
                var = self.fresh("v")
                lines += self.read(fld["type"], var, pad)
                parts.append(f"{self.constant(str(fld['name']))}: {var}")
        finally:
            self._inlining.pop()
        lines.append(f"{pad}{target} = {{{', '.join(parts)}}}")
        return lines

    def function(self, node: dict[str, Any]) -> str:
        """The function reading ``node`` (a record), written once."""
        full_name = str(node["name"])
        name = self.functions.get(full_name)
        if name is None:
            name = self.functions[full_name] = self.fresh("read_")
            saved, self._inlining = self._inlining, []
            try:
                self.sources.append(self.define(name, node))
            finally:
                self._inlining = saved
        return name

    def define(self, name: str, schema: Any) -> str:
        body = self.read(schema, "value", "    ")
        return "\n".join([f"def {name}(data, pos):", *body, "    return value, pos", ""])


def compile_reader(schema: Any, named: dict[str, Any] | None = None) -> Reader:
    """The reader of ``schema``, a schema parsed by ``fastavro.parse_schema`` (names are full names,
    references resolved from the types defined in it, and from ``named`` when given).

    Raises:
        UnreadableSchemaError: a union of several records, or a type name defined nowhere.
    """
    types: dict[str, Any] = dict(named or {})
    collect_named(schema, types, keep_first=True)
    compiler = _Compiler(types)
    top = compiler.fresh("read_")
    compiler.sources.append(compiler.define(top, schema))
    namespace = dict(compiler.constants)
    # The source is made of our own names only (see the module docstring): nothing of the schema is code.
    exec(compile("\n".join(compiler.sources), f"<avro reader {top}>", "exec"), namespace)  # noqa: S102
    reader = namespace[top]

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        value, end = reader(data, pos)
        if end > len(data):
            raise ValueError(f"truncated: the value needs {end - len(data)} more byte(s)")
        return value, end

    read.__doc__ = f"Reads one value of the compiled schema ({top})."
    return read
