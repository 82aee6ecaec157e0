"""``sfsync.mapping``'s public surface: ``__all__`` is sorted the way ruff sorts it (RUF022: constants,
then classes, then functions), names every public member of the package, and each name resolves
(httpx's test_exported_members, for a package whose submodules hold the code)."""

from __future__ import annotations

import importlib
import re
import types

import sfsync.mapping


def isort_style(name: str) -> tuple[int, list[int | str]]:
    """RUF022's order: SCREAMING_SNAKE_CASE, then CamelCase, then the rest; natural order in each."""
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def test_all_is_sorted_and_names_every_public_member() -> None:
    exported = sfsync.mapping.__all__
    assert exported == sorted(exported, key=isort_style)
    public = [
        name
        for name, value in vars(sfsync.mapping).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    ]
    assert sorted(public, key=isort_style) == exported


def test_every_exported_name_resolves_to_what_its_submodule_defines() -> None:
    for name in sfsync.mapping.__all__:
        value = getattr(sfsync.mapping, name)
        home = getattr(value, "__module__", None)
        if home is not None and home.startswith("sfsync.mapping."):
            assert getattr(importlib.import_module(home), name) is value, name
