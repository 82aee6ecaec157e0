"""Random values that fit an Avro schema (storage form), for tests comparing codecs with fastavro."""

from __future__ import annotations

import math
import random
from typing import Any

from sfsync.serde.schema import collect_named

__all__ = ["AvroValues", "named_types"]

_LONGS = [0, 1, -1, 63, 64, -64, -65, 8191, 8192, 2**31 - 1, -(2**31), 2**31, 1772357400123, 2**63 - 1, -(2**63)]
_INTS = [0, 1, -1, 63, 64, -65, 300, 2**31 - 1, -(2**31)]
_DOUBLES = [0.0, -0.0, 1.5, -2.25, 1e-300, 1.7976931348623157e308, math.inf, -math.inf, 3, -7]
_STRINGS = ["", "a", "Ada Lovelace", "é😀 ünïcödé", "x" * 64, "y" * 200, "line\nbreak", "\x00nul"]
_UUIDS = ["0b6f3f4e-5f1c-4b8e-9a57-1f2e3d4c5b6a", "00000000-0000-0000-0000-000000000000"]


class AvroValues:
    """Random values that fit a storage-form (parsed) schema."""

    def __init__(self, seed: int, named: dict[str, Any]) -> None:
        self.rng = random.Random(seed)
        self.named = named

    def of(self, schema: Any, depth: int = 0) -> Any:
        rng = self.rng
        if isinstance(schema, list):
            return self.of(rng.choice(schema), depth)
        if isinstance(schema, str):
            if schema in self.named:
                return self.of(self.named[schema], depth)
            schema = {"type": schema}
        kind = schema["type"]
        if not isinstance(kind, str) or kind in self.named:
            return self.of(kind, depth)
        if kind == "null":
            return None
        if kind == "boolean":
            return rng.random() < 0.5
        if kind == "int":
            return rng.choice([*_INTS, rng.randint(-(2**31), 2**31 - 1)])
        if kind == "long" and schema.get("logicalType") == "timestamp-millis":
            return rng.choice([0, 1772357400123, -1, 253402300799999, rng.randint(0, 2**41)])
        if kind == "string" and schema.get("logicalType") == "uuid":
            return rng.choice(_UUIDS)
        if kind == "long":
            return rng.choice([*_LONGS, rng.randint(-(2**63), 2**63 - 1)])
        if kind in ("float", "double"):
            return rng.choice([*_DOUBLES, rng.uniform(-1e6, 1e6)])
        if kind == "string":
            return rng.choice([*_STRINGS, "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 40)))])
        if kind == "bytes":
            return bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        if kind == "fixed":
            return bytes(rng.randrange(256) for _ in range(schema["size"]))
        if kind == "enum":
            return rng.choice(schema["symbols"])
        if kind == "array":
            return [self.of(schema["items"], depth + 1) for _ in range(rng.choice([0, 1, 2, 5]) if depth < 4 else 0)]
        if kind == "map":
            count = rng.choice([0, 1, 3]) if depth < 4 else 0
            return {rng.choice(_STRINGS) + str(i): self.of(schema["values"], depth + 1) for i in range(count)}
        if kind == "record":
            self.named.setdefault(schema["name"], schema)
            out = {}
            for field in schema["fields"]:
                optional = "default" in field or (isinstance(field["type"], list) and "null" in field["type"])
                if optional and rng.random() < 0.15:
                    continue  # left out: its default (or null) is written
                out[field["name"]] = self.of(field["type"], depth + 1)
            return out
        raise AssertionError(f"no generator for {kind}")


def named_types(schema: Any, out: dict[str, Any]) -> dict[str, Any]:
    """``out`` with every named type defined in ``schema`` (the first definition of a name kept)."""
    collect_named(schema, out, keep_first=True)
    return out
