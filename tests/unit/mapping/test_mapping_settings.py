"""The mapping setting (``SFSYNC_MAPPING_FILE``, ``SFSYNC_MAPPING_VARS``): read the same way by every
process that maps, every invalid value and every retired per-process name reported at once, and
``sfsync mappings validate`` checks what it names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sfsync.cli.mappings import mappings_app
from sfsync.errors import ConfigError
from sfsync.mapping import (
    MappingError,
    MappingSettings,
    load_configured_mappings,
    load_mapping_settings,
)
from sfsync.mapping.settings import RETIRED_NAMES, retired_names_set
from sfsync.mapping.variables import parse_variables

runner = CliRunner()

ONE_MAPPING = textwrap.dedent(
    """
    version: 1
    variables: {object: Contact}
    mappings:
      - name: people
        entity: member
        target: ${object}
        match: [{field: Email, from: member.email}]
        fields:
          - {sf: Email, from: member.email}
          - {sf: LastName, from: member.last_name, default: "-"}
    """
)


@pytest.fixture(autouse=True)
def no_mapping_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SFSYNC_MAPPING_FILE", "SFSYNC_MAPPING_VARS", *RETIRED_NAMES):
        monkeypatch.delenv(name, raising=False)


def test_unset_it_is_the_shipped_default_mapping_with_its_own_variables() -> None:
    settings = load_mapping_settings()
    assert settings.file is None and settings.vars == {}
    mappings = load_configured_mappings(settings)
    assert mappings.source == "default.yaml"
    assert mappings.get("members").target == "Contact"  # type: ignore[union-attr]


def test_member_object_lead_moves_every_person_mapping_to_lead(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFSYNC_MAPPING_VARS", "member_object=Lead, activities=false")
    mappings = load_configured_mappings()  # what the processors and the poller each call
    assert mappings.get("members").target == "Lead"  # type: ignore[union-attr]
    assert "LeadId" in mappings.get("attendance").parents  # type: ignore[union-attr]
    assert [m.name for m in mappings.enabled()] == ["members", "events", "attendance", "forum_cases"]


def test_the_file_and_json_variables_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "people.yaml"
    path.write_text(ONE_MAPPING)
    monkeypatch.setenv("SFSYNC_MAPPING_FILE", str(path))
    monkeypatch.setenv("SFSYNC_MAPPING_VARS", '{"object": "Lead"}')
    settings = load_mapping_settings()
    assert settings == MappingSettings(file=path, vars={"object": "Lead"})
    mappings = load_configured_mappings()
    assert mappings.source == str(path) and mappings.get("people").target == "Lead"  # type: ignore[union-attr]


def test_variables_are_a_json_object_or_name_value_pairs() -> None:
    assert parse_variables('{"prefix": "Acme_", "n": 2}') == {"prefix": "Acme_", "n": "2"}
    assert parse_variables("prefix=Acme_, source=Community") == {"prefix": "Acme_", "source": "Community"}
    assert parse_variables("empty=") == {"empty": ""}
    assert parse_variables("") == {} and parse_variables(None) == {}
    assert MappingSettings(vars="a=b").vars == {"a": "b"}
    for bad in ("novalue", "=x", "[1, 2]", "{not json"):
        with pytest.raises(ValueError, match=r"expected|JSON"):
            parse_variables(bad)


def test_overrides_replace_the_file_and_go_over_the_variables_name_by_name(tmp_path: Path) -> None:
    settings = MappingSettings(vars={"member_object": "Lead", "prefix": "acme__"})
    assert settings.with_overrides() == settings
    other = settings.with_overrides(tmp_path / "x.yaml", {"prefix": ""})
    assert other.file == tmp_path / "x.yaml"
    assert other.vars == {"member_object": "Lead", "prefix": ""}


def test_invalid_values_and_retired_names_are_reported_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFSYNC_MAPPING_VARS", "novalue")
    monkeypatch.setenv("SFSYNC_PROCESSOR_MAPPING_VARIABLES", "member_object=Lead")
    monkeypatch.setenv("sfsync_source_mapping_file", "/etc/sfsync/mapping.yaml")  # settings ignore case
    with pytest.raises(ConfigError) as caught:
        load_mapping_settings()
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith("vars: ") and "novalue" in problems[0]
    assert problems[1:] == [
        "SFSYNC_PROCESSOR_MAPPING_VARIABLES is no longer read: set SFSYNC_MAPPING_VARS, which every process "
        "that maps reads",
        "SFSYNC_SOURCE_MAPPING_FILE is no longer read: set SFSYNC_MAPPING_FILE, which every process that maps reads",
    ]


def test_a_retired_name_alone_stops_the_process_rather_than_running_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SFSYNC_INBOUND_MAPPING_FILE", "/etc/sfsync/mapping.yaml")
    with pytest.raises(ConfigError, match="SFSYNC_INBOUND_MAPPING_FILE is no longer read"):
        load_configured_mappings()
    assert retired_names_set({"SFSYNC_MAPPING_FILE": "x", "PATH": "/bin"}) == []


def test_an_unreadable_file_is_a_mapping_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SFSYNC_MAPPING_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(MappingError, match="cannot read"):
        load_configured_mappings()


def test_validate_checks_what_the_setting_names_with_set_over_it(tmp_path: Path) -> None:
    env = {"SFSYNC_MAPPING_VARS": "member_object=Lead"}
    result = runner.invoke(mappings_app, ["validate"], env=env)
    assert result.exit_code == 0, result.output
    assert "default.yaml: valid" in result.output

    env = {"SFSYNC_MAPPING_VARS": "member_object=Person,prefix="}
    result = runner.invoke(mappings_app, ["validate"], env=env)
    assert result.exit_code == 1
    assert "unknown Salesforce object Person" in result.output
    result = runner.invoke(mappings_app, ["validate", "--set", "member_object=Lead"], env=env)
    assert result.exit_code == 0, result.output

    path = tmp_path / "people.yaml"
    path.write_text(ONE_MAPPING)
    env = {"SFSYNC_MAPPING_FILE": str(path), "SFSYNC_MAPPING_VARS": "object=Person"}
    result = runner.invoke(mappings_app, ["validate", "--set", "object=Contact"], env=env)
    assert result.exit_code == 0, result.output
    assert f"{path}: valid (1 enabled mapping(s): people)" in result.output

    result = runner.invoke(mappings_app, ["validate"], env={"SFSYNC_SOURCE_MAPPING_FILE": str(path)})
    assert result.exit_code == 2
    assert "SFSYNC_SOURCE_MAPPING_FILE is no longer read" in result.output
