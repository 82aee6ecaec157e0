"""No secret of a connection, nor a sealing key, in the repr or str of any object of the registry, in an error
about it, or in what is logged while a client logs in and writes a rotated refresh token back."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import SecretStr

from sfsync.workspaces import (
    ConnectionFlow,
    Directory,
    DirectoryState,
    RefreshTokenWriteBack,
    SealError,
    load_workspaces_settings,
    open_client,
    parse_keys,
    salesforce_settings,
)
from tests.kit import FakeRegistry, TokenEndpoint, recorded_json, signed_success
from tests.kit.workspaces import FakeRegistryTopics, MemoryStore, connection, key_item, keys

KEYS_SETTING = f"{key_item('k2', fill=7)},{key_item('k1', fill=9)}"
SECRETS = {
    "refresh_token": "5Aep861-REFRESH-never-shown",
    "client_secret": "CLIENT-secret-never-shown",
    "private_key": "-----BEGIN PRIVATE KEY-----never-shown",
}
NEVER = (*SECRETS.values(), *(item.split(":")[1] for item in KEYS_SETTING.split(",")), "5Aep861-ROTATED-never-shown")


def shown(*objects: object) -> str:
    return "\n".join(f"{o!r}\n{o!s}" for o in objects)


def assert_never_in(text: str) -> None:
    found = [secret for secret in NEVER if secret in text]
    assert not found, found


def test_no_object_of_the_registry_shows_a_secret_or_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFSYNC_CONNECTION_KEYS", KEYS_SETTING)
    settings = load_workspaces_settings()
    ring = settings.keys()
    stored = connection("acme-org", SECRETS, sealed_with=ring, flow=ConnectionFlow.JWT_BEARER, username="u@x.example")
    opened = ring.open("acme-org", stored.secrets)
    state = DirectoryState()
    state.put_connection("acme-org", stored)
    registry = FakeRegistry()
    directory = Directory({}, registry, keys=ring, read=FakeRegistryTopics(registry))  # type: ignore[arg-type]
    objects = (
        settings,
        settings.model_dump(),
        ring,
        stored,
        stored.secrets,
        opened,
        salesforce_settings(stored, opened),
        directory,
        RefreshTokenWriteBack("acme-org", connections=state, keys=ring, store=MemoryStore(state)),
    )
    assert_never_in(shown(*objects))


def test_refusals_to_open_show_no_secret_or_key() -> None:
    stored = connection("acme-org", SECRETS, sealed_with=parse_keys(KEYS_SETTING))
    errors = []
    for ring, connection_id in (
        (parse_keys(key_item("k2", fill=8)), "acme-org"),  # another key under the sealing key's id
        (keys("k3"), "acme-org"),  # the key is not held
        (parse_keys(KEYS_SETTING), "globex-org"),  # moved to another connection
    ):
        with pytest.raises(SealError) as caught:
            ring.open(connection_id, stored.secrets)
        errors.append(caught.value)
    assert_never_in(shown(*errors, *(e.args for e in errors)))


async def test_nothing_secret_is_logged_while_a_client_logs_in_and_writes_a_rotated_token_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ring = parse_keys(KEYS_SETTING)
    state = DirectoryState()
    state.put_connection("acme-org", connection("acme-org", SECRETS, sealed_with=ring))
    store = MemoryStore(state)

    def org(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=recorded_json("camel_limits.json"))

    endpoint = TokenEndpoint(
        (200, signed_success(SECRETS["client_secret"], refresh_token="5Aep861-ROTATED-never-shown")), other=org
    )
    with caplog.at_level(logging.DEBUG):
        client = open_client(
            "acme-org", connections=state, keys=ring, store=store, transport=httpx.MockTransport(endpoint)
        )
        async with client:
            await client.limits()
        assert_never_in(shown(client, store.written[0]))
    assert store.written
    assert_never_in("\n".join(record.getMessage() for record in caplog.records))
    assert ring.open("acme-org", store.written[0].secrets)["refresh_token"] == SecretStr("5Aep861-ROTATED-never-shown")
