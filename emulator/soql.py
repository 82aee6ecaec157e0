"""SOQL for the emulated org: parse (lark, LALR), check against the schema, run over a :class:`RecordSource`.

``run_query`` answers what ``/query`` and ``/queryAll`` put in a response body before paging: ``totalSize`` and
every record (after LIMIT/OFFSET) in Salesforce's JSON shape. What it covers:

- SELECT fields, parent paths (``Account.Owner.Name``; ``null`` when the lookup is empty), child subqueries
  (``{"totalSize", "done", "records"}`` or ``null``), ``TYPEOF``, ``FIELDS(ALL|STANDARD|CUSTOM)``, ``COUNT()``,
  aggregates (COUNT, COUNT_DISTINCT, MIN, MAX, SUM, AVG) with aliases, GROUP BY, HAVING;
- WHERE with AND/OR/NOT (mixing AND and OR needs parentheses, as in Salesforce), = != <> < <= > >=, LIKE,
  IN / NOT IN (lists and semi-join subqueries), INCLUDES / EXCLUDES, date functions, every literal kind and the
  date literals (relative to ``now``, in UTC, weeks starting on Sunday);
- ORDER BY (ASC NULLS FIRST / DESC NULLS LAST by default), LIMIT, OFFSET (at most 2000), FOR ..., USING SCOPE,
  WITH ... (accepted and ignored);
- Salesforce's error codes and message layout (the query line, a caret, ``ERROR at Row:r:Column:c``).

The SOSL module reuses the parser pieces and the evaluator (:class:`Engine`).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import NUMBER_TYPES, FieldDef, ObjectDef, RecordSource, Row, to_json_value

__all__ = ["MAX_OFFSET", "Engine", "QueryResult", "normalize_id", "parse_query", "run_query", "warm_up"]

MAX_OFFSET = 2000
FIELDS_LIMIT = 200

KEYWORDS = (
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "INCLUDES",
    "EXCLUDES",
    "NULL",
    "TRUE",
    "FALSE",
    "GROUP",
    "BY",
    "HAVING",
    "ORDER",
    "ASC",
    "DESC",
    "NULLS",
    "FIRST",
    "LAST",
    "LIMIT",
    "OFFSET",
    "FOR",
    "UPDATE",
    "USING",
    "SCOPE",
    "WITH",
    "TYPEOF",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
)

# The SOQL grammar. SOSL adds its own top rule and keywords to it (see sfsync.emulator.sosl).
GRAMMAR = r"""
query: select_clause from_clause using_clause? where_clause? with_clause? group_clause? having_clause? \
       order_clause? limit_clause? offset_clause? for_clause? update_clause?

select_clause: SELECT select_item ("," select_item)*
?select_item: field_path
            | func_call alias?   -> select_func
            | "(" query ")"      -> select_sub
            | typeof_expr
alias: NAME
typeof_expr: TYPEOF field_path when_clause+ else_clause? END
when_clause: WHEN NAME THEN field_list
else_clause: ELSE field_list
field_list: field_path ("," field_path)*

from_clause: FROM object_name alias?
object_name: NAME | ORDER | GROUP
using_clause: USING SCOPE NAME
where_clause: WHERE condition
with_clause: WITH NAME
group_clause: GROUP BY group_item ("," group_item)*
?group_item: field_path | func_call
having_clause: HAVING condition
order_clause: ORDER BY order_item ("," order_item)*
order_item: (field_path | func_call) (ASC | DESC)? (NULLS (FIRST | LAST))?
limit_clause: LIMIT NUMBER
offset_clause: OFFSET NUMBER
for_clause: FOR for_option ("," for_option)*
?for_option: NAME | UPDATE
update_clause: UPDATE NAME

field_path: NAME ("." NAME)*
func_call: NAME "(" (func_arg ("," func_arg)*)? ")"
?func_arg: field_path | func_call

?condition: cond_term
          | cond_term (AND cond_term)+ -> and_cond
          | cond_term (OR cond_term)+  -> or_cond
?cond_term: NOT cond_term -> not_cond
          | "(" condition ")"
          | predicate
?predicate: operand COMP_OP value                  -> cmp
          | operand LIKE value                     -> like
          | operand IN "(" in_values ")"           -> in_
          | operand NOT IN "(" in_values ")"       -> not_in
          | operand INCLUDES "(" value_list ")"    -> includes
          | operand EXCLUDES "(" value_list ")"    -> excludes
?operand: field_path | func_call
?in_values: value_list | query
value_list: value ("," value)*
value: STRING | NUMBER | DATE | DATETIME | TRUE | FALSE | NULL | NAME (":" NUMBER)?

COMP_OP: /!=|<>|<=|>=|=|<|>/
NUMBER: /[+-]?(?:\d+(?:\.\d*)?|\.\d+)/
DATE.2: /\d{4}-\d{2}-\d{2}/
DATETIME.3: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})/i
STRING: /'(?:[^'\\]|\\.)*'/s
NAME: /[a-z_][a-z0-9_]*/i
%ignore /\s+/
"""


def keyword_terminals(words: Iterable[str]) -> str:
    """Case-insensitive keyword terminals (lark reserves them against NAME)."""
    return "\n".join(f'{w}: "{w.lower()}"i' for w in words)


@functools.cache
def _soql_parser() -> Lark:
    return Lark("start: query\n" + GRAMMAR + keyword_terminals(KEYWORDS), parser="lalr", lexer="basic")


def warm_up() -> None:
    """Build the SOQL parser now (about a second, once per process) rather than on the first query."""
    _soql_parser()


# --------------------------------------------------------------------------------------------------------------------
# AST


@dataclass(frozen=True)
class Pos:
    line: int
    column: int  # 1-based, as Salesforce reports it


@dataclass(frozen=True)
class Path:
    parts: tuple[str, ...]
    pos: Pos

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class Func:
    name: str
    args: tuple[Path | Func, ...]
    pos: Pos

    @property
    def upper(self) -> str:
        return self.name.upper()


@dataclass(frozen=True)
class SelFunc:
    func: Func
    alias: str | None


@dataclass(frozen=True)
class TypeOf:
    path: Path
    whens: tuple[tuple[str, Pos, tuple[Path, ...]], ...]
    else_fields: tuple[Path, ...] | None


@dataclass(frozen=True)
class Lit:
    kind: str  # string, number, date, datetime, bool, null, const
    value: Any
    text: str
    pos: Pos


@dataclass(frozen=True)
class Logic:
    op: str  # and / or
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class Not:
    item: Cond


@dataclass(frozen=True)
class Pred:
    kind: str  # cmp, like, in, not_in, includes, excludes
    left: Path | Func
    op: str
    values: tuple[Lit, ...]
    sub: Query | None
    pos: Pos


Cond = Logic | Not | Pred


@dataclass(frozen=True)
class Order:
    expr: Path | Func
    desc: bool
    nulls_first: bool | None


@dataclass(frozen=True)
class Query:
    select: tuple[Any, ...]  # Path | SelFunc | TypeOf | Query
    obj: str
    obj_pos: Pos
    alias: str | None = None
    where: Cond | None = None
    group_by: tuple[Path | Func, ...] = ()
    having: Cond | None = None
    order_by: tuple[Order, ...] = ()
    limit: int | None = None
    offset: int | None = None
    offset_pos: Pos | None = None
    pos: Pos = field(default=Pos(1, 1))


# --------------------------------------------------------------------------------------------------------------------
# Errors


def locate(text: str, line: int, column: int, message: str) -> str:
    """Salesforce's query-error layout: the offending line, a caret under the column, the position, the message.

    Long lines are shown from 30 characters before the error, as Salesforce does."""
    lines = text.split("\n")
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    start = max(0, column - 1 - 30)
    return f"\n{source[start:]}\n{' ' * (column - 1 - start)}^\nERROR at Row:{line}:Column:{column}\n{message}"


def syntax_error(text: str, exc: UnexpectedInput, code: str) -> ApiError:
    """A lark failure as Salesforce reports a syntax error (deterministic: the first bad token)."""
    lines = text.split("\n")
    end_line, end_col = len(lines), len(lines[-1]) + 1
    if isinstance(exc, UnexpectedCharacters):
        line, col = exc.line or 1, exc.column or 1
        at = exc.pos_in_stream if exc.pos_in_stream is not None else -1
        char = text[at] if 0 <= at < len(text) else ""
        if char == "'":
            message = f"line {end_line}:{end_col - 1} mismatched character '<EOF>' expecting '''"
            return ApiError(400, code, locate(text, end_line, end_col, message))
        return ApiError(
            400, code, locate(text, line, col, f"line {line}:{col - 1} no viable alternative at character '{char}'")
        )
    if isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        token = exc.token
        line = token.line if token.line is not None else 1
        col = token.column if token.column is not None else 1
        return ApiError(400, code, locate(text, line, col, f"unexpected token: '{token.value}'"))
    if isinstance(exc, UnexpectedToken | UnexpectedEOF):
        return ApiError(400, code, locate(text, end_line, end_col, "unexpected token: '<EOF>'"))
    return ApiError(400, code, locate(text, 1, 1, str(exc)))  # pragma: no cover - lark raises only the above


# --------------------------------------------------------------------------------------------------------------------
# Tree -> AST


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", '"': '"', "'": "'", "\\": "\\"}


class Builder:
    """Turns lark trees into the AST, checking literals (string escapes, numbers) on the way."""

    def __init__(self, text: str, code: str = "MALFORMED_QUERY") -> None:
        self.text = text
        self.code = code

    def fail(self, pos: Pos, message: str) -> ApiError:
        return ApiError(400, self.code, locate(self.text, pos.line, pos.column, message))

    @staticmethod
    def pos(token: Token) -> Pos:
        return Pos(token.line or 1, token.column or 1)

    def first_pos(self, tree: Tree[Token] | Token) -> Pos:
        if isinstance(tree, Token):
            return self.pos(tree)
        for child in tree.children:
            if isinstance(child, Token | Tree):
                return self.first_pos(child)
        return Pos(1, 1)  # pragma: no cover - every rule has a token

    def query(self, tree: Tree[Token]) -> Query:
        parts: dict[str, Tree[Token]] = {}
        for child in tree.children:
            if isinstance(child, Tree):
                parts[str(child.data)] = child
        select_items = tuple(self.select_item(c) for c in parts["select_clause"].children[1:])
        from_children = parts["from_clause"].children
        obj_token = _token(_tree(from_children[1]).children[0])
        alias = str(_token(_tree(from_children[2]).children[0])) if len(from_children) > 2 else None
        where = self.condition(parts["where_clause"].children[1]) if "where_clause" in parts else None
        group_by: tuple[Path | Func, ...] = ()
        if "group_clause" in parts:
            group_by = tuple(self.operand(c) for c in parts["group_clause"].children[2:])
        having = self.condition(parts["having_clause"].children[1]) if "having_clause" in parts else None
        order_by: tuple[Order, ...] = ()
        if "order_clause" in parts:
            order_by = tuple(self.order_item(_tree(c)) for c in parts["order_clause"].children[2:])
        limit = self.integer(_token(parts["limit_clause"].children[1])) if "limit_clause" in parts else None
        offset = offset_pos = None
        if "offset_clause" in parts:
            token = _token(parts["offset_clause"].children[1])
            offset, offset_pos = self.integer(token), self.pos(token)
        return Query(
            select=select_items,
            obj=str(obj_token),
            obj_pos=self.pos(obj_token),
            alias=alias,
            where=where,
            group_by=group_by,
            having=having,
            order_by=order_by,
            limit=limit,
            offset=offset,
            offset_pos=offset_pos,
            pos=self.first_pos(tree),
        )

    def integer(self, token: Token) -> int:
        if not re.fullmatch(r"\d+", str(token)):
            raise self.fail(self.pos(token), f"unexpected token: '{token}'")
        return int(str(token))

    def select_item(self, node: Tree[Token] | Token) -> Any:
        tree = _tree(node)
        kind = str(tree.data)
        if kind == "field_path":
            return self.path(tree)
        if kind == "select_func":
            alias = str(_token(_tree(tree.children[1]).children[0])) if len(tree.children) > 1 else None
            return SelFunc(self.func(_tree(tree.children[0])), alias)
        if kind == "select_sub":
            return self.query(_tree(tree.children[0]))
        if kind == "typeof_expr":
            path = self.path(_tree(tree.children[1]))
            whens: list[tuple[str, Pos, tuple[Path, ...]]] = []
            else_fields: tuple[Path, ...] | None = None
            for child in tree.children[2:]:
                if isinstance(child, Tree) and child.data == "when_clause":
                    type_token = _token(child.children[1])
                    whens.append((str(type_token), self.pos(type_token), self.field_list(_tree(child.children[3]))))
                elif isinstance(child, Tree) and child.data == "else_clause":
                    else_fields = self.field_list(_tree(child.children[1]))
            return TypeOf(path, tuple(whens), else_fields)
        raise self.fail(self.first_pos(tree), f"unexpected token: '{kind}'")  # pragma: no cover

    def field_list(self, tree: Tree[Token]) -> tuple[Path, ...]:
        return tuple(self.path(_tree(c)) for c in tree.children)

    def path(self, tree: Tree[Token]) -> Path:
        tokens = [_token(c) for c in tree.children]
        return Path(tuple(str(t) for t in tokens), self.pos(tokens[0]))

    def func(self, tree: Tree[Token]) -> Func:
        name = _token(tree.children[0])
        return Func(str(name), tuple(self.operand(c) for c in tree.children[1:]), self.pos(name))

    def operand(self, node: Tree[Token] | Token) -> Path | Func:
        tree = _tree(node)
        return self.path(tree) if tree.data == "field_path" else self.func(tree)

    def order_item(self, tree: Tree[Token]) -> Order:
        expr = self.operand(tree.children[0])
        words = [str(_token(c)).upper() for c in tree.children[1:]]
        desc = "DESC" in words
        nulls_first = None
        if "NULLS" in words:
            nulls_first = words[-1] == "FIRST"
        return Order(expr, desc, nulls_first)

    def condition(self, node: Tree[Token] | Token) -> Cond:
        tree = _tree(node)
        kind = str(tree.data)
        if kind in ("and_cond", "or_cond"):
            items = tuple(self.condition(c) for c in tree.children if isinstance(c, Tree))
            return Logic("and" if kind == "and_cond" else "or", items)
        if kind == "not_cond":
            return Not(self.condition(tree.children[1]))
        left = self.operand(tree.children[0])
        pos = left.pos
        if kind == "cmp":
            return Pred("cmp", left, str(tree.children[1]), (self.value(_tree(tree.children[2])),), None, pos)
        if kind == "like":
            return Pred("like", left, "LIKE", (self.value(_tree(tree.children[2])),), None, pos)
        values_node = _tree(tree.children[-1])
        sub = None
        values: tuple[Lit, ...] = ()
        if values_node.data == "query":
            sub = self.query(values_node)
        else:
            values = tuple(self.value(_tree(c)) for c in values_node.children)
        return Pred(kind.rstrip("_"), left, kind.rstrip("_").upper(), values, sub, pos)

    def value(self, tree: Tree[Token]) -> Lit:
        token = _token(tree.children[0])
        pos = self.pos(token)
        text = str(token)
        if token.type == "STRING":
            return Lit("string", self.unescape(text, pos), text, pos)
        if token.type == "NUMBER":
            number: int | float = float(text) if any(c in text for c in ".eE") else int(text)
            return Lit("number", number, text, pos)
        if token.type == "DATE":
            try:
                return Lit("date", dt.date.fromisoformat(text), text, pos)
            except ValueError:
                raise self.fail(
                    pos, f"line {pos.line}:{pos.column - 1} no viable alternative at character '{text[0]}'"
                ) from None
        if token.type == "DATETIME":
            try:
                return Lit("datetime", parse_soql_datetime(text), text, pos)
            except ValueError:
                raise self.fail(
                    pos, f"line {pos.line}:{pos.column - 1} no viable alternative at character '{text[0]}'"
                ) from None
        if token.type in ("TRUE", "FALSE"):
            return Lit("bool", token.type == "TRUE", text, pos)
        if token.type == "NULL":
            return Lit("null", None, text, pos)
        name = text.upper()
        n: int | None = None
        if len(tree.children) > 1:
            n_token = _token(tree.children[1])
            n = self.integer(n_token)
        if name not in DATE_LITERALS and not (name in N_DATE_LITERALS and n is not None):
            raise self.fail(pos, f"unexpected token: '{text}'")
        if (name in N_DATE_LITERALS) != (n is not None):
            raise self.fail(pos, f"unexpected token: '{text}'")
        return Lit("const", (name, n), text, pos)

    def unescape(self, literal: str, pos: Pos) -> str:
        body = literal[1:-1]
        out: list[str] = []
        i = 0
        while i < len(body):
            char = body[i]
            if char != "\\":
                out.append(char)
                i += 1
                continue
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt.lower() in _ESCAPES:
                out.append(_ESCAPES[nxt.lower()])
                i += 2
            elif nxt in "%_":
                out.append("\\" + nxt)  # meaningful to LIKE only; kept escaped
                i += 2
            elif nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(chr(int(body[i + 2 : i + 6], 16)))
                i += 6
            else:
                raise self.fail(
                    pos, f"Invalid string literal '{literal}'. Illegal character sequence '\\{nxt}' in string literal."
                )
        return "".join(out)


def _tree(node: Any) -> Tree[Token]:
    assert isinstance(node, Tree)
    return node


def _token(node: Any) -> Token:
    assert isinstance(node, Token)
    return node


def parse_soql_datetime(text: str) -> dt.datetime:
    """A SOQL datetime literal (``Z`` or ``±hh:mm``/``±hhmm``, any fraction) as an aware UTC datetime."""
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})", text, re.I)
    if match is None:
        raise ValueError(text)
    date_part, time_part, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    offset = "+00:00" if zone.upper() == "Z" else (zone if ":" in zone else f"{zone[:3]}:{zone[3:]}")
    parsed = dt.datetime.fromisoformat(f"{date_part}T{time_part}.{micro}{offset}")
    return parsed.astimezone(dt.UTC)


@functools.lru_cache(maxsize=1024)
def parse_query(text: str) -> Query:
    """Parse one SOQL statement (cached on the text)."""
    try:
        tree = _soql_parser().parse(text)
    except UnexpectedInput as exc:
        raise syntax_error(text, exc, "MALFORMED_QUERY") from None
    return Builder(text).query(_tree(tree.children[0]))


# --------------------------------------------------------------------------------------------------------------------
# Date literals

DATE_LITERALS = frozenset(
    {
        "TODAY",
        "YESTERDAY",
        "TOMORROW",
        "LAST_WEEK",
        "THIS_WEEK",
        "NEXT_WEEK",
        "LAST_MONTH",
        "THIS_MONTH",
        "NEXT_MONTH",
        "LAST_QUARTER",
        "THIS_QUARTER",
        "NEXT_QUARTER",
        "LAST_YEAR",
        "THIS_YEAR",
        "NEXT_YEAR",
        "LAST_90_DAYS",
        "NEXT_90_DAYS",
    }
)
N_DATE_LITERALS = frozenset(
    {
        "LAST_N_DAYS",
        "NEXT_N_DAYS",
        "LAST_N_WEEKS",
        "NEXT_N_WEEKS",
        "LAST_N_MONTHS",
        "NEXT_N_MONTHS",
        "LAST_N_QUARTERS",
        "NEXT_N_QUARTERS",
        "LAST_N_YEARS",
        "NEXT_N_YEARS",
        "LAST_N_HOURS",
        "NEXT_N_HOURS",
    }
)


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def date_range(name: str, n: int | None, now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The half-open UTC range ``[start, end)`` a date literal stands for."""
    now = now.astimezone(dt.UTC) if now.tzinfo else now.replace(tzinfo=dt.UTC)
    today = now.date()
    week = today - dt.timedelta(days=(today.weekday() + 1) % 7)  # weeks start on Sunday (en_US)
    month = today.replace(day=1)
    quarter = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    year = dt.date(today.year, 1, 1)
    day = dt.timedelta(days=1)
    count = n or 0
    if name == "LAST_N_HOURS":
        return now - dt.timedelta(hours=count), now + dt.timedelta(microseconds=1)
    if name == "NEXT_N_HOURS":
        return now, now + dt.timedelta(hours=count)
    ranges: dict[str, tuple[dt.date, dt.date]] = {
        "TODAY": (today, today + day),
        "YESTERDAY": (today - day, today),
        "TOMORROW": (today + day, today + 2 * day),
        "LAST_WEEK": (week - 7 * day, week),
        "THIS_WEEK": (week, week + 7 * day),
        "NEXT_WEEK": (week + 7 * day, week + 14 * day),
        "LAST_MONTH": (_add_months(month, -1), month),
        "THIS_MONTH": (month, _add_months(month, 1)),
        "NEXT_MONTH": (_add_months(month, 1), _add_months(month, 2)),
        "LAST_QUARTER": (_add_months(quarter, -3), quarter),
        "THIS_QUARTER": (quarter, _add_months(quarter, 3)),
        "NEXT_QUARTER": (_add_months(quarter, 3), _add_months(quarter, 6)),
        "LAST_YEAR": (_add_months(year, -12), year),
        "THIS_YEAR": (year, _add_months(year, 12)),
        "NEXT_YEAR": (_add_months(year, 12), _add_months(year, 24)),
        "LAST_90_DAYS": (today - 90 * day, today + day),
        "NEXT_90_DAYS": (today + day, today + 91 * day),
        "LAST_N_DAYS": (today - count * day, today + day),
        "NEXT_N_DAYS": (today + day, today + (count + 1) * day),
        "LAST_N_WEEKS": (week - 7 * count * day, week),
        "NEXT_N_WEEKS": (week + 7 * day, week + 7 * (count + 1) * day),
        "LAST_N_MONTHS": (_add_months(month, -count), month),
        "NEXT_N_MONTHS": (_add_months(month, 1), _add_months(month, count + 1)),
        "LAST_N_QUARTERS": (_add_months(quarter, -3 * count), quarter),
        "NEXT_N_QUARTERS": (_add_months(quarter, 3), _add_months(quarter, 3 * (count + 1))),
        "LAST_N_YEARS": (_add_months(year, -12 * count), year),
        "NEXT_N_YEARS": (_add_months(year, 12), _add_months(year, 12 * (count + 1))),
    }
    start, end = ranges[name]
    return (dt.datetime.combine(start, dt.time(), dt.UTC), dt.datetime.combine(end, dt.time(), dt.UTC))


# --------------------------------------------------------------------------------------------------------------------
# Ids

_ID_RE = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
_SUFFIX = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"


def normalize_id(value: str) -> str:
    """The case-exact 15-character form of a 15- or 18-character id (an 18-character id's suffix restores the
    case, so 18-character ids compare case-insensitively); anything else unchanged."""
    if len(value) == 18:
        head = []
        suffix = value[15:].upper()
        for chunk in range(3):
            bits = _SUFFIX.find(suffix[chunk])
            if bits < 0:
                return value
            for i in range(5):
                char = value[chunk * 5 + i]
                head.append(char.upper() if bits & (1 << i) else char.lower())
        return "".join(head)
    return value


# --------------------------------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class QueryResult:
    """What a query found: ``totalSize`` and every record (after LIMIT/OFFSET), JSON-ready."""

    total_size: int
    records: list[dict[str, Any]]


TEXT_COMPARE = frozenset({"string", "textarea", "email", "phone", "url", "picklist", "combobox", "encryptedstring"})
ID_TYPES = frozenset({"id", "reference"})
AGGREGATES = frozenset({"COUNT", "COUNT_DISTINCT", "MIN", "MAX", "SUM", "AVG"})
PASS_THROUGH = frozenset({"TOLABEL", "FORMAT", "CONVERTCURRENCY"})
_MISSING = object()

INVALID_COLUMN = (
    "No such column '{name}' on entity '{entity}'. If you are attempting to use a custom field, be sure "
    "to append the '__c' after the custom field name. Please reference your WSDL or the describe call "
    "for the appropriate names."
)
INVALID_RELATIONSHIP = (
    "Didn't understand relationship '{name}' in field path. If you are attempting to use a custom "
    "relationship, be sure to append the '__r' after the custom relationship name. Please "
    "reference your WSDL or the describe call for the appropriate names."
)
INVALID_CHILD = (
    "Didn't understand relationship '{name}' in FROM part of query call. If you are attempting to use a "
    "custom relationship, be sure to append the '__r' after the custom relationship name. Please "
    "reference your WSDL or the describe call for the appropriate names."
)
INVALID_OBJECT = (
    "sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to "
    "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
    "appropriate names."
)


def _text_key(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def normalizer(ftype: str, case_sensitive: bool = False) -> Callable[[Any], Any]:
    """How values of a field type compare: ids by 15-character form, text case-insensitively, multipicklists as
    sets."""
    if ftype in ID_TYPES:
        return lambda v: normalize_id(v) if isinstance(v, str) else v
    if ftype == "multipicklist":
        return lambda v: frozenset(p.strip().casefold() for p in v.split(";") if p.strip()) if isinstance(v, str) else v
    if ftype in TEXT_COMPARE and not case_sensitive:
        return _text_key
    return lambda v: v


def _sort_key(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    return value


@dataclass
class Accessor:
    """A resolved field path: the reference fields to follow, then the leaf field."""

    engine: Engine
    root: ObjectDef
    steps: tuple[tuple[str, str], ...]  # (reference field, lower-cased; relationship name, canonical)
    leaf: str  # lower-cased
    leaf_name: str  # canonical on the (first) target object
    fdef: FieldDef

    @property
    def ftype(self) -> str:
        return self.fdef.type

    def key(self) -> tuple[Any, ...]:
        return (tuple(s[0] for s in self.steps), self.leaf)

    def get(self, row: Row) -> Any:
        if not self.steps:
            return row.get(self.leaf_name)
        found = self.engine.follow(row, self.steps, self.root)
        if found is None:
            return None
        obj, target = found
        leaf = obj.field(self.leaf)
        return target.get(leaf.name) if leaf is not None else None


@dataclass
class Operand:
    get: Callable[[Any], Any]
    ftype: str
    name: str
    case_sensitive: bool = False


Predicate = Callable[[Any], bool]


@dataclass
class Plan:
    """A compiled (non-aggregate) SELECT over one object."""

    obj: ObjectDef
    emitters: list[Callable[[Row, dict[str, Any]], None]]
    children: list[ChildPlan]
    where: Predicate | None
    order: list[tuple[Callable[[Row], Any], bool, bool]]
    limit: int | None
    offset: int


@dataclass
class ChildPlan:
    key: str  # relationship name (canonical)
    field: str  # the child's reference field (canonical)
    plan: Plan


class Engine:
    """Runs parsed queries for one request (one ``now``, one query text for error messages)."""

    def __init__(
        self, source: RecordSource, text: str, *, api_version: str, now: dt.datetime, include_deleted: bool = False
    ) -> None:
        self.source = source
        self.schema = source.schema
        self.text = text
        self.version = api_version.lstrip("vV")
        self.now = now
        self.include_deleted = include_deleted

    # --- helpers ----------------------------------------------------------------------------------------------------

    def fail(self, code: str, pos: Pos, message: str) -> ApiError:
        return ApiError(400, code, locate(self.text, pos.line, pos.column, message))

    def url(self, obj: str, record_id: Any) -> str:
        return f"/services/data/v{self.version}/sobjects/{obj}/{record_id}"

    def attributes(self, obj: ObjectDef, row: Row) -> dict[str, Any]:
        return {"type": obj.name, "url": self.url(obj.name, row.get("Id"))}

    def object(self, name: str, pos: Pos) -> ObjectDef:
        obj = self.schema.get(name)
        if obj is None or not obj.queryable:
            raise self.fail("INVALID_TYPE", pos, INVALID_OBJECT.format(name=name))
        return obj

    def rows(self, obj: ObjectDef) -> Iterable[Row]:
        return self.source.rows(obj.name, include_deleted=self.include_deleted)

    def parent(self, obj: ObjectDef, row: Row, ref_lower: str) -> tuple[ObjectDef, Row] | None:
        ref = obj.field(ref_lower)
        if ref is None:
            return None
        value = row.get(ref.name)
        if not value:
            return None
        return self.source.row_by_id(value)

    def follow(self, row: Row, steps: Sequence[tuple[str, str]], obj: ObjectDef) -> tuple[ObjectDef, Row] | None:
        current_obj, current = obj, row
        for ref_lower, _ in steps:
            found = self.parent(current_obj, current, ref_lower)
            if found is None:
                return None
            current_obj, current = found
        return current_obj, current

    # --- resolution -------------------------------------------------------------------------------------------------

    def resolve(self, obj: ObjectDef, path: Path, alias: str | None) -> Accessor:
        parts = list(path.parts)
        if (
            len(parts) > 1
            and obj.relationship(parts[0]) is None
            and (parts[0].lower() == obj.name.lower() or (alias is not None and parts[0].lower() == alias.lower()))
        ):
            parts = parts[1:]
        candidates = [obj]
        steps: list[tuple[str, str]] = []
        for rel in parts[:-1]:
            ref = next((r for c in candidates if (r := c.relationship(rel)) is not None), None)
            targets = [o for name in (ref.reference_to if ref else ()) if (o := self.schema.get(name)) is not None]
            if ref is None or not targets:
                raise self.fail("INVALID_FIELD", path.pos, INVALID_RELATIONSHIP.format(name=rel))
            steps.append((ref.name.lower(), ref.relationship_name or rel))
            candidates = targets
        leaf = parts[-1]
        for candidate in candidates:
            fdef = candidate.field(leaf)
            if fdef is not None:
                return Accessor(self, obj, tuple(steps), leaf.lower(), fdef.name, fdef)
        raise self.fail("INVALID_FIELD", path.pos, INVALID_COLUMN.format(name=leaf, entity=candidates[0].name))

    def row_operand(self, obj: ObjectDef, alias: str | None) -> Callable[[Path | Func], Operand]:
        def compile_operand(expr: Path | Func) -> Operand:
            if isinstance(expr, Path):
                acc = self.resolve(obj, expr, alias)
                return Operand(acc.get, acc.ftype, acc.leaf_name, acc.fdef.case_sensitive)
            return self.function_operand(expr, compile_operand)

        return compile_operand

    def function_operand(self, func: Func, inner: Callable[[Path | Func], Operand]) -> Operand:
        name = func.upper
        if name in AGGREGATES:
            raise self.fail("MALFORMED_QUERY", func.pos, f"Aggregate functions are not allowed here: {func.name}")
        if len(func.args) != 1:
            raise self.fail("MALFORMED_QUERY", func.pos, f"unexpected token: '{func.name}'")
        arg = inner(func.args[0])
        if name in PASS_THROUGH:
            return arg
        get = arg.get
        transforms: dict[str, tuple[Callable[[Any], Any], str]] = {
            "CALENDAR_YEAR": (lambda v: v.year, "int"),
            "CALENDAR_MONTH": (lambda v: v.month, "int"),
            "CALENDAR_QUARTER": (lambda v: (v.month - 1) // 3 + 1, "int"),
            "DAY_IN_MONTH": (lambda v: v.day, "int"),
            "DAY_IN_WEEK": (lambda v: v.isoweekday() % 7 + 1, "int"),
            "DAY_IN_YEAR": (lambda v: v.timetuple().tm_yday, "int"),
            "WEEK_IN_YEAR": (lambda v: (v.timetuple().tm_yday - 1) // 7 + 1, "int"),
            "HOUR_IN_DAY": (lambda v: v.hour if isinstance(v, dt.datetime) else 0, "int"),
            "DAY_ONLY": (lambda v: v.date() if isinstance(v, dt.datetime) else v, "date"),
        }
        if name not in transforms or arg.ftype not in ("date", "datetime"):
            raise self.fail("MALFORMED_QUERY", func.pos, f"Invalid function: {func.name}")
        transform, ftype = transforms[name]

        def apply(row: Any) -> Any:
            value = get(row)
            return None if value is None else transform(value)

        return Operand(apply, ftype, f"{func.name}({arg.name})")

    # --- conditions -------------------------------------------------------------------------------------------------

    def condition(self, cond: Cond, operand: Callable[[Path | Func], Operand]) -> Predicate:
        if isinstance(cond, Logic):
            preds = [self.condition(c, operand) for c in cond.items]
            if cond.op == "and":
                return lambda r: all(p(r) for p in preds)
            return lambda r: any(p(r) for p in preds)
        if isinstance(cond, Not):
            inner = self.condition(cond.item, operand)
            return lambda r: not inner(r)
        return self.predicate(cond, operand)

    def coerce(self, lit: Lit, op: Operand) -> Any:
        """A literal as a comparable value for the operand's type (or a date range), type-checked as Salesforce
        does."""
        if lit.kind == "null":
            return None
        ftype = op.ftype

        def wrong(type_name: str, quoted: bool = False) -> ApiError:
            hint = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
            return self.fail(
                "INVALID_FIELD",
                lit.pos,
                f"value of filter criterion for field '{op.name}' must be of type {type_name} and {hint}",
            )

        if ftype in ID_TYPES:
            if lit.kind != "string":
                raise wrong("id", quoted=True)
            if lit.value == "":
                return None
            if not _ID_RE.fullmatch(lit.value):
                raise self.fail("INVALID_QUERY_FILTER_OPERATOR", lit.pos, f"invalid ID field: {lit.value}")
            return normalize_id(lit.value)
        if ftype == "boolean":
            if lit.kind != "bool":
                raise wrong("boolean")
            return lit.value
        if ftype in NUMBER_TYPES:
            if lit.kind != "number":
                raise wrong("int" if ftype == "int" else "double")
            return lit.value
        if ftype in ("date", "datetime"):
            if lit.kind == "const":
                start, end = date_range(lit.value[0], lit.value[1], self.now)
                return (start.date(), end.date()) if ftype == "date" else (start, end)
            if ftype == "date" and lit.kind == "date":
                return lit.value
            if ftype == "datetime" and lit.kind == "datetime":
                return lit.value
            raise wrong("date" if ftype == "date" else "dateTime")
        if lit.kind != "string":
            if ftype in TEXT_COMPARE or ftype == "multipicklist":
                raise wrong("string", quoted=True)
            return lit.value
        return normalizer(ftype, op.case_sensitive)(lit.value)

    def predicate(self, pred: Pred, operand: Callable[[Path | Func], Operand]) -> Predicate:
        op = operand(pred.left)
        get = op.get
        norm = normalizer(op.ftype, op.case_sensitive)
        if pred.kind == "cmp":
            return self.compare(pred, op, get, norm)
        if pred.kind == "like":
            lit = pred.values[0]
            if lit.kind != "string":
                raise self.fail(
                    "INVALID_FIELD",
                    lit.pos,
                    f"value of filter criterion for field '{op.name}' must be "
                    "of type string and should be enclosed in quotes",
                )
            regex = like_regex(lit.text)
            return lambda r: (v := get(r)) is not None and regex.fullmatch(str(v)) is not None
        if pred.kind in ("in", "not_in"):
            if pred.sub is not None:
                allowed: set[Any] = self.semi_join(pred.sub)
                if op.ftype not in ID_TYPES:
                    raise self.fail("INVALID_FIELD", pred.pos, f"Invalid semi join field: {op.name}")
            else:
                allowed = set()
                for lit in pred.values:
                    value = self.coerce(lit, op)
                    if isinstance(value, tuple):
                        raise self.fail("MALFORMED_QUERY", lit.pos, f"unexpected token: '{lit.text}'")
                    allowed.add(value)
            has_null = None in allowed

            def member(r: Any) -> bool:
                v = get(r)
                return has_null if v is None else norm(v) in allowed

            if pred.kind == "in":
                return member
            return lambda r: not member(r)
        # INCLUDES / EXCLUDES (multi-select picklists)
        sets = []
        for lit in pred.values:
            if lit.kind != "string":
                raise self.fail(
                    "INVALID_FIELD",
                    lit.pos,
                    f"value of filter criterion for field '{op.name}' must be "
                    "of type string and should be enclosed in quotes",
                )
            sets.append(frozenset(p.strip().casefold() for p in lit.value.split(";") if p.strip()))

        def includes(r: Any) -> bool:
            v = get(r)
            if not isinstance(v, str):
                return False
            present = frozenset(p.strip().casefold() for p in v.split(";") if p.strip())
            return any(s <= present for s in sets)

        if pred.kind == "includes":
            return includes
        return lambda r: not includes(r)

    def compare(self, pred: Pred, op: Operand, get: Callable[[Any], Any], norm: Callable[[Any], Any]) -> Predicate:
        operator = pred.op
        value = self.coerce(pred.values[0], op)
        if operator == "<>":
            operator = "!="
        if value is None:
            if operator == "=":
                return lambda r: get(r) is None
            if operator == "!=":
                return lambda r: get(r) is not None
            return lambda r: False
        if isinstance(value, tuple):  # a date literal: a range
            start, end = value
            range_tests: dict[str, Callable[[Any], bool]] = {
                "=": lambda v: start <= v < end,
                "!=": lambda v: not start <= v < end,
                "<": lambda v: v < start,
                "<=": lambda v: v < end,
                ">": lambda v: v >= end,
                ">=": lambda v: v >= start,
            }
            test = range_tests[operator]
            if operator == "!=":
                return lambda r: (v := get(r)) is None or test(v)
            return lambda r: (v := get(r)) is not None and test(v)
        if operator == "=":
            return lambda r: (v := get(r)) is not None and norm(v) == value
        if operator == "!=":
            return lambda r: (v := get(r)) is None or norm(v) != value
        tests: dict[str, Callable[[Any], bool]] = {
            "<": lambda v: norm(v) < value,
            "<=": lambda v: norm(v) <= value,
            ">": lambda v: norm(v) > value,
            ">=": lambda v: norm(v) >= value,
        }
        test = tests[operator]

        def ordered(r: Any) -> bool:
            v = get(r)
            if v is None:
                return False
            try:
                return test(v)
            except TypeError:
                return False

        return ordered

    def semi_join(self, sub: Query) -> set[Any]:
        obj = self.object(sub.obj, sub.obj_pos)
        if len(sub.select) != 1 or not isinstance(sub.select[0], Path):
            raise self.fail(
                "MALFORMED_QUERY", sub.pos, "The selected field in a subquery must be an ID or a reference field"
            )
        acc = self.resolve(obj, sub.select[0], sub.alias)
        if acc.ftype not in ID_TYPES:
            raise self.fail("INVALID_FIELD", sub.select[0].pos, f"Invalid semi join field: {acc.leaf_name}")
        where = self.condition(sub.where, self.row_operand(obj, sub.alias)) if sub.where is not None else None
        found: set[Any] = set()
        for row in self.rows(obj):
            if where is None or where(row):
                value = acc.get(row)
                if value:
                    found.add(normalize_id(value))
        return found

    # --- SELECT -----------------------------------------------------------------------------------------------------

    def plan(self, query: Query, obj: ObjectDef, *, alias: str | None, child: bool = False) -> Plan:
        emitters: list[Callable[[Row, dict[str, Any]], None]] = []
        children: list[ChildPlan] = []
        for item in query.select:
            if isinstance(item, Path):
                emitters.append(self.field_emitter(self.resolve(obj, item, alias)))
            elif isinstance(item, Query):
                if child:
                    raise self.fail("MALFORMED_QUERY", item.pos, "unexpected token: 'SELECT'")
                children.append(self.child_plan(item, obj))
                emitters.append(_placeholder(children[-1].key))
            elif isinstance(item, TypeOf):
                emitters.append(self.typeof_emitter(obj, item))
            elif isinstance(item, SelFunc):
                emitters.extend(self.function_emitters(obj, item, query, alias))
        where = self.condition(query.where, self.row_operand(obj, alias)) if query.where is not None else None
        operand = self.row_operand(obj, alias)
        order = []
        for item in query.order_by:
            expr = operand(item.expr)
            order.append((expr.get, item.desc, item.nulls_first if item.nulls_first is not None else not item.desc))
        return Plan(obj, emitters, children, where, order, query.limit, query.offset or 0)

    def field_emitter(self, acc: Accessor) -> Callable[[Row, dict[str, Any]], None]:
        if not acc.steps:
            name = acc.leaf_name

            def simple(row: Row, rec: dict[str, Any]) -> None:
                rec[name] = to_json_value(row.get(name))

            return simple

        def nested(row: Row, rec: dict[str, Any]) -> None:
            target = rec
            current: Row = row
            current_obj: ObjectDef = acc.root
            for ref_lower, rel_name in acc.steps:
                existing = target.get(rel_name, _MISSING)
                if existing is None:
                    return
                found = self.parent(current_obj, current, ref_lower)
                if found is None:
                    target[rel_name] = None
                    return
                current_obj, current = found
                if not isinstance(existing, dict):
                    existing = {"attributes": self.attributes(current_obj, current)}
                    target[rel_name] = existing
                target = existing
            leaf = current_obj.field(acc.leaf)
            name = leaf.name if leaf is not None else acc.leaf_name
            target[name] = to_json_value(current.get(name)) if leaf is not None else None

        return nested

    def typeof_emitter(self, obj: ObjectDef, item: TypeOf) -> Callable[[Row, dict[str, Any]], None]:
        if len(item.path.parts) != 1:
            raise self.fail("INVALID_FIELD", item.path.pos, INVALID_RELATIONSHIP.format(name=item.path.text))
        ref = obj.relationship(item.path.parts[0])
        if ref is None:
            raise self.fail("INVALID_FIELD", item.path.pos, INVALID_RELATIONSHIP.format(name=item.path.parts[0]))
        key = ref.relationship_name or item.path.parts[0]
        whens: dict[str, list[str]] = {}
        for type_name, pos, paths in item.whens:
            target = self.schema.get(type_name)
            if target is None or target.name not in ref.reference_to:
                raise self.fail("INVALID_FIELD", pos, f"Invalid TYPEOF type: {type_name}")
            whens[target.name.lower()] = [self.resolve(target, p, None).leaf_name for p in paths]
        fallback = [p.parts[-1] for p in item.else_fields or ()]
        ref_name = ref.name

        def emit(row: Row, rec: dict[str, Any]) -> None:
            value = row.get(ref_name)
            found = self.source.row_by_id(value) if value else None
            if found is None:
                rec[key] = None
                return
            target_obj, target = found
            node: dict[str, Any] = {"attributes": self.attributes(target_obj, target)}
            for name in whens.get(target_obj.name.lower(), fallback):
                fdef = target_obj.field(name)
                if fdef is not None:
                    node[fdef.name] = to_json_value(target.get(fdef.name))
            rec[key] = node

        return emit

    def function_emitters(
        self, obj: ObjectDef, item: SelFunc, query: Query, alias: str | None
    ) -> list[Callable[[Row, dict[str, Any]], None]]:
        func = item.func
        name = func.upper
        if name == "FIELDS":
            arg = func.args[0] if len(func.args) == 1 else None
            kind = arg.parts[0].upper() if isinstance(arg, Path) and len(arg.parts) == 1 else ""
            if kind not in ("ALL", "STANDARD", "CUSTOM"):
                raise self.fail("MALFORMED_QUERY", func.pos, f"unexpected token: '{func.name}'")
            if kind != "STANDARD" and (query.limit is None or query.limit > FIELDS_LIMIT):
                raise self.fail(
                    "MALFORMED_QUERY", func.pos, f"The SOQL FIELDS function must have a LIMIT of at most {FIELDS_LIMIT}"
                )
            chosen = [f for f in obj.fields.values() if kind == "ALL" or (kind == "CUSTOM") == f.custom]
            return [self.field_emitter(Accessor(self, obj, (), f.name.lower(), f.name, f)) for f in chosen]
        if name in PASS_THROUGH and len(func.args) == 1 and isinstance(func.args[0], Path):
            acc = self.resolve(obj, func.args[0], alias)
            if item.alias is None:
                return [self.field_emitter(acc)]
            key = item.alias
            return [lambda row, rec: rec.__setitem__(key, to_json_value(acc.get(row)))]
        raise self.fail("MALFORMED_QUERY", func.pos, f"unexpected token: '{func.name}'")  # pragma: no cover

    def child_plan(self, sub: Query, parent: ObjectDef) -> ChildPlan:
        rel = parent.child_relationship(sub.obj)
        child = self.schema.get(rel.child_object) if rel is not None else None
        if rel is None or child is None:
            raise self.fail("INVALID_TYPE", sub.obj_pos, INVALID_CHILD.format(name=sub.obj))
        if sub.group_by or any(isinstance(i, SelFunc) and i.func.upper in AGGREGATES for i in sub.select):
            raise self.fail("MALFORMED_QUERY", sub.pos, "Aggregate functions are not supported in subqueries")
        plan = self.plan(sub, child, alias=sub.alias or rel.relationship_name, child=True)
        fdef = child.field(rel.field)
        return ChildPlan(rel.relationship_name, fdef.name if fdef else rel.field, plan)

    # --- running ----------------------------------------------------------------------------------------------------

    def run(self, query: Query) -> QueryResult:
        obj = self.object(query.obj, query.obj_pos)
        if query.offset is not None and query.offset > MAX_OFFSET:
            assert query.offset_pos is not None
            raise self.fail(
                "NUMBER_OUTSIDE_VALID_RANGE", query.offset_pos, f"Maximum SOQL offset allowed is {MAX_OFFSET}"
            )
        if self.is_aggregate(query):
            return self.run_aggregate(query, obj)
        plan = self.plan(query, obj, alias=query.alias)
        return self.execute(plan, self.rows(obj))

    def execute(self, plan: Plan, rows: Iterable[Row]) -> QueryResult:
        selected = self.select_rows(plan, rows)
        records = [self.record(plan, row) for row in selected]
        self.fill_children(plan, selected, records)
        return QueryResult(len(records), records)

    def select_rows(self, plan: Plan, rows: Iterable[Row]) -> list[Row]:
        where = plan.where
        selected = [r for r in rows if where(r)] if where is not None else list(rows)
        sort_rows(selected, plan.order)
        end = None if plan.limit is None else plan.offset + plan.limit
        return selected[plan.offset : end]

    def record(self, plan: Plan, row: Row) -> dict[str, Any]:
        rec: dict[str, Any] = {"attributes": self.attributes(plan.obj, row)}
        for emit in plan.emitters:
            emit(row, rec)
        return rec

    def fill_children(self, plan: Plan, parents: list[Row], records: list[dict[str, Any]]) -> None:
        if not plan.children or not parents:
            return
        index: dict[str, int] = {}
        for i, row in enumerate(parents):
            if row.get("Id"):
                index[normalize_id(row["Id"])] = i
        for child in plan.children:
            groups: dict[int, list[Row]] = {}
            for row in self.rows(child.plan.obj):
                value = row.get(child.field)
                if value:
                    position = index.get(normalize_id(value))
                    if position is not None:
                        groups.setdefault(position, []).append(row)
            for position, rows in groups.items():
                selected = self.select_rows(child.plan, rows)
                if not selected:
                    continue
                sub_records = [self.record(child.plan, r) for r in selected]
                self.fill_children(child.plan, selected, sub_records)
                records[position][child.key] = {"totalSize": len(sub_records), "done": True, "records": sub_records}

    # --- aggregates -------------------------------------------------------------------------------------------------

    @staticmethod
    def is_aggregate(query: Query) -> bool:
        return bool(query.group_by) or any(isinstance(i, SelFunc) and i.func.upper in AGGREGATES for i in query.select)

    def run_aggregate(self, query: Query, obj: ObjectDef) -> QueryResult:
        alias = query.alias
        operand = self.row_operand(obj, alias)
        group_ops: list[Operand] = []
        group_keys: list[Any] = []

        def expr_key(expr: Path | Func) -> tuple[Any, ...]:
            if isinstance(expr, Path):
                return ("path", *self.resolve(obj, expr, alias).key())
            return ("func", expr.upper, tuple(expr_key(a) for a in expr.args))

        for expr in query.group_by:
            if isinstance(expr, Path):
                acc = self.resolve(obj, expr, alias)
                group_ops.append(Operand(acc.get, acc.ftype, acc.leaf_name, acc.fdef.case_sensitive))
            else:
                group_ops.append(operand(expr))
            group_keys.append(expr_key(expr))
        count_only = (
            len(query.select) == 1
            and isinstance(query.select[0], SelFunc)
            and query.select[0].func.upper == "COUNT"
            and not query.select[0].func.args
        )

        def group_index(expr: Path | Func) -> int | None:
            key = expr_key(expr)
            return group_keys.index(key) if key in group_keys else None

        columns: list[tuple[str, Callable[[Group], Any]]] = []
        expr_count = 0
        for item in query.select:
            if isinstance(item, Path):
                index = group_index(item)
                if index is None:
                    raise self.fail("MALFORMED_QUERY", item.pos, f"Field must be grouped or aggregated: {item.text}")
                columns.append((self.resolve(obj, item, alias).leaf_name, _group_value(index)))
            elif isinstance(item, SelFunc):
                if item.func.upper in AGGREGATES:
                    getter = self.aggregate(obj, item.func, alias).get
                else:
                    index = group_index(item.func)
                    if index is None:
                        raise self.fail(
                            "MALFORMED_QUERY", item.func.pos, f"Field must be grouped or aggregated: {item.func.name}"
                        )
                    getter = _group_value(index)
                if item.alias is not None:
                    key = item.alias
                else:
                    key = f"expr{expr_count}"
                    expr_count += 1
                columns.append((key, getter))
            else:
                pos = item.pos if isinstance(item, Query) else item.path.pos
                raise self.fail("MALFORMED_QUERY", pos, "Field must be grouped or aggregated")

        def group_operand(expr: Path | Func) -> Operand:
            if isinstance(expr, Func) and expr.upper in AGGREGATES:
                return self.aggregate(obj, expr, alias)
            index = group_index(expr)
            if index is None:
                pos = expr.pos
                name = expr.text if isinstance(expr, Path) else expr.name
                raise self.fail("MALFORMED_QUERY", pos, f"Field must be grouped or aggregated: {name}")
            op = group_ops[index]
            return Operand(_group_value(index), op.ftype, op.name, op.case_sensitive)

        having = self.condition(query.having, group_operand) if query.having is not None else None
        order = []
        for item in query.order_by:
            by = group_operand(item.expr)
            order.append((by.get, item.desc, item.nulls_first if item.nulls_first is not None else not item.desc))

        where = self.condition(query.where, operand) if query.where is not None else None
        offset = query.offset or 0
        end = None if query.limit is None else offset + query.limit
        matching = (r for r in self.rows(obj) if where is None or where(r))
        if count_only and not query.group_by:
            return QueryResult(len(list(matching)[offset:end]), [])
        groups: dict[tuple[Any, ...], Group] = {}
        norms = [normalizer(op.ftype, op.case_sensitive) for op in group_ops]
        if not group_ops:
            groups[()] = Group([], [])
        for row in matching:
            values = [op.get(row) for op in group_ops]
            group_key = tuple(n(v) for n, v in zip(norms, values, strict=True))
            group = groups.get(group_key)
            if group is None:
                group = groups[group_key] = Group([], values)
            group.rows.append(row)
        selected = [g for g in groups.values() if having is None or having(g)]
        sort_rows(selected, order)
        selected = selected[offset:end]
        if count_only:
            return QueryResult(len(selected), [])
        records = []
        for group in selected:
            rec: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
            for key, getter in columns:
                rec[key] = to_json_value(getter(group))
            records.append(rec)
        return QueryResult(len(records), records)

    def aggregate(self, obj: ObjectDef, func: Func, alias: str | None) -> Operand:
        name = func.upper
        if not func.args:
            if name != "COUNT":
                raise self.fail("MALFORMED_QUERY", func.pos, "unexpected token: ')'")
            return Operand(lambda g: len(g.rows), "int", "COUNT()")
        if len(func.args) != 1 or not isinstance(func.args[0], Path):
            raise self.fail("MALFORMED_QUERY", func.pos, f"unexpected token: '{func.name}'")
        acc = self.resolve(obj, func.args[0], alias)
        get = acc.get
        norm = normalizer(acc.ftype, acc.fdef.case_sensitive)
        label = f"{func.name}({acc.leaf_name})"
        if name in ("SUM", "AVG") and acc.ftype not in NUMBER_TYPES:
            raise self.fail(
                "MALFORMED_QUERY", func.args[0].pos, f"field {acc.leaf_name} does not support aggregate operator {name}"
            )

        def values(group: Group) -> list[Any]:
            return [v for r in group.rows if (v := get(r)) is not None]

        if name == "COUNT":
            return Operand(lambda g: len(values(g)), "int", label)
        if name == "COUNT_DISTINCT":
            return Operand(lambda g: len({norm(v) for v in values(g)}), "int", label)
        floating = acc.ftype != "int"
        if name == "SUM":

            def total(group: Group) -> Any:
                found = values(group)
                if not found:
                    return None
                return float(sum(found)) if floating else sum(found)

            return Operand(total, "double", label)
        if name == "AVG":

            def average(group: Group) -> Any:
                found = values(group)
                return float(sum(found)) / len(found) if found else None

            return Operand(average, "double", label)
        pick = min if name == "MIN" else max

        def extreme(group: Group) -> Any:
            found = values(group)
            return pick(found, key=_sort_key) if found else None

        return Operand(extreme, acc.ftype, label, acc.fdef.case_sensitive)


@dataclass
class Group:
    rows: list[Row]
    values: list[Any]


def _placeholder(key: str) -> Callable[[Row, dict[str, Any]], None]:
    """Keeps a child subquery's place in the record (filled in, or left null, once parents are known)."""

    def emit(_row: Row, rec: dict[str, Any]) -> None:
        rec[key] = None

    return emit


def _group_value(index: int) -> Callable[[Group], Any]:
    return lambda g: g.values[index]


def sort_rows(items: list[Any], order: Sequence[tuple[Callable[[Any], Any], bool, bool]]) -> None:
    """Sort in place by several keys (stable passes, last key first); each key has a direction and where nulls go."""
    for get, desc, nulls_first in reversed(order):
        null_key = (0,) if nulls_first != desc else (2,)

        def key(item: Any, get: Callable[[Any], Any] = get, null_key: tuple[int] = null_key) -> tuple[Any, ...]:
            value = get(item)
            return null_key if value is None else (1, _sort_key(value))

        items.sort(key=key, reverse=desc)


def like_regex(literal: str) -> re.Pattern[str]:
    """A LIKE pattern as a case-insensitive regex, read from its literal as written (quotes included): ``%`` any
    run, ``_`` one character, ``\\%``/``\\_`` those characters; every other escape is the character it stands for.

    Read from the literal, not its unescaped value: in ``'\\\\%'`` the escaped backslash is a backslash and the
    ``%`` after it a wildcard, which the unescaped text (a backslash, then ``%``) could no longer tell apart.
    """
    body = literal[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\":  # the parser accepted the literal: a known escape follows
            nxt = body[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6]):
                out.append(re.escape(chr(int(body[i + 2 : i + 6], 16))))
                i += 6
                continue
            out.append(re.escape(nxt if nxt in "%_" else _ESCAPES[nxt.lower()]))
            i += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        i += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)


def run_query(
    source: RecordSource, soql: str, *, include_deleted: bool, api_version: str, now: dt.datetime
) -> QueryResult:
    """Run one SOQL query; every matching record after LIMIT/OFFSET (the HTTP layer pages them).

    Raises :class:`ApiError` (400) with Salesforce's errorCode and message: MALFORMED_QUERY, INVALID_TYPE,
    INVALID_FIELD, INVALID_QUERY_FILTER_OPERATOR, NUMBER_OUTSIDE_VALID_RANGE."""
    query = parse_query(soql)
    engine = Engine(source, soql, api_version=api_version, now=now, include_deleted=include_deleted)
    return engine.run(query)
