"""A mapping's outbound expressions run in a context of only what they read (paths, functions), and
the JSON helpers run in Python: the same values as CEL over the whole payload with every function."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sfsync.mapping import load_mappings, run_cel
from sfsync.mapping.cel import OutboundEvaluation, OutboundScope, read_paths
from sfsync.mapping.products import envelope_of
from sfsync.processors.outbound.plan import _plain
from sfsync.producers.fake import CommunitySimulator
from sfsync.serde.codec import AvroDecoder, AvroEncoder
from sfsync.serde.schema import load_topic_schema
from sfsync.topics import PRODUCT_TOPICS
from tests.kit import FakeRegistry

EXTRA = [
    # the subset of CEL evaluated in Python (filters, choices)
    "has(source.member.email) && source.member.email != null && source.member.email != ''",
    "!has(source.member.email) || source.member.email == 'a@b.c'",
    "event.type in ['UserCreated', 'EventAttend', 1, null] ? 'in' : 'out'",
    "source.member.member_type == null ? 'none' : source.member.member_type == 'GUEST' ? 'g' : 'other'",
    "source.member.location.country != null && source.member.location.country < 'M'",
    "has(source.member.location.city) || has(source.event.title)",
    "source.member == null || !(source.member.first_name == source.member.last_name)",
    "source.event.published == true && !(source.event.title in [''])",
    "source.member.joined_at == null",
    "source.post.priority >= 'b' ? 1 : 0",
    "size(source.event.title) > 20 ? source.event.title.substring(0, 20) : source.event.title",
    "source.member.first_name.substring(1)",
    "date(source.member.joined_at)",
    "date(event.occurred_at)",
    "source.event.end_at == null ? date(source.event.start_at) : date(source.event.end_at)",
    "size(source.member.email) >= 0",
    "json(source.answers)",
    "json(event)",
    "json(source.member)",
    "json_object(source.answers, 'question', 'answer')",
    "json_object(source.member.spaces, 'id', 'name')",
    "json(source.no_such_field)",
    "has(source.member.email) ? source.member.email.lowerAscii() : 'none'",
    "size(source) > 3",
    "source.member.first_name + ' ' + source.member.last_name",
    "event.type + ':' + string(event.occurred_at)",
    "event.type",
    "event.occurred_at",
    "source.member.email",
    "source.member",
    "source.event.location",
    "source.event.location.city",
]


def _decoded_events(count: int) -> list[tuple[str, dict[str, Any]]]:
    """The simulator's events as the processor plans them: encoded, decoded, uuids as text."""
    registry = FakeRegistry()
    encoders: dict[str, AvroEncoder] = {}
    for spec in PRODUCT_TOPICS:
        encoder = AvroEncoder(registry, spec.base, load_topic_schema(spec.base))  # type: ignore[arg-type]
        encoders.update(dict.fromkeys(encoder.schema.record_names, encoder))
    decoder = AvroDecoder(registry)  # type: ignore[arg-type]
    out = []
    for event in CommunitySimulator(seed=3).stream(count):
        name, value = decoder.decode(encoders[event.RECORD_NAME].encode_checked(event.RECORD_NAME, event.to_avro()))
        out.append((name, _plain(value)))
    return out


def _outcome(run: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "value", run(*args)
    except KeyError as exc:  # a missing key: which one (the reason a filter's failure gives)
        return "error", f"KeyError: {exc}"
    except Exception as exc:  # the kind of failure is what is compared
        return "error", type(exc).__name__


def test_every_outbound_expression_gives_what_cel_gives_over_the_whole_payload() -> None:
    mappings = load_mappings().mappings
    events = _decoded_events(600)
    compared = 0
    for mapping in mappings:
        expressions = [*mapping.outbound_expressions(), *EXTRA]
        scope = OutboundScope(expressions)
        assert any(c.native for c in scope.expressions.values()), "the JSON helpers run in Python"
        for event_type, source in events:
            envelope = envelope_of(source, event_type)
            evaluation = OutboundEvaluation(scope, source, envelope)
            for expression in expressions:
                full = _outcome(run_cel, mapping.program(expression), {"source": source, "event": envelope})
                assert _outcome(evaluation.run, expression) == full, (expression, event_type)
                compared += 1
    assert compared > 10_000


def test_an_expression_added_after_the_scope_was_made_still_evaluates() -> None:
    scope = OutboundScope(["event.type"])
    source = {"member": {"email": "a@b.c"}}
    evaluation = OutboundEvaluation(scope, source, {"type": "UserCreated"})
    assert evaluation.run("source.member.email") == "a@b.c"
    assert evaluation.run("event.type") == "UserCreated"


def test_the_context_holds_only_the_paths_read() -> None:
    scope = OutboundScope(
        ["source.member.email.startsWith('a')", "event.type + 'x' == 'y'", "json(source)", "event.event_id"]
    )
    assert scope.paths == {"source": {"member": {"email": {"": None}}}, "event": {"type": {"": None}}}
    assert scope.functions == {}  # none of sfsync's or the extension functions is called by CEL here


@pytest.mark.parametrize(
    ("expression", "paths"),
    [
        ("source.a.b + source.a", {"source": {"a": {"": None}}}),
        ("source.title.substring(0, 3)", {"source": {"title": {"": None}}}),
        ("size(source)", {"source": {"": None}}),
        ("x.source.y", {}),
        ("source['a'].b", {"source": {"": None}}),
        ("[source.p.a, source.p.b].join(' ')", {"source": {"p": {"a": {"": None}, "b": {"": None}}}}),
    ],
)
def test_read_paths_keeps_every_path_an_expression_may_read(expression: str, paths: dict[str, Any]) -> None:
    assert read_paths(expression) == paths


@pytest.mark.parametrize(
    "value",
    [2**64, b"\x00\xff", ("a", 1), [1, 2**64], {"y": [b"\x00"]}, {1: "a"}, dt.datetime(2026, 1, 2, 3, 4, 5)],
    ids=["big-int", "bytes", "tuple", "big-int-in-list", "bytes-in-map", "int-key", "naive-datetime"],
)
def test_a_value_cel_would_convert_is_left_to_cel_by_the_json_helpers(value: Any) -> None:
    source = {"member": {"x": value}}
    mapping = load_mappings().mappings[0]
    for expression in ("json(source)", "json(source.member)", "json_object([source.member], 'x', 'x')"):
        full = _outcome(run_cel, mapping.program(expression), {"source": source, "event": {}})
        scoped = OutboundEvaluation(OutboundScope([expression]), source, {})
        assert _outcome(scoped.run, expression) == full


@pytest.mark.parametrize(
    ("source", "expression"),
    [
        ({}, "json_object(source.answers, 'question', 'answer')"),
        ({"answers": None}, "json_object(source.answers, 'question', 'answer')"),
        ({"member": {}}, "json(source.member.email)"),
        ({}, "source.member.email"),
    ],
    ids=["json_object-missing", "json_object-null", "json-missing", "field-missing"],
)
def test_the_json_helpers_answer_a_missing_or_null_path_in_python_as_cel_does(
    source: dict[str, Any], expression: str
) -> None:
    mapping = load_mappings().mappings[0]
    full = _outcome(run_cel, mapping.program(expression), {"source": source, "event": {}})
    scope = OutboundScope([expression])
    assert scope.expressions[expression].native is not None
    assert _outcome(scope.expressions[expression].run_native, {"source": source, "event": {}}) == full


_TRICKY = {
    "source": {
        "a": "x",
        "u": "héllo",
        "n": 2,
        "t": True,
        "z": None,
        "m": {"k": "v"},
        "l": ["x"],
        "big": 2**64,
        "aware": dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC),
        "other_zone": dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "naive": dt.datetime(2026, 3, 1, 23, 30),
        "ms": 1_772_357_400_123,
    },
    "event": {},
}


@pytest.mark.parametrize(
    "expression",
    [
        "source.t == 1",
        "source.n == 2",
        "source.a != null",
        "source.z == null",
        "source.z != ''",
        "source.n in ['2', 2]",
        "source.t in [1, true]",
        "source.a < 'y'",
        "source.n >= 3",
        "source.a < 3",
        "source.t < false",
        "source.z < 1",
        "!source.n",
        "source.n && true",
        "false && source.n",
        "true || source.n",
        "source.missing && false",
        "false && source.missing",
        "source.n ? 1 : 2",
        "has(source.z)",
        "has(source.m.k)",
        "has(source.m.q)",
        "has(source.a.q)",
        "has(source.missing.q)",
        "source.m == null",
        "source.l == null",
        "source.big == 1",
        "source.m.k == 'v' ? source.a : source.z",
        "(source.n == 2) == (source.a == 'x')",
        "9223372036854775807 == source.n",
        "source.missing == null",
        "source.missing in ['a']",
        "'a' in [source.missing]",
        "source.missing || true",
        "source.missing || false",
        "source.missing && true",
        "source.missing && source.gone",
        "source.missing && source.n",
        "true && source.missing",
        "source.missing ? 1 : 2",
        "true ? source.missing : 1",
        "false ? source.missing : 1",
        "source.m.missing == 'v'",
        "!source.missing",
        "has(source.m.missing.q)",
        "size(source.u) == 6",
        "size(source.a)",
        "size(source.n)",
        "size(source.l)",
        "size(source.missing)",
        "source.u.substring(0, 2)",
        "source.u.substring(0, 6)",
        "source.u.substring(2)",
        "source.u.substring(3, 1)",
        "source.u.substring(0, source.n)",
        "source.a.substring('x')",
        "source.n.substring(0, 1)",
        "date(source.aware)",
        "date(source.other_zone)",
        "date(source.naive)",
        "date(source.ms)",
        "date(source.a)",
        "date(source.z)",
        "date(source.t)",
        "date(source.missing)",
    ],
)
def test_the_subset_evaluated_in_python_gives_what_cel_gives_or_leaves_it_to_cel(expression: str) -> None:
    mapping = load_mappings().mappings[0]
    full = _outcome(run_cel, mapping.program(expression), _TRICKY)
    scoped = OutboundEvaluation(OutboundScope([expression]), _TRICKY["source"], _TRICKY["event"])
    assert _outcome(scoped.run, expression) == full


def test_the_default_mappings_filters_and_choices_run_in_python_without_a_cel_context() -> None:
    mappings = {m.name: m for m in load_mappings().mappings}
    decided = 0
    for event_type, source in _decoded_events(300):
        envelope = envelope_of(source, event_type)
        for name, expression in (
            ("members", mappings["members"].outbound_filter),
            ("events", mappings["events"].outbound_filter),
            ("attendance", "event.type in ['EventAttend', 'EventCheckIn'] ? 'attended' : 'registered'"),
        ):
            assert expression is not None
            compiled = OutboundScope([expression]).expressions[expression]
            assert compiled.subset is not None, name
            found = compiled.run_native({"source": source, "event": envelope})
            if name == "attendance" or (name == "members" and "member" in source):
                assert found in (True, False, "attended", "registered"), (name, event_type)
                decided += 1
    assert decided > 300


@pytest.mark.parametrize(
    "expression",
    ["source.a.size() > 1", "source.a + 'x' == 'y'", "source.a.startsWith('x')", "source.n * 2 == 4", "x.y == 1"],
)
def test_calls_arithmetic_and_other_variables_are_left_to_cel(expression: str) -> None:
    assert OutboundScope([expression]).expressions[expression].subset is None


def test_the_default_mappings_of_members_events_attendance_and_activities_need_no_cel_context() -> None:
    for mapping in load_mappings().mappings:
        if mapping.name in ("members", "events", "attendance", "activities"):
            scope = mapping.outbound_scope()
            assert scope.paths == {}, mapping.name  # every expression has a Python form
            assert scope.functions == {}, mapping.name
