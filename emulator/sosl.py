"""SOSL (``/search``) and parameterized search (``/parameterizedSearch``) for the emulated org.

The statement grammar extends the SOQL one (RETURNING specs reuse its field lists, WHERE, ORDER BY, LIMIT and
OFFSET, and the SOQL evaluator runs them); the search term inside the braces has its own small grammar: words,
``"quoted phrases"``, ``*`` / ``?`` wildcards, AND / OR / NOT (AND NOT), parentheses and implicit AND between terms.
SOSL's reserved characters (``? & | ! { } [ ] ( ) ^ ~ * : \\ " ' + -``) must be backslash-escaped inside the braces
to be searched literally; ``*`` and ``?`` unescaped are wildcards, ``"`` quotes a phrase, parentheses group.

Matching is word-based and case-insensitive over the text fields of the search group (ALL, NAME, EMAIL, PHONE,
SIDEBAR FIELDS); phone fields also match by digits (``{5551234567}`` finds ``(555) 123-4567``).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from sfsync.emulator.errors import ApiError
from sfsync.emulator.model import ObjectDef, RecordSource, Row
from sfsync.emulator.soql import (
    GRAMMAR,
    KEYWORDS,
    MAX_OFFSET,
    Builder,
    Engine,
    Path,
    Pos,
    Query,
    keyword_terminals,
    locate,
    parse_query,
    syntax_error,
)

__all__ = ["DEFAULT_OVERALL_LIMIT", "run_parameterized_search", "run_search", "warm_up"]

DEFAULT_OVERALL_LIMIT = 2000
NO_TERM = "No search term found. The search term must be enclosed in braces."
TOO_SHORT = "search term must be longer than one character"
OFFSET_RANGE = f"SOSL offset should be between 0 to {MAX_OFFSET}"

SOSL_GRAMMAR = r"""
sosl: FIND SEARCH_TERM search_group? returning_clause? sosl_with* limit_clause? offset_clause? update_clause?
search_group: IN NAME NAME
returning_clause: RETURNING returning_obj ("," returning_obj)*
returning_obj: object_name ("(" field_list where_clause? order_clause? limit_clause? offset_clause? ")")?
sosl_with: WITH NAME (COMP_OP value)?
SEARCH_TERM: /\{(?:[^{}\\]|\\.)*\}/s
"""

TERM_GRAMMAR = r"""
start: expr
?expr: conj
     | conj (_OR conj)+          -> any_of
?conj: unary
     | unary (_AND? unary)+      -> all_of
?unary: _NOT unary               -> negate
      | "(" expr ")"
      | PHRASE                   -> phrase
      | WORD                     -> word
_AND: "and"i
_OR: "or"i
_NOT: "not"i
PHRASE: /"(?:[^"\\]|\\.)*"/
WORD: /(?:[^\s\\?&|!{}\[\]()^~*:"'+\-]|\\.|[*?])+/i
%ignore /\s+/
"""

GROUPS = ("ALL", "NAME", "EMAIL", "PHONE", "SIDEBAR")
SEARCHABLE_TYPES = frozenset(
    {"string", "textarea", "email", "phone", "url", "picklist", "multipicklist", "combobox", "encryptedstring"}
)
NAME_FIELDS = frozenset({"name", "firstname", "lastname", "middlename"})


@functools.cache
def _sosl_parser() -> Lark:
    grammar = "start: sosl\n" + GRAMMAR + SOSL_GRAMMAR + keyword_terminals((*KEYWORDS, "FIND", "RETURNING"))
    return Lark(grammar, parser="lalr", lexer="basic")


@functools.cache
def _term_parser() -> Lark:
    return Lark(TERM_GRAMMAR, parser="lalr", lexer="basic")


def warm_up() -> None:
    """Build the SOSL parsers now rather than on the first search."""
    _sosl_parser()
    _term_parser()


# --------------------------------------------------------------------------------------------------------------------
# Search terms


@dataclass(frozen=True)
class Term:
    """One word or phrase: a regex over text, and the digits to look for in phone fields (or None)."""

    regex: re.Pattern[str]
    digits: str | None
    literal: str  # the characters searched for, wildcards and escapes removed


@dataclass(frozen=True)
class Bool:
    op: str  # and, or, not
    items: tuple[TermExpr, ...]


TermExpr = Term | Bool


def _word_pattern(word: str) -> tuple[str, str]:
    out: list[str] = []
    literal: list[str] = []
    i = 0
    while i < len(word):
        char = word[i]
        if char == "\\" and i + 1 < len(word):
            out.append(re.escape(word[i + 1]))
            literal.append(word[i + 1])
            i += 2
            continue
        if char == "*":
            out.append(r"\S*?")
        elif char == "?":
            out.append(r"\S")
        else:
            out.append(re.escape(char))
            literal.append(char)
        i += 1
    return "".join(out), "".join(literal)


def _term(pattern: str, literal: str) -> Term:
    regex = re.compile(rf"(?<!\w){pattern}(?!\w)", re.IGNORECASE)
    digits = re.sub(r"\D", "", literal)
    phone_like = bool(digits) and re.fullmatch(r"[\d\s()+\-.]*", literal) is not None
    return Term(regex, digits if phone_like else None, literal)


def _build_term(node: Tree[Token] | Token) -> TermExpr:
    if isinstance(node, Token):  # pragma: no cover - every leaf is wrapped in word/phrase
        raise TypeError(node)
    kind = str(node.data)
    if kind == "start":
        return _build_term(node.children[0])
    if kind in ("any_of", "all_of", "negate"):
        op = {"any_of": "or", "all_of": "and", "negate": "not"}[kind]
        return Bool(op, tuple(_build_term(c) for c in node.children if isinstance(c, Tree | Token)))
    token = node.children[0]
    assert isinstance(token, Token)
    text = str(token)
    if kind == "phrase":
        body = re.sub(r"\\(.)", r"\1", text[1:-1])
        words = body.split()
        return _term(r"\W+".join(re.escape(w) for w in words), " ".join(words))
    pattern, literal = _word_pattern(text)
    return _term(pattern, literal)


def _literal_length(expr: TermExpr) -> int:
    if isinstance(expr, Term):
        return len(expr.literal.replace(" ", ""))
    return sum(_literal_length(i) for i in expr.items)


@functools.lru_cache(maxsize=512)
def parse_terms(text: str) -> TermExpr:
    """The search expression inside the braces (raises ValueError on a syntax error, with the 0-based offset)."""
    try:
        tree = _term_parser().parse(text)
    except UnexpectedCharacters as exc:
        raise _TermError(exc.pos_in_stream or 0, text[exc.pos_in_stream or 0]) from None
    except UnexpectedToken as exc:
        if exc.token.type == "$END" or exc.token.start_pos is None:
            raise _TermError(len(text), "<EOF>") from None
        raise _TermError(exc.token.start_pos, str(exc.token)) from None
    except UnexpectedInput as exc:  # pragma: no cover - the LALR parser raises only the above
        raise _TermError(len(text), "<EOF>") from exc
    return _build_term(tree)


class _TermError(ValueError):
    def __init__(self, offset: int, text: str) -> None:
        super().__init__(offset, text)
        self.offset = offset
        self.text = text


def _matches(expr: TermExpr, texts: list[str], phones: list[str]) -> bool:
    if isinstance(expr, Term):
        if any(expr.regex.search(t) for t in texts):
            return True
        return expr.digits is not None and any(expr.digits in p for p in phones)
    if expr.op == "and":
        return all(_matches(i, texts, phones) for i in expr.items)
    if expr.op == "or":
        return any(_matches(i, texts, phones) for i in expr.items)
    return not _matches(expr.items[0], texts, phones)


def _search_fields(obj: ObjectDef, group: str) -> tuple[list[str], list[str]]:
    """(text fields, phone fields) searched for ``group``."""
    texts: list[str] = []
    phones: list[str] = []
    for f in obj.fields.values():
        if f.type not in SEARCHABLE_TYPES:
            continue
        is_name = f.name_field or f.name.lower() in NAME_FIELDS
        chosen = {
            "ALL": True,
            "NAME": is_name,
            "EMAIL": f.type == "email",
            "PHONE": f.type == "phone",
            "SIDEBAR": is_name or f.type in ("email", "phone"),
        }[group]
        if chosen:
            texts.append(f.name)
            if f.type == "phone":
                phones.append(f.name)
    return texts, phones


def _matcher(obj: ObjectDef, group: str, expr: TermExpr) -> Callable[[Row], bool]:
    text_fields, phone_fields = _search_fields(obj, group)

    def match(row: Row) -> bool:
        texts = [v for f in text_fields if isinstance(v := row.get(f), str) and v]
        phones = [re.sub(r"\D", "", v) for f in phone_fields if isinstance(v := row.get(f), str) and v]
        return _matches(expr, texts, phones)

    return match


# --------------------------------------------------------------------------------------------------------------------
# Statements


@dataclass(frozen=True)
class Search:
    term: TermExpr
    group: str
    returning: tuple[Query, ...] | None
    limit: int | None
    offset: int | None


class _SearchBuilder(Builder):
    def sosl(self, tree: Tree[Token]) -> Search:
        parts: dict[str, Tree[Token]] = {}
        term_token: Token | None = None
        for child in tree.children:
            if isinstance(child, Tree):
                parts[str(child.data)] = child
            elif isinstance(child, Token) and child.type == "SEARCH_TERM":
                term_token = child
        assert term_token is not None
        body = str(term_token)[1:-1]
        try:
            term = parse_terms(body)
        except _TermError as exc:
            at = (term_token.start_pos or 0) + 1 + exc.offset
            line = self.text.count("\n", 0, at) + 1
            column = at - (self.text.rfind("\n", 0, at) + 1) + 1
            message = (
                f"line {line}:{column - 1} no viable alternative at character '{exc.text}'"
                if exc.offset < len(body)
                else "unexpected token: '}'"
            )
            raise ApiError(400, "MALFORMED_SEARCH", locate(self.text, line, column, message)) from None
        if _literal_length(term) < 2:
            raise ApiError(400, "MALFORMED_SEARCH", TOO_SHORT)
        group = "ALL"
        if "search_group" in parts:
            words = [str(c) for c in parts["search_group"].children[1:]]
            if words[0].upper() not in GROUPS or words[1].upper() != "FIELDS":
                token = parts["search_group"].children[1]
                assert isinstance(token, Token)
                raise self.fail(self.pos(token), f"unexpected token: '{token}'")
            group = words[0].upper()
        returning = None
        if "returning_clause" in parts:
            returning = tuple(self.returning(c) for c in parts["returning_clause"].children[1:] if isinstance(c, Tree))
        limit: int | None = None
        offset: int | None = None
        if "limit_clause" in parts:
            limit = self.integer(_token(parts["limit_clause"].children[1]))
        if "offset_clause" in parts:
            offset = self.integer(_token(parts["offset_clause"].children[1]))
        return Search(term, group, returning, limit, offset)

    def returning(self, tree: Tree[Token]) -> Query:
        name = _token(_tree(tree.children[0]).children[0])
        pos = self.pos(name)
        fields: tuple[Path, ...] = (Path(("Id",), pos),)
        where = None
        order: tuple[Any, ...] = ()
        limit = offset = None
        offset_pos = None
        for child in tree.children[1:]:
            if not isinstance(child, Tree):
                continue
            kind = str(child.data)
            if kind == "field_list":
                fields = self.field_list(child)
            elif kind == "where_clause":
                where = self.condition(child.children[1])
            elif kind == "order_clause":
                order = tuple(self.order_item(_tree(c)) for c in child.children[2:])
            elif kind == "limit_clause":
                limit = self.integer(_token(child.children[1]))
            elif kind == "offset_clause":
                token = _token(child.children[1])
                offset, offset_pos = self.integer(token), self.pos(token)
        return Query(
            select=fields,
            obj=str(name),
            obj_pos=pos,
            where=where,
            order_by=order,
            limit=limit,
            offset=offset,
            offset_pos=offset_pos,
            pos=pos,
        )


def _tree(node: Any) -> Tree[Token]:
    assert isinstance(node, Tree)
    return node


def _token(node: Any) -> Token:
    assert isinstance(node, Token)
    return node


@functools.lru_cache(maxsize=512)
def parse_search(text: str) -> Search:
    """Parse one SOSL statement (cached on the text)."""
    match = re.match(r"\s*find\b\s*", text, re.IGNORECASE)
    term_start = match.end() if match else -1
    try:
        tree = _sosl_parser().parse(text)
    except UnexpectedInput as exc:
        if isinstance(exc, UnexpectedToken):
            at = len(text) if exc.token.type == "$END" else exc.token.start_pos
        else:
            at = getattr(exc, "pos_in_stream", None)
        if (
            match is not None
            and (at is None or at == term_start or at >= len(text))
            and (not text[term_start:].startswith("{"))
        ):
            raise ApiError(400, "MALFORMED_SEARCH", NO_TERM) from None
        raise syntax_error(text, exc, "MALFORMED_SEARCH") from None
    return _SearchBuilder(text, "MALFORMED_SEARCH").sosl(_tree(tree.children[0]))


def _run(
    source: RecordSource,
    search: Search,
    specs: Iterable[tuple[Query, str]],
    *,
    api_version: str,
    now: dt.datetime | None,
    default_limit: int | None = None,
) -> dict[str, Any]:
    if search.offset is not None and search.offset > MAX_OFFSET:
        raise ApiError(400, "MALFORMED_SEARCH", OFFSET_RANGE)
    moment = now or dt.datetime.now(dt.UTC)
    overall = search.limit if search.limit is not None else DEFAULT_OVERALL_LIMIT
    records: list[dict[str, Any]] = []
    for spec, text in specs:
        engine = Engine(source, text, api_version=api_version, now=moment)
        obj = engine.object(spec.obj, spec.obj_pos)
        if spec.offset is not None and spec.offset > MAX_OFFSET:
            raise ApiError(400, "MALFORMED_SEARCH", OFFSET_RANGE)
        if spec.limit is None and default_limit is not None:
            spec = Query(
                select=spec.select,
                obj=spec.obj,
                obj_pos=spec.obj_pos,
                where=spec.where,
                order_by=spec.order_by,
                limit=default_limit,
                offset=spec.offset,
                pos=spec.pos,
            )
        plan = engine.plan(spec, obj, alias=None, child=True)
        match = _matcher(obj, search.group, search.term)
        found = [r for r in source.rows(obj.name) if match(r)]
        records.extend(engine.record(plan, row) for row in engine.select_rows(plan, found))
    offset = search.offset or 0
    return {"searchRecords": records[offset : offset + overall]}


def _every_object(source: RecordSource) -> list[tuple[Query, str]]:
    return [
        (Query(select=(Path(("Id",), Pos(1, 1)),), obj=o.name, obj_pos=Pos(1, 1)), o.name)
        for o in source.schema
        if o.searchable and o.queryable
    ]


def run_search(source: RecordSource, sosl: str, *, api_version: str, now: dt.datetime | None = None) -> dict[str, Any]:
    """Run one SOSL statement: ``{"searchRecords": [...]}`` in REST shape, objects in RETURNING order (every
    searchable object, ``Id`` only, without RETURNING). ``now`` anchors date literals in WHERE (default: the clock).

    Raises :class:`ApiError` (400): MALFORMED_SEARCH (no braces, syntax, unescaped reserved characters, a
    one-character term, OFFSET over 2000), INVALID_TYPE / INVALID_FIELD as SOQL reports them."""
    search = parse_search(sosl)
    specs = [(s, sosl) for s in search.returning] if search.returning is not None else _every_object(source)
    return _run(source, search, specs, api_version=api_version, now=now)


def run_parameterized_search(
    source: RecordSource, params: dict[str, Any], *, api_version: str, now: dt.datetime | None = None
) -> dict[str, Any]:
    """``/parameterizedSearch``: ``q`` (required; plain search text), ``fields`` (list or comma-separated; returned
    for every object; only ``Id`` when absent), ``sobjects`` (POST: ``[{name, fields, limit, where}]``) or
    ``sobject`` + ``{name}.fields`` / ``{name}.limit`` / ``{name}.where`` (GET form); every searchable object when
    neither is given; ``in`` (ALL/NAME/EMAIL/PHONE/SIDEBAR), ``overallLimit`` (default 2000), ``defaultLimit``
    (per object, at most 2000), ``offset``."""
    q = params.get("q")
    if not isinstance(q, str) or not q.strip():
        raise ApiError(400, "MALFORMED_SEARCH", "No search term found. The q parameter is required.")
    term = _plain_terms(q)
    if _literal_length(term) < 2:
        raise ApiError(400, "MALFORMED_SEARCH", TOO_SHORT)
    group = str(params.get("in") or "ALL").upper()
    if group not in GROUPS:
        raise ApiError(400, "MALFORMED_SEARCH", f"Invalid search scope: {group}")
    default_fields = _field_names(params.get("fields")) or ["Id"]
    sobjects = params.get("sobjects")
    if sobjects is None and params.get("sobject"):
        sobjects = _get_style_sobjects(params)
    if sobjects is None:
        names = [o.name for o in source.schema if o.searchable and o.queryable]
        entries: list[dict[str, Any]] = [{"name": n} for n in names]
    elif isinstance(sobjects, list) and all(isinstance(s, dict) and isinstance(s.get("name"), str) for s in sobjects):
        entries = sobjects
    else:
        raise ApiError(400, "INVALID_FIELD", "sobjects must be a list of objects, each with a name")
    default_limit = _int_param(params, "defaultLimit")
    if default_limit is not None and not 0 < default_limit <= DEFAULT_OVERALL_LIMIT:
        raise ApiError(400, "INVALID_FIELD", f"defaultLimit must be between 1 and {DEFAULT_OVERALL_LIMIT}")
    specs: list[tuple[Query, str]] = []
    for entry in entries:
        fields = _field_names(entry.get("fields")) or default_fields
        soql = f"SELECT {', '.join(fields)} FROM {entry['name']}"  # noqa: S608 - SOQL for our own parser
        if entry.get("where"):
            soql += f" WHERE {entry['where']}"
        limit = entry.get("limit")
        if limit is not None:
            soql += f" LIMIT {int(limit)}"
        specs.append((parse_query(soql), soql))
    search = Search(
        term, group, tuple(s for s, _ in specs), _int_param(params, "overallLimit"), _int_param(params, "offset")
    )
    return _run(source, search, specs, api_version=api_version, now=now, default_limit=default_limit)


def _plain_terms(q: str) -> TermExpr:
    """``q`` as a search expression; text that is not valid term syntax is searched word by word, literally."""
    try:
        return parse_terms(q)
    except _TermError:
        words = [w for w in re.split(r"\s+", q.strip()) if w]
        return Bool("and", tuple(_term(re.escape(w), w) for w in words))


def _get_style_sobjects(params: dict[str, Any]) -> list[dict[str, Any]]:
    """The GET form: ``sobject=Account`` (repeated, or a list) with ``Account.fields``, ``Account.limit``,
    ``Account.where``."""
    raw = params["sobject"]
    names = [raw] if isinstance(raw, str) else [str(n) for n in raw]
    entries = []
    for name in (n.strip() for n in names if n.strip()):
        entry: dict[str, Any] = {"name": name}
        for key in ("fields", "limit", "where"):
            value = params.get(f"{name}.{key}")
            if value not in (None, ""):
                entry[key] = value
        entries.append(entry)
    return entries


def _field_names(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return []


def _int_param(params: dict[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "INVALID_FIELD", f"{name} must be an integer") from None
