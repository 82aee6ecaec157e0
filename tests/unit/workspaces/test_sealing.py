"""Sealing connections' secrets: AES-256-GCM under SFSYNC_CONNECTION_KEYS; what opens, what is refused, and
that no refusal or repr shows a secret or a key."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from pydantic import SecretStr

from sfsync.errors import ConfigError
from sfsync.workspaces import ConnectionKeys, EncryptedSecrets, SealError, new_key, parse_keys
from sfsync.workspaces.sealing import NONCE_BYTES
from tests.kit.workspaces import key_item, keys

SECRETS = {"refresh_token": SecretStr("5Aep861-REFRESH-secret"), "client_secret": SecretStr("CLIENT-secret-42")}
SHOWN_NEVER = ("5Aep861-REFRESH-secret", "CLIENT-secret-42")


def clear(values: dict[str, SecretStr]) -> dict[str, str]:
    return {k: v.get_secret_value() for k, v in values.items()}


def assert_no_secret(text: str, *also: str) -> None:
    for secret in (*SHOWN_NEVER, *also):
        assert secret not in text


def test_what_is_sealed_opens_for_its_connection_as_secret_strings() -> None:
    ring = keys("k1")
    sealed = ring.seal("acme-org", SECRETS)
    opened = ring.open("acme-org", sealed)
    assert clear(opened) == clear(SECRETS)
    assert all(isinstance(v, SecretStr) for v in opened.values())
    assert sealed.key_id == "k1"
    assert len(sealed.nonce) == NONCE_BYTES
    assert_no_secret(repr(sealed) + str(sealed) + repr(opened))
    assert all(s.encode() not in sealed.ciphertext for s in SHOWN_NEVER)


def test_every_seal_has_a_fresh_nonce() -> None:
    ring = keys("k1")
    first, second = ring.seal("acme-org", SECRETS), ring.seal("acme-org", SECRETS)
    assert first.nonce != second.nonce
    assert first.ciphertext != second.ciphertext


def test_a_wrong_key_under_the_same_id_is_refused_naming_the_key_id_and_no_secret() -> None:
    sealed = parse_keys(key_item("k1", fill=1)).seal("acme-org", SECRETS)
    other = parse_keys(key_item("k1", fill=2))
    with pytest.raises(SealError) as caught:
        other.open("acme-org", sealed)
    message = str(caught.value)
    assert "connection 'acme-org'" in message
    assert "key 'k1'" in message
    assert "not the one that sealed them" in message
    assert_no_secret(message + repr(caught.value), key_item("k1", fill=1), key_item("k1", fill=2))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_key_id_that_is_not_held_is_refused_naming_it_and_the_ones_held() -> None:
    sealed = keys("old").seal("acme-org", SECRETS)
    with pytest.raises(SealError, match=r"sealed with key 'old', which SFSYNC_CONNECTION_KEYS does not hold") as caught:
        keys("new", "other").open("acme-org", sealed)
    assert "'new', 'other'" in str(caught.value)


@pytest.mark.parametrize("part", ["ciphertext", "nonce"])
def test_an_altered_seal_is_refused(part: str) -> None:
    ring = keys("k1")
    sealed = ring.seal("acme-org", SECRETS)
    value = bytearray(getattr(sealed, part))
    value[0] ^= 0x01
    with pytest.raises(SealError, match="key 'k1'"):
        ring.open("acme-org", dataclasses.replace(sealed, **{part: bytes(value)}))


def test_secrets_copied_to_another_connection_do_not_open_there() -> None:
    ring = keys("k1")
    sealed = ring.seal("acme-org", SECRETS)
    with pytest.raises(SealError) as caught:
        ring.open("globex-org", sealed)
    assert "connection 'globex-org'" in str(caught.value)
    assert "copied from another connection" in str(caught.value)


def test_a_short_nonce_is_refused_as_a_seal_error() -> None:
    ring = keys("k1")
    sealed = ring.seal("acme-org", SECRETS)
    with pytest.raises(SealError):
        ring.open("acme-org", EncryptedSecrets("k1", b"short", sealed.ciphertext))


def test_rotation_the_first_key_seals_and_every_key_opens() -> None:
    old_sealed = keys("k1").seal("acme-org", SECRETS)
    rotated = keys("k2", "k1")
    assert rotated.sealing_key_id == "k2"
    assert clear(rotated.open("acme-org", old_sealed)) == clear(SECRETS)
    resealed = rotated.seal("acme-org", rotated.open("acme-org", old_sealed))
    assert resealed.key_id == "k2"
    assert clear(keys("k2").open("acme-org", resealed)) == clear(SECRETS)  # the old key may go now


def test_the_setting_reports_every_problem_at_once_and_never_a_key() -> None:
    short = base64.b64encode(b"x" * 16).decode()
    value = f"k1:{short}, no-colon-here ,k1:{short},bad id!:{short},,k3:not*base64,{key_item('ok')}"
    with pytest.raises(ConfigError) as caught:
        parse_keys(SecretStr(value))
    problems = caught.value.problems
    assert problems == [
        "SFSYNC_CONNECTION_KEYS key 'k1': 16 bytes, expected 32 (AES-256)",
        "SFSYNC_CONNECTION_KEYS item 2: expected key_id:base64(32 bytes), found no ':'",
        "SFSYNC_CONNECTION_KEYS key 'k1': the id is given twice",
        "SFSYNC_CONNECTION_KEYS item 4: the key id must be 1-64 letters, digits, '_', '.' or '-'",
        "SFSYNC_CONNECTION_KEYS item 5: empty (two commas in a row, or a comma at an end)",
        "SFSYNC_CONNECTION_KEYS key 'k3': not base64",
    ]
    text = str(caught.value)
    for shown_never in (short, "no-colon-here", "not*base64", key_item("ok").split(":")[1]):
        assert shown_never not in text


def test_an_empty_setting_is_refused() -> None:
    with pytest.raises(ConfigError, match="SFSYNC_CONNECTION_KEYS: empty"):
        parse_keys(" , ")


def test_keys_show_their_ids_only() -> None:
    ring = parse_keys(f"{key_item('k2')},{key_item('k1')}")
    assert repr(ring) == "ConnectionKeys(key_ids=['k2', 'k1'])"
    assert str(ring) == repr(ring)
    with pytest.raises(ConfigError):
        ConnectionKeys([])


def test_a_new_key_is_a_valid_item_of_the_setting() -> None:
    item = new_key("k2026")
    assert "**" in repr(item)
    ring = parse_keys(item)
    assert ring.key_ids == ["k2026"]
    assert ring.open("c", ring.seal("c", SECRETS))["client_secret"].get_secret_value() == "CLIENT-secret-42"
    assert new_key("k2026").get_secret_value() != item.get_secret_value()
    with pytest.raises(ConfigError):
        new_key("not valid!")
