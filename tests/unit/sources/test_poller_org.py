"""The poller's start-up check against the org's describe: every field and relationship path it
would SELECT must exist and be readable, every problem reported at once (pure rule), and the thin
check describes each object once and queries nothing when the mapping does not fit the org."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sfsync.mapping import MappingError
from sfsync.retry import RetryPolicy
from sfsync.salesforce import DailyLimitExceeded, SalesforceClient, SalesforceRetriableError, SalesforceSettings
from sfsync.sources import rules as core
from sfsync.sources.poller import check_org, check_org_with_retries
from tests.kit import mappings_from, members_yaml

INSTANCE = "https://org.example.test"


def field(name: str, **extra: Any) -> dict[str, Any]:
    """A describe field entry: a writable, filterable, optional text field unless ``extra`` says otherwise."""
    writable = {"createable": True, "updateable": True, "filterable": True, "nillable": True}
    return {"name": name, "type": extra.pop("type", "string"), **writable, **extra}


SYSTEM = [field(n) for n in core.SYSTEM_FIELDS]
DESCRIBES: dict[str, dict[str, Any]] = {
    "Contact": {
        "name": "Contact",
        "queryable": True,
        "fields": [
            *SYSTEM,
            field("Email"),
            field("FirstName"),
            field("Title"),
            field("Legacy__c", deprecatedAndHidden=True),
            field("AccountId", type="reference", referenceTo=["Account"], relationshipName="Account"),
            field("OwnerId", type="reference", referenceTo=["User", "Group"], relationshipName="Owner"),
        ],
    },
    "Account": {
        "name": "Account",
        "queryable": True,
        "fields": [
            *SYSTEM,
            field("Name"),
            field("OwnerId", type="reference", referenceTo=["User"], relationshipName="Owner"),
        ],
    },
    "User": {"name": "User", "fields": [*SYSTEM, field("Username")]},
    "Group": {"name": "Group", "fields": [*SYSTEM, field("DeveloperName")]},
}


def mappings(fields: str, inbound_filter: str | None = None, target: str = "Contact") -> Any:
    return mappings_from(members_yaml(fields, target=target, inbound_filter=inbound_filter), "m.yaml")


def problems(file: Any, describes: dict[str, dict[str, Any]] = DESCRIBES) -> list[str]:
    return core.org_problems(file, core.plans_from_mappings(file), describes)


GOOD = """
{sf: Email, from: member.email, direction: both}
{sf: FirstName, from: member.first_name, direction: to_product}
{sf: Account.Name, from: member.company, direction: to_product}
{sf: Account.Owner.Username, from: member.title, direction: to_product}
{sf: Owner.DeveloperName, from: member.location.city, direction: to_product}
"""


def test_a_mapping_the_org_can_answer_has_no_problem() -> None:
    file = mappings(GOOD, inbound_filter="record.Title != 'x' && record.Email.endsWith('@a.test')")
    assert problems(file) == []
    plans = core.plans_from_mappings(file)
    assert "Email.endsWith" not in plans[0].fields and "Title" in plans[0].fields  # a method is no field


def test_every_unreadable_field_is_reported_at_once_with_mapping_field_and_line() -> None:
    file = mappings(
        """
        {sf: Email, from: member.email, direction: both}
        {sf: FirstNme, from: member.first_name, direction: to_product}
        {sf: Legacy__c, from: member.title, direction: to_product}
        {sf: Acount.Name, from: member.company, direction: to_product}
        {sf: Account.Nme, from: member.location.city, direction: to_product}
        {sf: Account.Owner.Nickname, from: member.location.state, direction: to_product}
        """,
        inbound_filter="record.Import__c != false",
    )
    found = problems(file)
    assert len(found) == 6, found
    text = "\n".join(found)
    assert "m.yaml:11: members.FirstNme: Contact has no field FirstNme" in text and "(did you mean FirstName?)" in text
    assert "members.Legacy__c: Contact has no field Legacy__c the integration user can read" in text  # hidden
    assert "members.Acount.Name: Contact has no relationship Acount" in text and "did you mean Account?" in text
    assert "members.Account.Nme: Account has no field Nme the integration user can read (through Account" in text
    assert "members.Account.Owner.Nickname: User has no field Nickname" in text
    assert "m.yaml:8: members.Import__c: Contact has no field Import__c" in text  # the inbound filter's line


def test_unknown_objects_and_missing_system_fields_are_problems() -> None:
    file = mappings("{sf: Name, from: member.email, direction: to_product}", target="Contact__x")
    assert [p.split(": ", 2)[2] for p in problems(file)] == ["unknown Salesforce object Contact__x"]
    without_stamp = {**DESCRIBES, "Contact": {**DESCRIBES["Contact"], "fields": DESCRIBES["Contact"]["fields"][1:]}}
    found = problems(mappings("{sf: Email, from: member.email, direction: both}"), without_stamp)
    assert found == ["m.yaml: Contact: no field Id; the poller cannot read it"]
    unqueryable = {**DESCRIBES, "Contact": {**DESCRIBES["Contact"], "queryable": False}}
    assert "Contact cannot be queried" in problems(mappings(GOOD), unqueryable)[0]


def test_describes_needed_follow_relationship_paths_one_level_per_round() -> None:
    file = mappings(GOOD)
    plans = core.plans_from_mappings(file)
    assert core.describes_needed(file, plans, {}) == {"Contact"}
    first = {"Contact": DESCRIBES["Contact"]}
    assert core.describes_needed(file, plans, first) == {"Account", "User", "Group"}
    second = {**first, "Account": DESCRIBES["Account"], "Group": DESCRIBES["Group"]}
    assert core.describes_needed(file, plans, second) == {"User"}
    assert core.describes_needed(file, plans, DESCRIBES) == set()
    missing_parent = {k: v for k, v in DESCRIBES.items() if k != "User"}
    assert "User could not be described" in problems(file, missing_parent)[0]


class Org:
    """Describes from DESCRIBES (404 for others); any query is recorded (and must not happen).

    ``failures``: the first requests are answered with these (status, errorCode, message) instead."""

    def __init__(self, failures: list[tuple[int, str, str]] | None = None) -> None:
        self.paths: list[str] = []
        self.failures = list(failures or [])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.paths.append(path)
        headers = {"Sforce-Limit-Info": "api-usage=10/1000"}
        if self.failures:
            status, code, message = self.failures.pop(0)
            return httpx.Response(status, json=[{"errorCode": code, "message": message}], headers=headers)
        if path.endswith("/describe"):
            name = path.split("/")[-2]
            if name in DESCRIBES:
                return httpx.Response(200, json=DESCRIBES[name], headers=headers)
        return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": path}], headers=headers)


async def run_check(file: Any) -> tuple[Org, int, dict[str, Any] | Exception]:
    org = Org()
    calls = 0

    async def before_call() -> None:
        nonlocal calls
        calls += 1

    settings = SalesforceSettings(auth_flow="access_token", access_token="00Dx!t", instance_url=INSTANCE)
    async with SalesforceClient(settings, transport=httpx.MockTransport(org)) as client:
        try:
            result: dict[str, Any] | Exception = await check_org(
                client, file, core.plans_from_mappings(file), before_call
            )
        except MappingError as exc:
            result = exc
    return org, calls, result


async def test_check_org_describes_each_object_once_through_the_governor() -> None:
    org, calls, result = await run_check(mappings(GOOD))
    assert isinstance(result, dict) and set(result) == {"Contact", "Account", "User", "Group"}
    described = sorted(p.split("/")[-2] for p in org.paths)
    assert described == ["Account", "Contact", "Group", "User"]  # once each, though two paths lead to User
    assert calls == len(org.paths) == 4  # every describe waited for the governor


async def test_check_org_refuses_a_mapping_the_org_cannot_answer_before_any_query() -> None:
    file = mappings(
        """
        {sf: Email, from: member.email, direction: both}
        {sf: Nickname__c, from: member.first_name, direction: to_product}
        {sf: Account.Nme, from: member.company, direction: to_product}
        """
    )
    org, _, result = await run_check(file)
    assert isinstance(result, MappingError)
    assert [p.split(": ", 2)[1] for p in result.problems] == ["members.Nickname__c", "members.Account.Nme"]
    assert "2 problem(s)" in str(result) and "against the org" in str(result)
    assert not any("query" in p for p in org.paths)
    unknown = mappings("{sf: Name, from: member.email, direction: to_product}", target="Nope__c")
    org, _, result = await run_check(unknown)
    assert isinstance(result, MappingError) and "unknown Salesforce object Nope__c" in result.problems[0]


UNAVAILABLE = (503, "SERVER_UNAVAILABLE", "maintenance")
FAST = RetryPolicy(timeout_s=5, wait_initial_s=0.001, wait_max_s=0.002)


async def check_with_retries(
    org: Org, file: Any, policy: RetryPolicy = FAST
) -> tuple[list[DailyLimitExceeded], dict[str, Any] | Exception]:
    refused: list[DailyLimitExceeded] = []

    async def before_call() -> None:
        pass

    settings = SalesforceSettings(auth_flow="access_token", access_token="00Dx!t", instance_url=INSTANCE)
    async with SalesforceClient(settings, transport=httpx.MockTransport(org)) as client:
        try:
            result: dict[str, Any] | Exception = await check_org_with_retries(
                client, file, core.plans_from_mappings(file), before_call, policy=policy, on_daily_limit=refused.append
            )
        except (MappingError, SalesforceRetriableError) as exc:
            result = exc
    return refused, result


async def test_the_start_up_check_is_retried_until_salesforce_answers_one_request_per_attempt() -> None:
    daily = (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
    org = Org(failures=[UNAVAILABLE, UNAVAILABLE, daily])
    refused, result = await check_with_retries(org, mappings(GOOD))
    assert isinstance(result, dict) and set(result) == {"Contact", "Account", "User", "Group"}
    assert len(org.paths) == 3 + 4  # three refused attempts (the client resends nothing), then each object once
    assert [e.error_code for e in refused] == ["REQUEST_LIMIT_EXCEEDED"]  # handed to the governor, then retried


async def test_the_start_up_check_raises_a_mapping_problem_at_once_and_a_lasting_outage_at_its_deadline() -> None:
    org = Org()
    _, result = await check_with_retries(org, mappings("{sf: Nickname__c, from: member.email, direction: to_product}"))
    assert isinstance(result, MappingError) and len(org.paths) == 1  # fatal: never retried

    down = Org(failures=[UNAVAILABLE] * 10_000)
    _, result = await check_with_retries(down, mappings(GOOD), RetryPolicy(0.05, wait_initial_s=0.005, wait_max_s=0.01))
    assert isinstance(result, SalesforceRetriableError) and result.error_code == "SERVER_UNAVAILABLE"
    assert 1 < len(down.paths) < 100  # retried until the deadline, then the last error


@pytest.mark.parametrize("member_object", ["Contact", "Lead"])
def test_the_default_mapping_fits_the_emulated_org(member_object: str) -> None:
    from sfsync.cli.mappings import emulator_describes
    from sfsync.mapping import load_mappings

    file = load_mappings(None, variables={"member_object": member_object})
    assert problems(file, emulator_describes()) == []


RELATIONSHIPS = """
version: 1
mappings:
  - name: members
    entity: member
    target: Contact
    match: [{field: Email, from: member.email}]
    fields:
      - {sf: Email, from: member.email, direction: both}
      - {sf: LastName, from: member.last_name, default: "-"}
      - {sf: Account.Name, from: member.company, direction: to_product}
      - {sf: Account.Nme, from: member.title, direction: to_product}
"""


@pytest.mark.parametrize("live", [False, True])
def test_mappings_validate_follows_relationship_paths_read_back(
    live: bool, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same rule in ``sfsync mappings validate`` (offline and ``--live``): ``Account.Name`` read
    back is fine, ``Account.Nme`` is not (it used to report both as unknown Contact fields)."""
    from typer.testing import CliRunner

    from sfsync.cli.mappings import mappings_app
    from sfsync.emulator.server import serve_in_thread

    path = tmp_path / "rel.yaml"
    path.write_text(RELATIONSHIPS)
    running = serve_in_thread() if live else None
    try:
        if running is not None:
            app = running.emulator.auth.config.connected_apps[0]
            for name, value in (
                ("SALESFORCE_LOGIN_URL", running.base_url),
                ("SALESFORCE_AUTH_FLOW", "client_credentials"),
                ("SALESFORCE_CLIENT_ID", app.client_id),
                ("SALESFORCE_CLIENT_SECRET", app.client_secret),
            ):
                monkeypatch.setenv(name, value)
        result = CliRunner().invoke(mappings_app, ["validate", str(path), *(["--live"] if live else [])])
        if running is not None:
            described = [e for e in running.emulator.admin_stats()["by_endpoint"] if "describe" in e]
            assert described, running.emulator.admin_stats()
    finally:
        if running is not None:
            running.stop()
    assert result.exit_code == 1, result.output
    assert f"{path}:12: members.Account.Nme: Account has no field Nme" in result.output
    assert "did you mean Name?" in result.output
    assert "Account.Name:" not in result.output and "1 problem(s)" in result.output
