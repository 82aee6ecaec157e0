"""``sfsync mappings validate`` as a user runs it: every constant rule and an unknown field in one run,
against the emulator's org file offline and against a running org over HTTP (``--live``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sfsync.cli.mappings import mappings_app
from sfsync.emulator.server import RunningEmulator, serve_in_thread
from tests.kit import BAD_MAPPING

runner = CliRunner()

# (line in BAD_MAPPING, field, what the problem says)
EXPECTED = [
    (8, "members", "6 constants; at most 5 per mapping"),
    (
        9,
        "members.LeadSource",
        "constant 'web' is not an active value of picklist Contact.LeadSource (did you mean 'Web'?)",
    ),
    (10, "members.Birthdate", "constants only go to text and picklist fields; Contact.Birthdate is date"),
    (11, "members.DoNotCall", "constants only go to text and picklist fields; Contact.DoNotCall is boolean"),
    (12, "members.Description", "constant is 256 characters; at most 255"),
    (13, "members.Title", "constants only go to Salesforce (direction is both)"),
    (14, "members.Titel", "Contact has no field Titel (did you mean Title?)"),
]


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_MAPPING)
    return path


@pytest.fixture
def org(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    """A running emulated org, and the SALESFORCE_* settings of a connected app pointing at it."""
    running = serve_in_thread()
    app = running.emulator.auth.config.connected_apps[0]
    monkeypatch.setenv("SALESFORCE_LOGIN_URL", running.base_url)
    monkeypatch.setenv("SALESFORCE_AUTH_FLOW", "client_credentials")
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", app.client_id)
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", app.client_secret)
    try:
        yield running
    finally:
        running.stop()


def _assert_every_problem(output: str, path: Path) -> None:
    for line, where, message in EXPECTED:
        assert f"{path}:{line}: {where}: {message}" in output, f"missing line {line} ({message}) in:\n{output}"
    assert f"{len(EXPECTED)} problem(s) in {path}" in output


def test_every_constant_rule_and_an_unknown_field_are_reported_at_once_against_the_org_file(bad_file: Path) -> None:
    result = runner.invoke(mappings_app, ["validate", str(bad_file)])
    assert result.exit_code == 1
    _assert_every_problem(result.output, bad_file)


def test_live_validation_reads_the_describe_of_a_running_org(bad_file: Path, org: RunningEmulator) -> None:
    result = runner.invoke(mappings_app, ["validate", "--live", str(bad_file)])
    assert result.exit_code == 1, result.output
    _assert_every_problem(result.output, bad_file)
    served = org.emulator.admin_stats()
    assert any("describe" in endpoint for endpoint in served["by_endpoint"]), served

    default = runner.invoke(mappings_app, ["validate", "--live"])
    assert default.exit_code == 0, default.output
    assert "valid (" in default.output


def test_live_validation_reports_an_object_the_org_lacks(tmp_path: Path, org: RunningEmulator) -> None:
    path = tmp_path / "unknown.yaml"
    path.write_text("mappings:\n  - name: widgets\n    entity: member\n    target: Widget__c\n")
    result = runner.invoke(mappings_app, ["validate", "--live", str(path)])
    assert result.exit_code == 1, result.output
    assert "unknown Salesforce object Widget__c" in result.output


def test_live_validation_without_credentials_says_what_is_missing(
    bad_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("SALESFORCE_LOGIN_URL", "SALESFORCE_AUTH_FLOW", "SALESFORCE_CLIENT_ID", "SALESFORCE_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    result = runner.invoke(mappings_app, ["validate", "--live", str(bad_file)])
    assert result.exit_code == 2
    assert "error:" in result.output and "SALESFORCE" in result.output.upper()


def test_a_file_that_syncs_nothing_is_not_valid(tmp_path: Path) -> None:
    path = tmp_path / "off.yaml"
    path.write_text("mappings:\n  - name: members\n    entity: member\n    target: Contact\n    enabled: false\n")
    result = runner.invoke(mappings_app, ["validate", str(path)])
    assert result.exit_code == 1, result.output
    assert "no enabled mapping: nothing would be synced" in result.output


def test_the_member_record_type_must_be_an_active_record_type_of_the_org() -> None:
    valid = runner.invoke(mappings_app, ["validate", "--set", "member_record_type=Community_Member"])
    assert valid.exit_code == 0, valid.output
    by_label = runner.invoke(mappings_app, ["validate", "--set", "member_record_type=Community Member"])
    assert by_label.exit_code == 0, by_label.output
    for name in ("Community_Membr", "Partner_Contact", "Master"):  # unknown; inactive; never assignable
        result = runner.invoke(mappings_app, ["validate", "--set", f"member_record_type={name}"])
        assert result.exit_code == 1, result.output
        assert f"members: Contact has no active record type {name}" in result.output
        assert "Business_Contact" in result.output and "Community_Member" in result.output  # what the org has
    # the default org's Leads have only the master record type
    lead = runner.invoke(
        mappings_app, ["validate", "--set", "member_object=Lead", "--set", "member_record_type=Community_Member"]
    )
    assert lead.exit_code == 1 and "Lead has no active record type Community_Member" in lead.output
    assert "(has: none but the master)" in lead.output


def test_a_custom_match_field_must_be_an_external_id_of_the_org() -> None:
    by_id = runner.invoke(
        mappings_app,
        ["validate", "--set", "member_match_field=Member_Id__c", "--set", "member_match_from=member.member_id"],
    )
    assert by_id.exit_code == 0, by_id.output  # an External ID: sfsync upserts on it
    result = runner.invoke(
        mappings_app,
        [
            "validate",
            "--set",
            "member_match_field=Approval_Status__c",
            "--set",
            "member_match_from=member.approval_status",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "members.match: Contact.Approval_Status__c is not an External ID field" in result.output
