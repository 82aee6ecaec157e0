"""Reading a mapping file: YAML, ``${variable}`` substitution (:mod:`sfsync.mapping.variables`) and the
pydantic shape (:mod:`sfsync.mapping.model`), every problem reported at once with its line
(:class:`~sfsync.mapping.errors.MappingError`). The shipped default mapping is ``default.yaml``
beside this module (:data:`DEFAULT_MAPPING_FILE`); :func:`json_schema` describes the file as written.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sfsync.mapping.errors import MappingError
from sfsync.mapping.model import MappingFile
from sfsync.mapping.variables import resolve_variables, substitute

DEFAULT_MAPPING_FILE = Path(__file__).with_name("default.yaml")
MAX_DEPTH = 64
"""How deeply a mapping file's collections may nest (a real one: under 10); deeper is refused, before
anything reads it recursively."""


def _depth(data: Any) -> int:
    """How deeply ``data``'s lists and dicts nest (0: a scalar), without recursion."""
    deepest, todo = 0, [(data, 0)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            if depth + 1 > MAX_DEPTH:
                return depth + 1
            deepest = max(deepest, depth + 1)
            todo.extend((child, depth + 1) for child in (value.values() if isinstance(value, dict) else value))
    return deepest


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


def parse_mappings(
    text: str, source: str = "<mappings>", *, variables: MappingABC[str, Any] | None = None
) -> MappingFile:
    """Parse a mapping file's text; ``variables`` override the file's. Raises :class:`MappingError`."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(source, [f"not valid YAML: {exc}"]) from None
    except RecursionError:  # PyYAML reads nested collections recursively
        raise MappingError(source, [f"nested deeper than {MAX_DEPTH} levels"]) from None
    if _depth(data) > MAX_DEPTH:
        raise MappingError(source, [f"nested deeper than {MAX_DEPTH} levels"])
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
    resolved = resolve_variables(raw_vars, variables or {}, problems, source)
    body = {k: v for k, v in data.items() if k != "variables"}
    substituted = substitute(body, resolved, problems, source, (), lines)
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
    model.locate(source, lines)
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
