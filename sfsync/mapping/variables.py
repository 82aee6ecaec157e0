"""``${variable}`` substitution in a mapping file, and variable values given as settings.

A file's ``variables:`` may refer to each other (``"${prefix}Member_Id__c"``); values given from
outside (the ``SFSYNC_MAPPING_VARS`` setting, ``--set``) override the file's before anything is
substituted. ``${name}`` is then replaced anywhere else in the file, keys and CEL text included; a
value that is only ``${name}`` keeps the variable's YAML type (``enabled: ${activity_tasks}`` gives a
boolean). An unknown or circular reference is a problem, reported with its line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping as MappingABC
from typing import Any

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_variables(value: Any) -> dict[str, str]:
    """Variable values from a dict, a JSON object (``{"prefix": "Acme_"}``) or ``key=value[,key=value...]``
    (``prefix=Acme_,member_object=Lead``); None or ``""``: none. Raises ValueError naming what is wrong."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    if not isinstance(value, str):
        raise ValueError("expected a JSON object or key=value[,key=value...]")
    text = value.strip()
    if text.startswith("{"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a JSON object: {exc.msg}") from None
        if not isinstance(loaded, dict):
            raise ValueError("expected a JSON object")
        return {str(k): str(v) for k, v in loaded.items()}
    out: dict[str, str] = {}
    for item in text.split(","):
        name, sep, val = item.strip().partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected key=value, got {item.strip()!r}")
        out[name.strip()] = val.strip()
    return out


def resolve_variables(
    raw: MappingABC[str, Any], overrides: MappingABC[str, Any], problems: list[str], source: str
) -> dict[str, Any]:
    """The file's variables (``raw``) with ``overrides`` over them, references between them resolved;
    an unresolved or circular reference is appended to ``problems``."""
    values: dict[str, Any] = {**raw, **overrides}
    for _ in range(5):  # variables may refer to variables (e.g. "${prefix}Member_Id__c")
        changed = False
        for name, value in values.items():
            if isinstance(value, str) and _VARIABLE.search(value):
                new = substitute(value, values, [], source, (), {})
                changed |= new != value
                values[name] = new
        if not changed:
            break
    for name, value in values.items():
        if isinstance(value, str) and _VARIABLE.search(value):
            problems.append(f"{source}: variables.{name}: unresolved or circular reference in {value!r}")
    return values


def substitute(
    value: Any,
    variables: MappingABC[str, Any],
    problems: list[str],
    source: str,
    path: tuple[str | int, ...],
    lines: dict[tuple[str | int, ...], int],
    *,
    as_text: bool = False,
) -> Any:
    """``value`` (any YAML value; dicts and lists recursively, keys too) with ``${name}`` replaced by
    ``variables[name]``; an unknown name stays as written and is appended to ``problems`` with its line
    (``path`` is where ``value`` is in the file, ``lines`` the line of each path). A value that is only
    ``${name}`` keeps the variable's type, unless ``as_text`` (keys: a key is text, whatever the variable
    holds)."""
    if isinstance(value, dict):
        return {
            substitute(k, variables, problems, source, path, lines, as_text=True): substitute(
                v, variables, problems, source, (*path, k), lines
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute(v, variables, problems, source, (*path, i), lines) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    whole = _VARIABLE.fullmatch(value)
    if whole and whole.group(1) in variables and not as_text:
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
