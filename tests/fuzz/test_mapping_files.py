"""Generated mapping files into loading and validation: each ends as a loaded file whose validation
lists its problems, or as a :class:`~sfsync.mapping.MappingError` listing them, never another exception.

Documents are mapping-shaped (the keys a mapping file has, with values of the right type most of the
time: names, targets and fields of the emulator's default org, product paths, CEL-ish expressions,
``${variables}``), then damaged (keys dropped, values of the wrong type, unknown keys, deep nesting),
plus raw text. Each is checked against the emulator's default org.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from sfsync.cli.mappings import emulator_describes
from sfsync.mapping import MappingError, MappingFile, parse_mappings, validate_against_describe, validate_reads
from sfsync.mapping.products import known_event_types

DESCRIBES = emulator_describes()
OBJECTS = sorted(DESCRIBES)
FIELDS = sorted({str(f["name"]) for d in DESCRIBES.values() for f in d.get("fields", [])})
EVENT_TYPES = sorted(known_event_types())
PATHS = [
    "member.email", "member.member_id", "member.first_name", "member.last_name", "member.member_type",
    "member.company", "event.id", "event.title", "event.starts_at", "post.id", "post.title", "event_id",
    "occurred_at", "workspace_id", "member", "nope.nothing",
]  # fmt: skip
CEL_TOKENS = [
    "source", "event", "record", ".", "member", "email", "type", "event_id", "occurred_at", "'x'", '"y"', "1",
    "2.5", "-", "+", "*", "/", "%", "==", "!=", "<", ">=", "&&", "||", "!", "?", ":", "(", ")", "[", "]", "{", "}",
    ",", "size(", "has(", "json(", "date(", "json_object(", "lowerAscii()", "matches(", "int(", "string(",
    "null", "true", "in", "map(", "x,", "exists(", "\\", "'", "é", "\u0000", "💥", " ",
]  # fmt: skip

names = st.one_of(st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True), st.text(max_size=12))
cel = st.one_of(st.lists(st.sampled_from(CEL_TOKENS), max_size=14).map("".join), st.text(max_size=30))
VARIABLES = st.sampled_from(["v", "prefix", "flag", "nested"])
variable_refs = st.one_of(names, VARIABLES, VARIABLES).map(lambda n: f"${{{n}}}")
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20), variable_refs
)
anything = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``strategy``'s values most of the time; now and then a value of any type."""
    return st.one_of(strategy, strategy, strategy, anything)


@st.composite
def damaged(draw: st.DrawFn, shape: dict[str, st.SearchStrategy[Any]]) -> dict[Any, Any]:
    """A dict with some of ``shape``'s keys (values from their strategies, or of any type), and now and
    then a key no mapping file has."""
    keys = draw(st.lists(st.sampled_from(sorted(shape)), unique=True, max_size=len(shape)))
    out: dict[Any, Any] = {k: draw(maybe(shape[k])) for k in keys}
    if draw(st.integers(0, 3)) == 0:
        out[draw(st.one_of(st.text(max_size=8), variable_refs, variable_refs, st.integers()))] = draw(anything)
    return out


field_maps = damaged(
    {
        "sf": st.sampled_from(FIELDS) | st.text(max_size=12),
        "from": st.sampled_from(PATHS) | st.lists(st.sampled_from(PATHS), max_size=2),
        "constant": st.one_of(st.text(max_size=300), st.integers(), st.booleans()),
        "expr": cel,
        "direction": st.sampled_from(["to_salesforce", "to_product", "both", "sideways"]),
        "policy": st.sampled_from(["always", "if_empty"]),
        "default": st.text(max_size=10),
        "value_map": st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
        "only_for": st.lists(st.sampled_from(OBJECTS), max_size=2),
        "conflict": st.sampled_from(["last_write_wins", "product_wins", "salesforce_wins"]),
    }
)
match_keys = damaged(
    {"field": st.sampled_from(FIELDS) | st.text(max_size=10), "from": st.sampled_from(PATHS), "expr": cel}
)
mappings = damaged(
    {
        "name": names,
        "entity": st.sampled_from(["member", "event", "attendance", "forum"])
        | st.lists(st.sampled_from(["member", "event"]), max_size=2),
        "events": st.lists(st.sampled_from(EVENT_TYPES) | st.text(max_size=10), max_size=3),
        "target": st.sampled_from(OBJECTS) | st.text(max_size=10),
        "enabled": st.booleans(),
        "match": st.lists(match_keys | st.lists(match_keys, max_size=2), max_size=3),
        "create_if_missing": st.booleans(),
        "record_type": st.text(max_size=10),
        "outbound_filter": cel,
        "inbound_filter": cel,
        "conflict": st.sampled_from(["last_write_wins", "product_wins", "salesforce_wins"]),
        "fields": st.lists(field_maps, max_size=5),
        "parents": st.dictionaries(
            st.sampled_from(FIELDS) | st.text(max_size=8),
            damaged({"mapping": names, "required": st.booleans()}),
            max_size=2,
        ),
        "delete": damaged(
            {
                "when": st.lists(st.sampled_from(EVENT_TYPES), max_size=2),
                "action": st.sampled_from(["delete", "update", "ignore"]),
                "fields": st.lists(field_maps, max_size=2),
            }
        ),
        "inbound": damaged(
            {
                "delete": st.sampled_from(["ignore", "flag", "delete"]),
                "flag_field": st.sampled_from(PATHS),
                "unlinked": st.sampled_from(["ignore", "import"]),
                "member_id_field": st.sampled_from(FIELDS),
                "links": st.lists(
                    damaged({"name": names, "sf": st.sampled_from(FIELDS), "only_for": st.lists(st.text(max_size=8))}),
                    max_size=2,
                ),
            }
        ),
    }
)
documents = damaged(
    {
        "version": st.just(1) | st.integers(),
        "connection": st.text(max_size=10),
        "variables": st.dictionaries(VARIABLES | names, anything, max_size=4),
        "mappings": st.lists(mappings, max_size=3),
    }
)


YAML_PIECES = [
    "mappings:", "- ", "name: x", "&a ", "*a", "? [a]\n: b", "!!binary aGk=", "{", "}", "[", "]", "\n", "  ",
    "${v}: 1", "variables: {v: [1]}", "variables: {v: {a: 1}}", "\t", "%YAML 1.1\n---\n", "...", "'", '"',
]  # fmt: skip
DEPTHS = st.sampled_from([2, 60, 61, 62, 63, 64, 65, 300, 1200])
"""Around the deepest file loading takes, and well past what PyYAML reads without running out of stack."""


def as_yaml(document: Any) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


yaml_texts = st.one_of(
    documents.map(as_yaml),
    documents.map(as_yaml),
    documents.map(as_yaml),
    st.text(max_size=200),
    DEPTHS.map(lambda depth: "mappings: " + "[" * depth + "]" * depth),
    DEPTHS.map(lambda depth: "mappings:\n- name: a\n  fields: " + "{a: " * depth + "1" + "}" * depth),
    st.lists(st.sampled_from(YAML_PIECES), max_size=12).map("".join),
)


def loaded_or_refused(text: str) -> MappingFile | None:
    """The file ``text`` holds, or None when it was refused with a MappingError listing its problems."""
    try:
        return parse_mappings(text, "fuzz.yaml")
    except MappingError as exc:
        refused = exc
    assert refused.problems and all(isinstance(p, str) and p for p in refused.problems)
    assert str(refused).startswith("invalid mapping file fuzz.yaml")
    return None


@settings(max_examples=max(50, settings.default.max_examples // 2))
@given(text=yaml_texts)
def test_a_mapping_file_loads_or_is_refused_with_its_problems(text: str) -> None:
    loaded_or_refused(text)


@settings(max_examples=max(50, settings.default.max_examples // 2))
@given(document=documents.filter(lambda d: isinstance(d.get("mappings"), list) and d["mappings"]))
def test_a_loaded_mapping_file_validates_to_a_list_of_problems(document: dict[str, Any]) -> None:
    mappings_file = loaded_or_refused(as_yaml(document))
    if mappings_file is None:
        return
    problems = validate_against_describe(mappings_file, DESCRIBES)
    assert all(isinstance(p, str) and p.startswith("fuzz.yaml") for p in problems)
    reads = {m.name: m.inbound_read_fields() for m in mappings_file.mappings}
    problems = validate_reads(mappings_file, reads, DESCRIBES)
    assert all(isinstance(p, str) and p.startswith("fuzz.yaml") for p in problems)
