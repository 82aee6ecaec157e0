"""Recorded Salesforce responses, kept in the repository under ``tests/fixtures/salesforce`` (see its MANIFEST.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["RECORDED", "recorded_json", "recorded_text"]

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "salesforce"
"""The folder of recorded responses (``<name>.json``) and request bodies (``<name>.request.json``)."""


def recorded_text(name: str) -> str:
    """The recorded file ``name`` as text (a missing file is an error, never a skip)."""
    return (RECORDED / name).read_text()


def recorded_json(name: str) -> Any:
    """The recorded JSON body ``name``, parsed."""
    return json.loads(recorded_text(name))
