"""CEL for mapping expressions (the ``common-expression-language`` package): the functions they may
call, running a compiled program, and compile checks.

Outbound expressions see ``source`` (the event payload) and ``event`` (its envelope:
:func:`~sfsync.mapping.products.envelope_of`); inbound filters see ``record`` (the Salesforce values).

Building a CEL context converts every value in it to CEL (a couple of µs each) and wraps every
function given: far more than running a compiled expression (under 1 µs). So a mapping's outbound
expressions are analysed once (:class:`OutboundScope`): the paths of ``source`` and ``event`` they
read and the functions they call; an event's context (:class:`OutboundEvaluation`) holds only those
values and functions. ``json(<path>)`` and ``json_object(<path>, 'k', 'v')`` over plain JSON-like
values are evaluated in Python, without the round trip through CEL values (the same text); so are
expressions in a small subset of CEL (paths, ``has``, literals, comparisons, ``in`` a list, ``!``,
``&&``, ``||``, ``? :``, ``size``, ``substring`` and ``date``: the filters, choices and cuts of
mappings) over text, booleans, null and int64 values. Wherever Python could answer otherwise than CEL
(another type, a failing call), CEL answers.
"""

from __future__ import annotations

import datetime as dt
import operator as op
import re
from collections.abc import Callable, Iterable
from collections.abc import Mapping as MappingABC
from typing import Any

import cel
import cel.stdlib

from sfsync.mapping.values import compact_json, json_text, jsonable, jsonable_text

__all__ = [
    "CEL_FUNCTIONS",
    "CompiledExpression",
    "OutboundEvaluation",
    "OutboundScope",
    "compile_problem",
    "read_paths",
    "run_cel",
]


def _json_object(items: list[Any], key: str, value: str) -> str:
    """``json_object(list, 'k', 'v')``: a JSON object {item.k: item.v} (later items win)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if isinstance(item, dict) and item.get(key) is not None:
            out[str(item[key])] = jsonable(item.get(value))
    return compact_json(out)


def _date(value: Any) -> str | None:
    """``date(ts)``: the UTC calendar date of a timestamp, as Salesforce date text."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, int):
        return dt.datetime.fromtimestamp(value / 1000, dt.UTC).date().isoformat()
    return str(value)[:10]


CEL_FUNCTIONS: dict[str, Any] = {
    **cel.stdlib.STDLIB_FUNCTIONS,
    "json": json_text,
    "json_object": _json_object,
    "date": _date,
}
"""Functions available to mapping expressions: the cel-go extension libraries (strings, lists,
math, sets, encoders) plus ``json(x)``, ``json_object(list, key, value)`` and ``date(ts)``."""


def run_cel(program: cel.Program, variables: MappingABC[str, Any]) -> Any:
    """Evaluate a compiled expression with sfsync's functions. Raises what CEL raises."""
    return program.execute(cel.Context(variables=dict(variables), functions=CEL_FUNCTIONS))


_Paths = dict[str, Any]
"""A tree of the paths read below a value: key -> the paths read below it; an empty tree: all of it."""

_OUTBOUND_VARIABLES = ("source", "event")
# A variable and the field names selected after it (`source.post.author`); a name followed by `(` is a
# method call, not a field. Text in string literals may add paths: more is kept, never less.
_REFERENCE = re.compile(r"(?<![\w.])(source|event)\b((?:\s*\.\s*[A-Za-z_]\w*)*)(\s*\()?")
_PATH = r"(?:source|event)(?:\.[A-Za-z_]\w*)*"
_JSON = re.compile(rf"^\s*json\(\s*({_PATH})\s*\)\s*$")
_JSON_OBJECT = re.compile(rf"""^\s*json_object\(\s*({_PATH})\s*,\s*'([^'\\]*)'\s*,\s*'([^'\\]*)'\s*\)\s*$""")
_FIELD = re.compile(r"^\s*((?:source|event)(?:\.[A-Za-z_]\w*)+)\s*$")
_NOT_NATIVE = object()


def read_paths(expression: str) -> dict[str, _Paths]:
    """The paths of ``source`` and ``event`` that ``expression`` may read: variable -> path tree (a
    variable it never names is left out). A path read whole (``json(source)``, ``source.tags.size()``)
    keeps all below it."""
    out: dict[str, _Paths] = {}
    for match in _REFERENCE.finditer(expression):
        names = [n.strip() for n in match.group(2).split(".")[1:]]
        if match.group(3) and names:
            names.pop()  # `source.title.substring(` : substring is a method of source.title
        _add_path(out.setdefault(match.group(1), {}), names)
    return out


def _add_path(tree: _Paths, names: list[str]) -> None:
    node = tree
    for name in names:
        if "" in node:
            return  # read whole already
        node = node.setdefault(name, {})
    node.clear()
    node[""] = None  # marker: read whole


def _merge(into: dict[str, _Paths], paths: dict[str, _Paths]) -> None:
    for variable, tree in paths.items():
        _merge_tree(into.setdefault(variable, {}), tree)


def _merge_tree(into: _Paths, tree: _Paths) -> None:
    if "" in into:
        return
    if "" in tree:
        into.clear()
        into[""] = None
        return
    for key, sub in tree.items():
        _merge_tree(into.setdefault(key, {}), sub)


def _pruned(value: Any, tree: _Paths) -> Any:
    """``value`` with only the paths of ``tree`` (whole where the tree says so, or where it is no map)."""
    if "" in tree or type(value) is not dict:
        return value
    return {key: _pruned(value[key], sub) for key, sub in tree.items() if key in value}


def _json_like(value: Any) -> bool:
    """Whether ``value`` goes through CEL and back unchanged for the JSON helpers: text, numbers
    (int64), booleans, null, aware datetimes, and lists and string-keyed maps of them."""
    kind = type(value)
    if kind is str or kind is bool or kind is float or value is None:
        return True
    if kind is int:
        return bool(-(2**63) <= value < 2**63)
    if kind is dict:
        return all(type(k) is str and _json_like(v) for k, v in value.items())
    if kind is list:
        return all(_json_like(v) for v in value)
    return kind is dt.datetime and value.tzinfo is not None


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _native_json(value: Any) -> Any:
    """``jsonable(value)`` when ``value`` is JSON-like (:func:`_json_like`), else ``_NOT_NATIVE``: the
    check and the conversion in one pass."""
    kind = type(value)
    if kind is str or kind is bool or kind is float or value is None:
        return value
    if kind is int:
        return value if -(2**63) <= value < 2**63 else _NOT_NATIVE
    if kind is dict:
        out: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                return _NOT_NATIVE
            item_kind = type(item)
            if item_kind is str or item_kind is bool or item_kind is float or item is None:
                out[key] = item
            else:
                converted = _native_json(item)
                if converted is _NOT_NATIVE:
                    return _NOT_NATIVE
                out[key] = converted
        return out
    if kind is list:
        items: list[Any] = []
        for item in value:
            converted = _native_json(item)
            if converted is _NOT_NATIVE:
                return _NOT_NATIVE
            items.append(converted)
        return items
    if kind is dt.datetime and value.tzinfo is not None:
        return jsonable(value)
    return _NOT_NATIVE


def _at(variables: MappingABC[str, Any], path: str) -> Any:
    """The value at ``path`` (``source.a.b``); ``_NOT_NATIVE`` when CEL must decide (a value that is not a
    map on the way). Raises KeyError, as CEL does, for a key missing from a map on the way. Whether CEL
    would convert the value is the caller's check."""
    names = path.split(".")
    node: Any = variables.get(names[0], _NOT_NATIVE)
    for name in names[1:]:
        if type(node) is not dict:
            return _NOT_NATIVE
        if name not in node:
            raise KeyError(name)
        node = node[name]
    return node


class _UndecidedError(Exception):
    """A value :func:`_subset_program` does not decide as CEL would: CEL evaluates the expression."""


_Evaluate = Callable[[MappingABC[str, Any]], Any]
_TOKEN = re.compile(
    r"\s*(?:(?P<text>'[^'\\\n]*')|(?P<int>\d+)(?![\w.])|(?P<name>[A-Za-z_]\w*)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[<>!?:()\[\],.]))"
)
_ORDER: dict[str, Callable[[Any, Any], Any]] = {"<": op.lt, "<=": op.le, ">": op.gt, ">=": op.ge}
_INT64 = (-(2**63), 2**63)


def _plain_value(value: Any) -> Any:
    """``value`` when it is text, a boolean, null or an int64 (what the subset compares); else undecided."""
    kind = type(value)
    if kind is str or kind is bool or value is None or (kind is int and _INT64[0] <= value < _INT64[1]):
        return value
    raise _UndecidedError


def _equal(a: Any, b: Any) -> bool:
    """CEL's ``==`` over plain values: values of different types are not equal (``true != 1``)."""
    return type(a) is type(b) and a == b


def _tokens(expression: str) -> list[tuple[str, str]] | None:
    out: list[tuple[str, str]] = []
    pos, end = 0, len(expression.rstrip())
    while pos < end:
        found = _TOKEN.match(expression, pos)
        if found is None or found.lastgroup is None:
            return None
        out.append((found.lastgroup, found.group(found.lastgroup)))
        pos = found.end()
    return out


class _SubsetParser:
    """Compiles the subset of CEL that mapping filters and simple fields use into Python: ``source``/``event``
    paths, ``has(path)``, text/int/bool/null literals, list literals on the right of ``in``, ``!``, ``&&``,
    ``||``, ``? :``, comparisons, ``size(text)``, ``path.substring(...)`` and ``date(path)``. Anything else
    (other calls, arithmetic, macros...) is left to CEL."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> str | None:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else None

    def take(self, text: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens) or (text is not None and self.tokens[self.at][1] != text):
            raise ValueError("not in the subset")
        token = self.tokens[self.at]
        self.at += 1
        return token

    def program(self) -> _Evaluate:
        evaluate = self.ternary()
        if self.at != len(self.tokens):
            raise ValueError("not in the subset")
        return evaluate

    def ternary(self) -> _Evaluate:
        condition = self.either()
        if self.peek() != "?":
            return condition
        self.take("?")
        then = self.ternary()
        self.take(":")
        otherwise = self.ternary()

        def choose(variables: MappingABC[str, Any]) -> Any:
            chosen = condition(variables)
            if type(chosen) is not bool:
                raise _UndecidedError
            return then(variables) if chosen else otherwise(variables)

        return choose

    def either(self) -> _Evaluate:
        left = self.both()
        while self.peek() == "||":
            self.take("||")
            left = self._logical(left, self.both(), stop=True)
        return left

    def both(self) -> _Evaluate:
        left = self.relation()
        while self.peek() == "&&":
            self.take("&&")
            left = self._logical(left, self.relation(), stop=False)
        return left

    @staticmethod
    def _logical(left: _Evaluate, right: _Evaluate, *, stop: bool) -> _Evaluate:
        """``||`` (``stop=True``: true on the left decides) or ``&&`` (false decides), left to right: an
        operand that is no boolean, or any doubt on the left, leaves the whole to CEL (commutative there)."""

        def logical(variables: MappingABC[str, Any]) -> Any:
            try:
                first = left(variables)
            except _UndecidedError:
                raise
            except KeyError:  # CEL's error on the left: the right may still decide (false && ..., ... || true)
                try:
                    second = right(variables)
                except KeyError:
                    raise _UndecidedError from None  # two errors: which one CEL reports is CEL's
                if type(second) is not bool:
                    raise _UndecidedError from None
                if second is stop:
                    return stop
                raise
            if type(first) is not bool:
                raise _UndecidedError
            if first is stop:
                return stop
            second = right(variables)
            if type(second) is not bool:
                raise _UndecidedError
            return second

        return logical

    def relation(self) -> _Evaluate:
        left = self.unary()
        operator = self.peek()
        if operator not in ("==", "!=", "<", "<=", ">", ">=", "in"):
            return left
        self.take()
        if operator == "in":
            items = self.list_literal()

            def contains(variables: MappingABC[str, Any]) -> bool:
                value = _plain_value(left(variables))
                return any(_equal(value, _plain_value(item(variables))) for item in items)

            return contains
        right = self.unary()
        if operator in ("==", "!="):
            negate = operator == "!="

            def equal(variables: MappingABC[str, Any]) -> bool:
                return _equal(_plain_value(left(variables)), _plain_value(right(variables))) is not negate

            return equal
        compare: Callable[[Any, Any], Any] = _ORDER[operator]

        def ordered(variables: MappingABC[str, Any]) -> bool:
            a, b = _plain_value(left(variables)), _plain_value(right(variables))
            if type(a) is not type(b) or a is None or type(a) is bool:
                raise _UndecidedError  # no such overload, or an order CEL may define otherwise
            return bool(compare(a, b))

        return ordered

    def list_literal(self) -> list[_Evaluate]:
        self.take("[")
        items: list[_Evaluate] = []
        while self.peek() != "]":
            items.append(self.ternary())
            if self.peek() != ",":
                break
            self.take(",")
        self.take("]")
        return items

    def unary(self) -> _Evaluate:
        if self.peek() != "!":
            return self.primary()
        self.take("!")
        operand = self.unary()

        def negate(variables: MappingABC[str, Any]) -> bool:
            value = operand(variables)
            if type(value) is not bool:
                raise _UndecidedError
            return not value

        return negate

    def primary(self) -> _Evaluate:
        kind, text = self.take()
        if kind == "text":
            literal: Any = text[1:-1]
        elif kind == "int":
            literal = int(text)
            if not _INT64[0] <= literal < _INT64[1]:
                raise ValueError("not in the subset")
        elif text in ("true", "false", "null"):
            literal = {"true": True, "false": False, "null": None}[text]
        elif text == "(":
            inner = self.ternary()
            self.take(")")
            return inner
        elif text == "has" and self.peek() == "(":
            self.take("(")
            names = self.path(self.take()[1])
            self.take(")")
            if len(names) < 2:
                raise ValueError("not in the subset")
            return self._has(names)
        elif text == "date" and self.peek() == "(":
            self.take("(")
            names = self.path(self.take()[1])
            self.take(")")
            return self._date(names)
        elif text == "size" and self.peek() == "(":
            self.take("(")
            operand = self.ternary()
            self.take(")")
            return self._size(operand)
        elif text in _OUTBOUND_VARIABLES:
            names = self.path(text)
            if self.peek() != ".":
                return self._read(names)
            self.take(".")  # a method call (path stops before one): only substring is in the subset
            self.take("substring")
            self.take("(")
            arguments = [self.ternary()]
            while self.peek() == ",":
                self.take(",")
                arguments.append(self.ternary())
            self.take(")")
            return self._substring(self._read(names), arguments)
        else:
            raise ValueError("not in the subset")
        return lambda variables: literal

    def path(self, first: str) -> list[str]:
        if first not in _OUTBOUND_VARIABLES:
            raise ValueError("not in the subset")
        names = [first]
        while self.peek() == ".":
            if self.at + 2 < len(self.tokens) and self.tokens[self.at + 2][1] == "(":
                break  # `.name(`: a method call on the path so far
            self.take(".")
            kind, name = self.take()
            if kind != "name":
                raise ValueError("not in the subset")
            names.append(name)
        return names

    @staticmethod
    def _walk(variables: MappingABC[str, Any], names: list[str]) -> Any:
        """The value at the path; KeyError, as CEL raises, for a key missing from a map on the way."""
        node: Any = variables.get(names[0], _NOT_NATIVE)
        for name in names[1:]:
            if type(node) is not dict:
                raise _UndecidedError  # CEL says why (no such overload)
            if name not in node:
                raise KeyError(name)
            node = node[name]
        return node

    def _read(self, names: list[str]) -> _Evaluate:
        walk = self._walk
        return lambda variables: _plain_value(walk(variables, names))

    def _date(self, names: list[str]) -> _Evaluate:
        """``date(path)``: sfsync's ``date`` of the value as CEL hands it over (an aware datetime, an int, text
        or null as they are; a naive datetime CEL would take as UTC, left to CEL)."""
        walk = self._walk

        def date(variables: MappingABC[str, Any]) -> Any:
            value = walk(variables, names)
            kind = type(value)
            if (kind is dt.datetime and value.tzinfo is not None) or kind is str or value is None:
                return _date(value)
            if kind is int and _INT64[0] <= value < _INT64[1]:
                return _date(value)
            raise _UndecidedError

        return date

    @staticmethod
    def _size(operand: _Evaluate) -> _Evaluate:
        """``size(text)`` as the CEL runtime counts it: the text's UTF-8 bytes (the equivalence tests pin it)."""

        def size(variables: MappingABC[str, Any]) -> int:
            value = operand(variables)
            if type(value) is not str:
                raise _UndecidedError
            return len(value.encode())

        return size

    @staticmethod
    def _substring(target: _Evaluate, arguments: list[_Evaluate]) -> _Evaluate:
        """``text.substring(start[, end])``: the function CEL calls, called directly; a failure is CEL's to report."""
        substring = CEL_FUNCTIONS["substring"]

        def call(variables: MappingABC[str, Any]) -> Any:
            text = target(variables)
            bounds = [argument(variables) for argument in arguments]
            if type(text) is not str or len(bounds) > 2 or any(type(b) is not int for b in bounds):
                raise _UndecidedError
            try:
                return substring(text, *bounds)
            except Exception:  # noqa: BLE001 - CEL raises its own error for it
                raise _UndecidedError from None

        return call

    def _has(self, names: list[str]) -> _Evaluate:
        walk, parent, last = self._walk, names[:-1], names[-1]

        def has(variables: MappingABC[str, Any]) -> bool:
            try:
                node = walk(variables, parent)
            except KeyError:
                raise _UndecidedError from None  # CEL's error for has() over a missing map
            if type(node) is not dict:
                raise _UndecidedError
            return last in node

        return has


def _subset_program(expression: str) -> _Evaluate | None:
    """The expression in Python when it is in :class:`_SubsetParser`'s subset, else None. The program
    raises KeyError where CEL does (a key missing from a map), and :class:`_UndecidedError` for values it
    cannot decide as CEL would (CEL then evaluates it)."""
    tokens = _tokens(expression)
    if not tokens:
        return None
    try:
        return _SubsetParser(tokens).program()
    except ValueError:
        return None


class CompiledExpression:
    """One outbound expression: its program, what it reads, and its Python form when it has one."""

    __slots__ = ("functions", "native", "paths", "program", "subset")

    def __init__(self, expression: str) -> None:
        self.program = cel.compile(expression)
        self.paths = read_paths(expression)
        used = set(self.program.functions())
        self.functions = {name: f for name, f in CEL_FUNCTIONS.items() if name in used}
        self.native: tuple[str, str, str, str] | None = None
        """(kind, path, key, value) of an expression evaluated in Python: ("json", path, "", ""),
        ("json_object", path, key, value), ("field", path, "", "") (a field's text, number,
        boolean or null, as CEL gives it back) or ("subset", "", "", "") (:attr:`subset`)."""
        self.subset: _Evaluate | None = None
        """The expression in Python when it is in the subset of :class:`_SubsetParser` (filters, choices)."""
        if (found := _JSON.match(expression)) is not None:
            self.native = ("json", found.group(1), "", "")
        elif (found := _JSON_OBJECT.match(expression)) is not None:
            self.native = ("json_object", found.group(1), found.group(2), found.group(3))
        elif (found := _FIELD.match(expression)) is not None:
            self.native = ("field", found.group(1), "", "")
        elif (subset := _subset_program(expression)) is not None:
            self.native, self.subset = ("subset", "", "", ""), subset

    def run_native(self, variables: MappingABC[str, Any]) -> Any:
        """The value in Python, or ``_NOT_NATIVE`` when it has no Python form for these values. Raises
        KeyError, as CEL does, when the path names a key missing from a map."""
        assert self.native is not None
        kind, path, key, value = self.native
        if self.subset is not None:
            try:
                return self.subset(variables)
            except _UndecidedError:
                return _NOT_NATIVE
        found = _at(variables, path)
        if found is _NOT_NATIVE:
            return _NOT_NATIVE
        if kind == "field":
            return found if type(found) in _SCALARS and _json_like(found) else _NOT_NATIVE
        if kind == "json":
            converted = _native_json(found)
            if converted is _NOT_NATIVE:
                return _NOT_NATIVE
            return jsonable_text(converted)
        if found is None:
            return "{}"  # json_object(null, ...): no items
        if type(found) is not list or not _json_like(found):
            return _NOT_NATIVE
        return _json_object(found, key, value)


class OutboundScope:
    """A mapping's outbound expressions, compiled and analysed once: for each its program, and for the
    context they run in only the paths of ``source``/``event`` and the functions those run by CEL use."""

    __slots__ = ("expressions", "functions", "paths")

    def __init__(self, expressions: Iterable[str]) -> None:
        self.expressions: dict[str, CompiledExpression] = {}
        self.paths: dict[str, _Paths] = {}
        self.functions: dict[str, Any] = {}
        for expression in dict.fromkeys(expressions):
            compiled = self.expressions[expression] = CompiledExpression(expression)
            if compiled.native is None:
                _merge(self.paths, compiled.paths)
                self.functions.update(compiled.functions)

    def context(self, source: MappingABC[str, Any], event: MappingABC[str, Any]) -> cel.Context:
        """A context holding what this scope's expressions read of ``source`` and ``event``."""
        return _context(self.paths, self.functions, {"source": source, "event": event})


def _context(paths: dict[str, _Paths], functions: dict[str, Any], variables: MappingABC[str, Any]) -> cel.Context:
    values = {name: _pruned(variables[name], tree) for name, tree in paths.items() if name in variables}
    return cel.Context(variables=values, functions=functions)


class OutboundEvaluation:
    """One event's evaluation of one mapping's outbound expressions (``source`` and ``event`` must not
    change meanwhile): the CEL context is built on first use and shared by its expressions."""

    __slots__ = ("_context", "scope", "variables")

    def __init__(self, scope: OutboundScope, source: MappingABC[str, Any], event: MappingABC[str, Any]) -> None:
        self.scope = scope
        self.variables = {"source": source, "event": event}
        self._context: cel.Context | None = None

    def run(self, expression: str) -> Any:
        """The value of one of the scope's expressions. Raises what CEL raises (KeyError for a missing key)."""
        compiled = self.scope.expressions.get(expression)
        if compiled is None:  # not one of the mapping's expressions when the scope was made
            compiled = CompiledExpression(expression)
            return compiled.program.execute(_context(compiled.paths, compiled.functions, self.variables))
        if compiled.native is not None:
            found = compiled.run_native(self.variables)
            if found is not _NOT_NATIVE:
                return found
            return compiled.program.execute(_context(compiled.paths, compiled.functions, self.variables))
        if self._context is None:
            self._context = _context(self.scope.paths, self.scope.functions, self.variables)
        return compiled.program.execute(self._context)


def compile_problem(expression: str) -> str | None:
    """Why ``expression`` does not compile, or None."""
    try:
        cel.compile(expression)
    except (ValueError, RuntimeError, TypeError) as exc:
        return str(exc).splitlines()[0]
    return None
