"""Sealing a connection's secrets: AES-256-GCM (``cryptography``'s ``AESGCM``) under the keys of
``SFSYNC_CONNECTION_KEYS``.

- The setting is ``key_id:base64(32 bytes)`` items separated by commas: :func:`parse_keys` reads it,
  reporting every problem at once and never a key's bytes.
- :class:`ConnectionKeys` seals with the first key and opens with any of them (rotation: put a new key
  first, ``sfsync connections reencrypt``, then drop the old key).
- Each seal has a random 96-bit nonce; the connection id is the associated data, so a ciphertext copied
  to another connection does not open. The plaintext is a JSON object of the flow's secret fields.

A failure to open is a :class:`SealError` that names the connection and the key id, never a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from sfsync.errors import ConfigError, FatalError
from sfsync.workspaces.records import EncryptedSecrets

__all__ = [
    "KEYS_SETTING",
    "KEY_BYTES",
    "NONCE_BYTES",
    "ConnectionKeys",
    "SealError",
    "key_problems",
    "new_key",
    "parse_keys",
]

KEYS_SETTING = "SFSYNC_CONNECTION_KEYS"
KEY_BYTES = 32
"""AES-256."""
NONCE_BYTES = 12
"""GCM's 96-bit nonce."""

_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


class SealError(FatalError):
    """A connection's secrets could not be sealed or opened (a missing or wrong key, an altered or moved
    ciphertext). The message names the connection and the key id, never a secret."""

    default_code = "CONNECTION_SECRETS_SEALED"


def _key_problems(text: str) -> tuple[list[tuple[str, bytes]], list[str]]:
    keys: list[tuple[str, bytes]] = []
    problems: list[str] = []
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        return [], [f"{KEYS_SETTING}: empty; expected key_id:base64(32 bytes)[,key_id:base64...]"]
    seen: set[str] = set()
    for number, item in enumerate(items, start=1):
        where = f"{KEYS_SETTING} item {number}"
        if not item:
            problems.append(f"{where}: empty (two commas in a row, or a comma at an end)")
            continue
        key_id, colon, encoded = item.partition(":")
        key_id = key_id.strip()
        if not colon:
            problems.append(f"{where}: expected key_id:base64(32 bytes), found no ':'")
            continue
        if not _KEY_ID.fullmatch(key_id):
            problems.append(f"{where}: the key id must be 1-64 letters, digits, '_', '.' or '-'")
            continue
        where = f"{KEYS_SETTING} key {key_id!r}"
        if key_id in seen:
            problems.append(f"{where}: the id is given twice")
            continue
        seen.add(key_id)
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            problems.append(f"{where}: not base64")
            continue
        if len(key) != KEY_BYTES:
            problems.append(f"{where}: {len(key)} bytes, expected {KEY_BYTES} (AES-256)")
            continue
        keys.append((key_id, key))
    return keys, problems


def key_problems(text: str) -> list[str]:
    """Every problem of ``text`` as a value of ``SFSYNC_CONNECTION_KEYS``; empty when it is valid."""
    return _key_problems(text)[1]


def parse_keys(value: SecretStr | str) -> ConnectionKeys:
    """The keys of a ``SFSYNC_CONNECTION_KEYS`` value.

    Raises:
        ConfigError: listing every problem (by item number or key id; never a key's bytes).
    """
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    keys, problems = _key_problems(text)
    if problems:
        raise ConfigError("connection keys", problems)
    return ConnectionKeys(keys)


def new_key(key_id: str) -> SecretStr:
    """A new random key as an item of ``SFSYNC_CONNECTION_KEYS``: ``key_id:base64(32 bytes)``.

    Raises:
        ConfigError: ``key_id`` is not a valid key id.
    """
    if not _KEY_ID.fullmatch(key_id):
        raise ConfigError("connection keys", ["the key id must be 1-64 letters, digits, '_', '.' or '-'"])
    return SecretStr(f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}")


class ConnectionKeys:
    """The keys of ``SFSYNC_CONNECTION_KEYS``, in order: the first seals, every one opens. Its ``repr``
    shows the key ids only."""

    __slots__ = ("_ciphers",)

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError("connection keys", [f"{KEYS_SETTING}: no key"])
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys}

    def __repr__(self) -> str:
        return f"ConnectionKeys(key_ids={self.key_ids!r})"

    @property
    def key_ids(self) -> list[str]:
        """The ids of the keys, the sealing key first."""
        return list(self._ciphers)

    @property
    def sealing_key_id(self) -> str:
        """The id of the key that seals (the first)."""
        return next(iter(self._ciphers))

    def seal(self, connection_id: str, secrets: Mapping[str, SecretStr]) -> EncryptedSecrets:
        """``secrets`` (field name -> value) sealed with the first key, for ``connection_id`` only."""
        plaintext = json.dumps(
            {name: value.get_secret_value() for name, value in sorted(secrets.items())}, separators=(",", ":")
        ).encode()
        nonce = os.urandom(NONCE_BYTES)
        key_id = self.sealing_key_id
        ciphertext = self._ciphers[key_id].encrypt(nonce, plaintext, connection_id.encode())
        return EncryptedSecrets(key_id, nonce, ciphertext)

    def open(self, connection_id: str, sealed: EncryptedSecrets) -> dict[str, SecretStr]:
        """The secret fields ``sealed`` holds for ``connection_id``, each a ``SecretStr``.

        Raises:
            SealError: the key that sealed them is not among these keys; or they do not open with it
                (another key under the same id, a ciphertext altered or sealed for another connection);
                or what opens is not a sealed secrets object.
        """
        cipher = self._ciphers.get(sealed.key_id)
        if cipher is None:
            raise SealError(
                f"connection {connection_id!r}: its secrets were sealed with key {sealed.key_id!r}, which "
                f"{KEYS_SETTING} does not hold (it holds {', '.join(map(repr, self.key_ids))}): give that key "
                "again, or add the connection again"
            )
        try:
            plaintext = cipher.decrypt(sealed.nonce, sealed.ciphertext, connection_id.encode())
        except (InvalidTag, ValueError):
            raise SealError(
                f"connection {connection_id!r}: its secrets do not open with key {sealed.key_id!r}: that key is "
                "not the one that sealed them, or the sealed secrets were altered or copied from another connection"
            ) from None
        try:
            opened = json.loads(plaintext)
        except ValueError:
            opened = None
        if not isinstance(opened, dict) or not all(isinstance(v, str) for v in opened.values()):
            raise SealError(f"connection {connection_id!r}: what its key {sealed.key_id!r} opens is not its secrets")
        return {str(name): SecretStr(value) for name, value in opened.items()}
