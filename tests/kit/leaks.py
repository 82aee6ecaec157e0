"""Looking for secrets where none may be (pure): the secret values a test knows, each named, and the texts it
gathered (worker logs, topic records, ``/metrics`` pages). The integration suite's ``secrets_audit`` fixture
gathers both; this module only finds one in the other.

A secret is looked for as it is and as it would be written escaped in JSON or a URL (a token in a query
string); a PEM key by each line of its body (a leak of it shows its lines); and, whoever issued it,
anything shaped like a Salesforce access token or a signed JWT is a leak too. A secret shorter than
:data:`MIN_SECRET_CHARS` is refused: it would be found by chance (a test must use distinctive values).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["MIN_SECRET_CHARS", "SHAPES", "Leak", "Secrets"]

MIN_SECRET_CHARS = 8

SHAPES: dict[str, re.Pattern[bytes]] = {
    "something shaped like a Salesforce access token": re.compile(rb"00D\w{12,15}![\w.]{20,}"),
    "something shaped like a signed JWT": re.compile(rb"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{16,}"),
}
"""Secrets found by their shape, whoever issued them (the values are not known)."""

_CONTEXT = 60


@dataclass(frozen=True)
class Leak:
    """A secret found: what it is (never its value), where, and the text around it with every secret in
    it replaced by what it is."""

    secret: str
    where: str
    context: str

    def __str__(self) -> str:
        return f"{self.secret} in {self.where}: ...{self.context}..."


class Secrets:
    """The secret values a test knows, each with what it is (:meth:`add`, :meth:`add_pem`); :meth:`find`
    looks for them, and for :data:`SHAPES`, in texts."""

    def __init__(self) -> None:
        self._labels: dict[bytes, str] = {}
        self._pattern: re.Pattern[bytes] | None = None

    def __len__(self) -> int:
        """How many secret values are known (not counting the forms each is looked for in)."""
        return len(set(self._labels.values()))

    def add(self, label: str, value: str) -> None:
        """``value`` is secret; ``label`` says what it is ("refresh token of connection org-a").

        Raises:
            ValueError: ``value`` is shorter than :data:`MIN_SECRET_CHARS` (it would be found by chance).
        """
        if len(value) < MIN_SECRET_CHARS:
            raise ValueError(
                f"{label}: {len(value)} characters, too short to look for (at least {MIN_SECRET_CHARS}): "
                "give the test a distinctive value"
            )
        forms = {value, json.dumps(value)[1:-1], urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
        for form in forms:
            self._labels.setdefault(form.encode(), label)
        self._pattern = None

    def add_pem(self, label: str, pem: str) -> None:
        """A PEM ``pem`` (a private key) is secret: each line of its body is looked for."""
        lines = [line.strip() for line in pem.strip().splitlines() if line.strip() and not line.startswith("-----")]
        if not lines:
            raise ValueError(f"{label}: not a PEM")
        for number, line in enumerate(lines, 1):
            if len(line) >= MIN_SECRET_CHARS:
                self.add(f"{label} (line {number} of its body)", line)

    def find(self, sources: Iterable[tuple[str, bytes | str]]) -> list[Leak]:
        """Every secret found in ``sources`` (``(where, text)``), in their order."""
        leaks: list[Leak] = []
        for where, text in sources:
            data = text.encode("utf-8", "replace") if isinstance(text, str) else text
            for label, match in self._matches(data):
                leaks.append(Leak(label, where, self._context(data, match)))
        return leaks

    def _matches(self, data: bytes) -> list[tuple[str, re.Match[bytes]]]:
        """Known values, then shapes where no known value was found."""
        known = self._known()
        found = [(self._labels[m.group()], m) for m in known.finditer(data)] if known is not None else []
        spans = [m.span() for _, m in found]
        for label, shape in SHAPES.items():
            for match in shape.finditer(data):
                if not any(start < match.end() and match.start() < end for start, end in spans):
                    found.append((label, match))
        return found

    def _known(self) -> re.Pattern[bytes] | None:
        if self._pattern is None and self._labels:
            longest_first = sorted(self._labels, key=len, reverse=True)
            self._pattern = re.compile(b"|".join(re.escape(form) for form in longest_first))
        return self._pattern

    def _context(self, data: bytes, match: re.Match[bytes]) -> str:
        around = data[max(0, match.start() - _CONTEXT) : match.end() + _CONTEXT]
        shown = around.decode("utf-8", "replace")
        for form, label in sorted(self._labels.items(), key=lambda item: len(item[0]), reverse=True):
            shown = shown.replace(form.decode(), f"<{label}>")
        for label, shape in SHAPES.items():
            shown = re.sub(shape.pattern.decode(), f"<{label}>", shown)
        return shown.replace("\n", "\\n")
