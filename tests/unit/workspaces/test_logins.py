"""How a stored connection logs in: its SalesforceSettings (nothing from the environment's SALESFORCE_* login),
and a refresh token Salesforce rotates, sealed and written back (against the kit's fake token endpoint)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from sfsync.errors import ConfigError, DeliveryError
from sfsync.salesforce import SalesforceClient
from sfsync.workspaces import ConnectionFlow, ConnectionNotFoundError, DirectoryState, open_client, salesforce_settings
from tests.kit import TOKEN_CLIENT_SECRET, TokenEndpoint, recorded_json, signed_success
from tests.kit.workspaces import T0, MemoryStore, connection, keys

SECRETS = {
    "private_key": SecretStr("-----BEGIN PRIVATE KEY-----KEY"),
    "client_secret": SecretStr("CLIENT-secret-42"),
    "refresh_token": SecretStr("5Aep861-REFRESH"),
}


@pytest.mark.parametrize(
    ("flow", "auth_flow", "secret_fields"),
    [
        (ConnectionFlow.JWT_BEARER, "jwt_bearer", {"private_key"}),
        (ConnectionFlow.CLIENT_CREDENTIALS, "client_credentials", {"client_secret"}),
        (ConnectionFlow.REFRESH_TOKEN, "refresh_token", {"refresh_token", "client_secret"}),
        (ConnectionFlow.AUTHORIZATION_CODE, "refresh_token", {"refresh_token", "client_secret"}),
    ],
)
def test_a_connection_makes_the_settings_of_its_flow_with_its_secrets_only(
    flow: ConnectionFlow, auth_flow: str, secret_fields: set[str]
) -> None:
    stored = connection("acme-org", flow=flow, username="integration@acme.example")
    settings = salesforce_settings(stored, SECRETS)
    assert settings.auth_flow == auth_flow
    assert settings.client_id == "cid"
    assert settings.login_url == "https://login.salesforce.com"
    set_secrets = {name for name in SECRETS if getattr(settings, name) is not None}
    assert set_secrets == secret_fields
    for name in secret_fields:
        assert getattr(settings, name).get_secret_value() == SECRETS[name].get_secret_value()
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert all(s.get_secret_value() not in text for s in SECRETS.values())


def test_the_environments_login_never_leaks_into_a_connection_but_its_tuning_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "SALESFORCE_CLIENT_ID": "env-client",
        "SALESFORCE_CLIENT_SECRET": "env-secret",
        "SALESFORCE_USERNAME": "env@example.org",
        "SALESFORCE_PRIVATE_KEY_FILE": "/etc/hostname",
        "SALESFORCE_INSTANCE_URL": "https://env.my.salesforce.com",
        "SALESFORCE_PASSWORD": "env-password",
        "SALESFORCE_READ_TIMEOUT_S": "7",
    }.items():
        monkeypatch.setenv(name, value)
    settings = salesforce_settings(
        connection("acme-org", flow=ConnectionFlow.REFRESH_TOKEN), {"refresh_token": SECRETS["refresh_token"]}
    )
    assert settings.client_id == "cid"
    assert settings.client_secret is None
    assert settings.username is None
    assert settings.private_key_file is None
    assert settings.instance_url is None
    assert settings.password is None
    assert settings.read_timeout_s == 7


def test_a_connection_that_cannot_log_in_is_refused_listing_every_problem_without_a_secret() -> None:
    stored = connection("acme-org", flow=ConnectionFlow.CLIENT_CREDENTIALS, login_url="http://acme.example.org")
    with pytest.raises(ConfigError) as caught:
        salesforce_settings(stored, {"refresh_token": SECRETS["refresh_token"]}, api_version="latest")
    message = str(caught.value)
    assert "invalid connection 'acme-org' settings" in message
    assert "login_url: must use https://" in message
    assert "api_version: expected a version like '62.0'" in message
    assert "5Aep861-REFRESH" not in message


# ---------------------------------------------------------------------- refresh-token rotation write-back
def org_api(statuses: list[int]) -> object:
    """The org's REST API as the client sees it: ``/limits`` answers the queued statuses (401: the session
    expired), then 200."""

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.host == "na1.salesforce.com"
        status = statuses.pop(0) if statuses else 200
        if status == 401:
            return httpx.Response(401, json=recorded_json("restforce_error_invalid_session_id.json"))
        return httpx.Response(200, json=recorded_json("camel_limits.json"))

    return answer


def registry_with_connection(sealed_with: str = "k1") -> tuple[DirectoryState, MemoryStore]:
    state = DirectoryState()
    state.put_connection("acme-org", connection("acme-org", sealed_with=keys(sealed_with)))
    return state, MemoryStore(state)


def client_for(state: DirectoryState, store: MemoryStore, endpoint: TokenEndpoint, *key_ids: str) -> SalesforceClient:
    return open_client(
        "acme-org",
        connections=state,
        keys=keys(*key_ids),
        store=store,
        transport=httpx.MockTransport(endpoint),
    )


def opened(store: MemoryStore, *key_ids: str) -> dict[str, str]:
    stored = store.connection("acme-org")
    assert stored is not None
    return {k: v.get_secret_value() for k, v in keys(*key_ids).open("acme-org", stored.secrets).items()}


async def test_a_rotated_refresh_token_is_sealed_with_the_first_key_and_written_back_for_a_restart() -> None:
    state, store = registry_with_connection(sealed_with="k1")
    endpoint = TokenEndpoint((200, signed_success(refresh_token="r2-rotated")), other=org_api([]))
    async with client_for(state, store, endpoint, "k2", "k1") as client:
        await client.limits()
    assert endpoint.forms[0]["refresh_token"] == "r1"
    assert len(store.written) == 1
    written = store.written[0]
    assert written.secrets.key_id == "k2"
    assert written.updated_at > T0
    assert opened(store, "k2") == {"refresh_token": "r2-rotated", "client_secret": TOKEN_CLIENT_SECRET}

    restarted = TokenEndpoint((200, signed_success()), other=org_api([]))  # a new process: from the store
    async with client_for(state, store, restarted, "k2") as client:
        await client.limits()
    assert restarted.forms[0]["refresh_token"] == "r2-rotated"
    assert len(store.written) == 1


async def test_a_token_response_without_a_new_refresh_token_writes_nothing() -> None:
    state, store = registry_with_connection()
    endpoint = TokenEndpoint(
        (200, signed_success()), (200, signed_success(refresh_token="r1")), other=org_api([200, 401])
    )
    async with client_for(state, store, endpoint, "k1") as client:
        await client.limits()
        await client.limits()  # 401: the session is refreshed, the same refresh token comes back
    assert [f["refresh_token"] for f in endpoint.forms] == ["r1", "r1"]
    assert store.written == []


async def test_each_rotation_on_a_session_refresh_is_written_back_and_used_next() -> None:
    state, store = registry_with_connection()
    endpoint = TokenEndpoint(
        (200, signed_success()),
        (200, signed_success(refresh_token="r2")),
        (200, signed_success(refresh_token="r3")),
        other=org_api([200, 401, 200, 401]),  # each 401 is replayed once the session is refreshed
    )
    async with client_for(state, store, endpoint, "k1") as client:
        for _ in range(3):
            await client.limits()
    assert [f["refresh_token"] for f in endpoint.forms] == ["r1", "r1", "r2"]
    assert [keys("k1").open("acme-org", c.secrets)["refresh_token"].get_secret_value() for c in store.written] == [
        "r2",
        "r3",
    ]
    assert opened(store, "k1")["client_secret"] == TOKEN_CLIENT_SECRET


async def test_a_failed_write_back_fails_the_login_and_the_next_login_writes_the_token_again() -> None:
    state, store = registry_with_connection()
    store.fail = DeliveryError([("sfsync.connections", "acme-org", "Local: Message timed out")])
    endpoint = TokenEndpoint(
        (200, signed_success(refresh_token="r2")), (200, signed_success(refresh_token="r3")), other=org_api([])
    )
    async with client_for(state, store, endpoint, "k1") as client:
        with pytest.raises(DeliveryError):
            await client.limits()
        await client.limits()
    assert [f["refresh_token"] for f in endpoint.forms] == ["r1", "r2"]  # the rotated token was kept
    assert opened(store, "k1")["refresh_token"] == "r3"


async def test_a_removed_connection_is_not_written_back() -> None:
    state, store = registry_with_connection()
    endpoint = TokenEndpoint((200, signed_success(refresh_token="r2")), other=org_api([]))
    client = client_for(state, store, endpoint, "k1")
    state.put_connection("acme-org", None)  # removed while the client runs
    async with client:
        with pytest.raises(ConnectionNotFoundError):
            await client.limits()
    assert store.written == []


def test_a_client_with_its_own_auth_takes_no_refresh_token_hook() -> None:
    from sfsync.salesforce import StaticTokenAuth

    async def hook(token: SecretStr) -> None: ...

    settings = salesforce_settings(connection("acme-org"), {"refresh_token": SECRETS["refresh_token"]})
    auth = StaticTokenAuth(access_token=SecretStr("t"), instance_url="https://na1.salesforce.com")
    with pytest.raises(TypeError, match="give on_refresh_token to the auth provider"):
        SalesforceClient(settings, auth=auth, on_refresh_token=hook)
