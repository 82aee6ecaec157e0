"""The recorded Salesforce responses and their provenance: every file in tests/fixtures/salesforce has a row
in its MANIFEST.md, and every row names a file that is there."""

from __future__ import annotations

import re

from tests.kit import RECORDED

FIRST_CELL = re.compile(r"(?P<name>[\w.-]+\.json)(?P<request> \(\+ \.request\.json\))?")
"""A row's first cell: the response file, and ``(+ .request.json)`` when its request body is recorded too."""


def manifest_rows() -> list[str]:
    """The files the manifest's table names, in its order (a request body after its response)."""
    names: list[str] = []
    for line in (RECORDED / "MANIFEST.md").read_text().splitlines():
        if not line.startswith("|") or line.startswith("| File |") or set(line) <= set("|- "):
            continue
        cell = line.split("|")[1].strip()
        found = FIRST_CELL.fullmatch(cell)
        assert found is not None, f"MANIFEST.md: a row whose first cell names no file: {cell!r}"
        names.append(found["name"])
        if found["request"]:
            names.append(found["name"].removesuffix(".json") + ".request.json")
    return names


def test_every_recorded_file_has_a_manifest_row_and_every_row_names_a_file() -> None:
    listed = manifest_rows()
    present = {path.name for path in RECORDED.iterdir() if path.name != "MANIFEST.md"}
    assert len(listed) >= 30  # the table was read
    assert sorted(n for n in set(listed) if listed.count(n) > 1) == [], "rows listed twice"
    assert sorted(present - set(listed)) == [], "files without a row in MANIFEST.md"
    assert sorted(set(listed) - present) == [], "rows of MANIFEST.md naming no file"
