"""SOQL and SOSL text that is safe by construction.

Values reach a query only through :func:`literal` (escaped per the SOQL reserved-characters
rules) and names only after :func:`field_name` accepted them, so the builder never concatenates
an unescaped value::

    q = (select("Id", "Email").from_("Contact")
         .where("Email", "IN", emails)
         .where("SystemModstamp", ">=", since)
         .order_by("SystemModstamp").order_by("Id").limit(200))
    str(q)   # SELECT Id, Email FROM Contact WHERE Email IN ('a@x.org', ...) AND ...

Long ``IN`` lists are split by :func:`chunk_in` so each query stays under the URL limits.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal
from urllib.parse import quote

from sfsync.time import is_aware

MAX_QUERY_URL_CHARS = 16_000
"""Budget for an URL-encoded query string sent with GET (Salesforce answers 414 past ~16 KB)."""

_SOQL_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_SOQL_ESCAPE_RE = re.compile("|".join(re.escape(c) for c in _SOQL_ESCAPES))
_LIKE_ESCAPE_RE = re.compile(r"[%_]")
_ENCODED_SEPARATOR = len(quote(", ", safe=""))
_SOSL_RESERVED = set("?&|!{}[]()^~*:\\\"'+-")
_SOSL_OPERATORS = frozenset({"and", "or", "not"})
_SOSL_WORD = re.compile(r"\S+")

_IDENT = r"[A-Za-z][A-Za-z0-9_]*"
_PATH = rf"{_IDENT}(?:\.{_IDENT})*"
_FIELD_RE = re.compile(_PATH)  # matched whole (fullmatch): "$" would let a trailing newline through
_AGGREGATE_RE = re.compile(
    rf"(?:(?:COUNT|COUNT_DISTINCT|SUM|AVG|MIN|MAX|CALENDAR_YEAR|CALENDAR_MONTH|DAY_ONLY|toLabel|FORMAT|"
    rf"convertCurrency)\(\s*{_PATH}\s*\)|COUNT\(\s*\))(?:\s+{_IDENT})?",
    re.IGNORECASE,
)

Scalar = str | int | float | Decimal | bool | date | datetime | None
Operator = Literal["=", "!=", "<", "<=", ">", ">=", "LIKE", "IN", "NOT IN", "INCLUDES", "EXCLUDES"]
_OPERATORS = frozenset({"=", "!=", "<", "<=", ">", ">=", "LIKE", "IN", "NOT IN", "INCLUDES", "EXCLUDES"})


def escape(value: str) -> str:
    """Escape a string for use inside a SOQL quoted literal (without the quotes)."""
    return _SOQL_ESCAPE_RE.sub(lambda m: _SOQL_ESCAPES[m.group(0)], value)


def quote_string(value: str) -> str:
    """A quoted, escaped SOQL string literal: ``Bob's`` → ``'Bob\\'s'``."""
    return f"'{escape(value)}'"


def like_pattern(value: str, *, prefix: bool = False, suffix: bool = False) -> str:
    """A LIKE literal matching ``value`` verbatim (``%`` and ``_`` escaped), with optional wildcards.

    ``like_pattern("50%", suffix=True)`` → ``'50\\%%'`` (starts with "50%").
    """
    body = _LIKE_ESCAPE_RE.sub(lambda m: "\\" + m.group(0), escape(value))
    return f"'{'%' if prefix else ''}{body}{'%' if suffix else ''}'"


def format_date(value: date) -> str:
    """A SOQL date literal (unquoted): ``2024-01-31``."""
    return value.strftime("%Y-%m-%d") if not isinstance(value, datetime) else format_datetime(value)


def format_datetime(value: datetime) -> str:
    """A SOQL datetime literal in UTC (unquoted): ``2024-01-31T12:00:00Z`` (``.123Z`` with millis).

    Naive datetimes are refused: Salesforce stores UTC and a guessed zone silently shifts windows.
    """
    if not is_aware(value):
        raise ValueError("SOQL datetimes must be timezone-aware")
    utc = value.astimezone(UTC)
    millis = utc.microsecond // 1000
    stamp = utc.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z" if millis else f"{stamp}Z"


@dataclass(frozen=True)
class DateLiteral:
    """A relative date literal such as ``TODAY``, ``LAST_N_DAYS:30`` (validated, rendered bare)."""

    name: str
    n: int | None = None

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Z][A-Z_]*", self.name):
            raise ValueError(f"not a SOQL date literal: {self.name!r}")
        if self.n is not None and (not isinstance(self.n, int) or self.n < 0):
            raise ValueError("date literal N must be a non-negative int")

    def __str__(self) -> str:
        return self.name if self.n is None else f"{self.name}:{self.n}"


def literal(value: Scalar | DateLiteral) -> str:
    """Render a Python value as a SOQL literal (strings quoted and escaped, dates bare)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, DateLiteral):
        return str(value)
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return format_date(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("SOQL has no literal for NaN or infinity")
        if isinstance(value, Decimal) and not value.is_finite():
            raise ValueError("SOQL has no literal for NaN or infinity")
        if isinstance(value, Decimal):
            return format(value, "f")
        # SOQL numbers have no exponent: 1e16 is written out, its shortest repr's digits exactly, as a decimal
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else f"{text}.0"
    if isinstance(value, str):
        return quote_string(value)
    raise TypeError(f"no SOQL literal for {type(value).__name__}")


def field_name(name: str) -> str:
    """Validate a field path (``Email``, ``Account.Owner.Name``, ``Ext__c``) and return it."""
    if not _FIELD_RE.fullmatch(name):
        raise ValueError(f"not a SOQL field name: {name!r}")
    return name


def _select_item(item: str) -> str:
    if _FIELD_RE.fullmatch(item) or _AGGREGATE_RE.fullmatch(item.strip()):
        return item.strip()
    raise ValueError(f"not a SOQL select item: {item!r}")


def soql_in(name: str, values: Iterable[Scalar], *, negate: bool = False) -> str:
    """``Field IN ('a', 'b')`` with each value escaped (duplicates removed, order kept)."""
    rendered = list(dict.fromkeys(literal(v) for v in values))
    if not rendered:
        raise ValueError("an IN list needs at least one value")
    op = "NOT IN" if negate else "IN"
    return f"{field_name(name)} {op} ({', '.join(rendered)})"


def chunk_values(
    values: Iterable[Scalar], *, max_chars: int = 4_000, max_items: int | None = None, encoded: bool = True
) -> Iterator[list[Scalar]]:
    """Split ``values`` into groups whose rendered IN list stays within ``max_chars`` (and ``max_items``).

    With ``encoded`` (default) the URL-encoded length is counted, since GET queries travel in the URL.
    Duplicates are dropped. A single value longer than ``max_chars`` is refused.
    """
    group: list[Scalar] = []
    size = 0
    seen: set[str] = set()
    for value in values:
        text = literal(value)
        if text in seen:
            continue
        seen.add(text)
        cost = len(quote(text, safe="")) if encoded else len(text)
        cost += _ENCODED_SEPARATOR if encoded else 2  # the ", " before it (counted for every value: safe side)
        if cost > max_chars:
            raise ValueError(f"one value alone exceeds the IN-list budget of {max_chars} chars")
        if group and (size + cost > max_chars or (max_items is not None and len(group) >= max_items)):
            yield group
            group, size = [], 0
        group.append(value)
        size += cost
    if group:
        yield group


def chunk_in(
    name: str, values: Iterable[Scalar], *, max_chars: int = 4_000, max_items: int | None = None
) -> Iterator[str]:
    """``Field IN (...)`` clauses covering ``values``, each within the length budget."""
    for group in chunk_values(values, max_chars=max_chars, max_items=max_items):
        yield soql_in(name, group)


@dataclass(frozen=True)
class Condition:
    """A WHERE condition; combine with ``&``, ``|`` and ``~``."""

    text: str

    def __and__(self, other: Condition) -> Condition:
        return Condition(f"({self.text} AND {other.text})")

    def __or__(self, other: Condition) -> Condition:
        return Condition(f"({self.text} OR {other.text})")

    def __invert__(self) -> Condition:
        return Condition(f"(NOT {self.text})")

    def __str__(self) -> str:
        return self.text


def cond(name: str, op: Operator, value: Scalar | DateLiteral | Sequence[Scalar]) -> Condition:
    """``cond("Email", "=", x)`` → ``Email = 'x'``; IN/NOT IN/INCLUDES/EXCLUDES take a sequence."""
    operator = op.upper()
    if operator not in _OPERATORS:
        raise ValueError(f"unsupported SOQL operator: {op!r}")
    if operator in {"IN", "NOT IN", "INCLUDES", "EXCLUDES"}:
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise TypeError(f"{operator} needs a sequence of values")
        if operator in {"IN", "NOT IN"}:
            return Condition(soql_in(name, value, negate=operator == "NOT IN"))
        items = [literal(v) for v in value]
        if not items:
            raise ValueError(f"{operator} needs at least one value")
        return Condition(f"{field_name(name)} {operator} ({', '.join(items)})")
    if isinstance(value, list | tuple):
        raise TypeError(f"{operator} needs a single value")
    assert not isinstance(value, Sequence) or isinstance(value, str)
    return Condition(f"{field_name(name)} {operator} {literal(value)}")


@dataclass(frozen=True)
class Query:
    """An immutable SOQL SELECT; every method returns a new query. ``str(q)`` renders it."""

    fields: tuple[str, ...]
    sobject: str | None = None
    conditions: tuple[Condition, ...] = ()
    ordering: tuple[str, ...] = ()
    row_limit: int | None = None
    row_offset: int | None = None

    def from_(self, sobject: str) -> Query:
        if not re.fullmatch(_IDENT, sobject):
            raise ValueError(f"not an sObject name: {sobject!r}")
        return replace(self, sobject=sobject)

    def where(
        self,
        condition: Condition | str,
        op: Operator | None = None,
        value: Scalar | DateLiteral | Sequence[Scalar] = None,
    ) -> Query:
        """AND a condition: ``.where(cond(...))`` or the shorthand ``.where("Email", "=", x)``."""
        if isinstance(condition, Condition):
            if op is not None:
                raise TypeError("pass either a Condition or (field, op, value)")
            return replace(self, conditions=(*self.conditions, condition))
        if op is None:
            raise TypeError("where(field, op, value) needs an operator")
        return replace(self, conditions=(*self.conditions, cond(condition, op, value)))

    def order_by(
        self, name: str, direction: Literal["ASC", "DESC"] = "ASC", nulls: Literal["FIRST", "LAST"] | None = None
    ) -> Query:
        if direction not in {"ASC", "DESC"} or nulls not in {None, "FIRST", "LAST"}:
            raise ValueError("direction must be ASC/DESC and nulls FIRST/LAST")
        term = f"{field_name(name)} {direction}" + (f" NULLS {nulls}" if nulls else "")
        return replace(self, ordering=(*self.ordering, term))

    def limit(self, n: int) -> Query:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError("LIMIT must be a non-negative int")
        return replace(self, row_limit=n)

    def offset(self, n: int) -> Query:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 2000:
            raise ValueError("OFFSET must be an int between 0 and 2000")
        return replace(self, row_offset=n)

    def build(self) -> str:
        if self.sobject is None:
            raise ValueError("a query needs from_(sobject)")
        # names were validated by select()/from_(); values only ever enter through literal()
        parts = [f"SELECT {', '.join(self.fields)} FROM {self.sobject}"]  # noqa: S608
        if self.conditions:
            parts.append("WHERE " + " AND ".join(c.text for c in self.conditions))
        if self.ordering:
            parts.append("ORDER BY " + ", ".join(self.ordering))
        if self.row_limit is not None:
            parts.append(f"LIMIT {self.row_limit}")
        if self.row_offset is not None:
            parts.append(f"OFFSET {self.row_offset}")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.build()


def select(*items: str) -> Query:
    """Start a query: ``select("Id", "Email")``, ``select("COUNT()")``, ``select("COUNT(Id) n")``."""
    if not items:
        raise ValueError("select() needs at least one field")
    return Query(fields=tuple(_select_item(i) for i in items))


def sosl_escape(term: str) -> str:
    """``term`` searched for as written: SOSL's reserved characters ``? & | ! { } [ ] ( ) ^ ~ * : \\ " ' + -``
    backslash-escaped, and the words SOSL reads as operators (``AND``, ``OR``, ``NOT``, in any case) quoted."""
    escaped = "".join("\\" + c if c in _SOSL_RESERVED else c for c in term)
    return _SOSL_WORD.sub(lambda m: f'"{m.group(0)}"' if m.group(0).lower() in _SOSL_OPERATORS else m.group(0), escaped)


SearchGroup = Literal["ALL", "NAME", "EMAIL", "PHONE", "SIDEBAR"]


def sosl_find(term: str, *, in_: SearchGroup = "ALL", returning: Sequence[tuple[str, Sequence[str]]] = ()) -> str:
    """``FIND {term} IN EMAIL FIELDS RETURNING Contact(Id, Email)`` with ``term`` escaped."""
    if in_ not in {"ALL", "NAME", "EMAIL", "PHONE", "SIDEBAR"}:
        raise ValueError(f"unknown search group {in_!r}")
    text = f"FIND {{{sosl_escape(term)}}} IN {in_} FIELDS"
    if returning:
        specs = []
        for sobject, fields in returning:
            if not re.fullmatch(_IDENT, sobject):
                raise ValueError(f"not an sObject name: {sobject!r}")
            cols = ", ".join(field_name(f) for f in fields)
            specs.append(f"{sobject}({cols})" if cols else sobject)
        text += " RETURNING " + ", ".join(specs)
    return text
