"""Salesforce record ids.

A 15-character id is case-sensitive base-62: a 3-character key prefix (the object type), a
2-character pod, a reserved character and a 9-character serial. The 18-character form appends a
3-character checksum that encodes the case of the first 15 characters, so an 18-character id can be
compared case-insensitively: for each 5-character chunk, bit *i* (least significant first) is set
when character *i* is an upper-case letter, and the 5-bit number indexes
``ABCDEFGHIJKLMNOPQRSTUVWXYZ012345``. The API always answers with 18-character ids and accepts
either form.
"""

from __future__ import annotations

import hashlib
import itertools
import string
import time

CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
POD = "8d"  # the emulator's "instance" part of every id it mints
_ALNUM = frozenset(string.ascii_letters + string.digits)
_UPPER = frozenset(string.ascii_uppercase)
_CHECKSUM_INDEX = {c: i for i, c in enumerate(CHECKSUM_ALPHABET)}
_SERIAL_WIDTH = 9
# Seeded from the clock so ids minted by different emulator processes rarely collide.
_serials = itertools.count(time.time_ns() // 1000 % (62**_SERIAL_WIDTH // 2))


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits))


def checksum(id15: str) -> str:
    """The 3-character suffix of a 15-character id."""
    suffix = []
    for start in (0, 5, 10):
        bits = 0
        for offset, char in enumerate(id15[start : start + 5]):
            if char in _UPPER:
                bits |= 1 << offset
        suffix.append(CHECKSUM_ALPHABET[bits])
    return "".join(suffix)


def to18(id15: str) -> str:
    """The 18-character form of a 15-character id (an 18-character id is returned canonicalised)."""
    if len(id15) == 18:
        return normalize(id15)
    if len(id15) != 15 or not _ALNUM.issuperset(id15):
        raise ValueError(f"malformed id {id15}")
    return id15 + checksum(id15)


def _recase(id18: str) -> str | None:
    """The canonical 18-character id for a case-insensitively written one, or None if inconsistent."""
    if len(id18) != 18 or not _ALNUM.issuperset(id18):
        return None
    chars = list(id18[:15])
    for chunk, suffix_char in enumerate(id18[15:].upper()):
        bits = _CHECKSUM_INDEX.get(suffix_char)
        if bits is None:
            return None
        for offset in range(5):
            position = chunk * 5 + offset
            char = chars[position]
            if bits & (1 << offset):
                if not char.isalpha():
                    return None
                chars[position] = char.upper()
            elif char.isalpha():
                chars[position] = char.lower()
    id15 = "".join(chars)
    return id15 + checksum(id15)


def is_valid_id(text: object) -> bool:
    """Whether ``text`` is a well-formed 15-character id or an 18-character id with a valid checksum."""
    if not isinstance(text, str):
        return False
    if len(text) == 15:
        return _ALNUM.issuperset(text)
    return len(text) == 18 and _recase(text) is not None


def normalize(record_id: str) -> str:
    """The canonical 18-character id for a 15- or 18-character id; ValueError when malformed."""
    if len(record_id) == 15:
        return to18(record_id)
    canonical = _recase(record_id)
    if canonical is None:
        raise ValueError(f"malformed id {record_id}")
    return canonical


def try_normalize(record_id: object) -> str | None:
    """Like :func:`normalize`, but None for anything that is not a valid id."""
    if not isinstance(record_id, str):
        return None
    if len(record_id) == 15:
        return record_id + checksum(record_id) if _ALNUM.issuperset(record_id) else None
    return _recase(record_id)


def new_id(prefix: str, *, pod: str = POD) -> str:
    """A fresh 18-character id for the object with key prefix ``prefix``."""
    if len(prefix) != 3 or len(pod) != 2:
        raise ValueError("key prefix must be 3 characters and pod 2")
    id15 = prefix + pod + "0" + _base62(next(_serials), _SERIAL_WIDTH)
    return id15 + checksum(id15)


def key_prefix(record_id: str) -> str:
    return record_id[:3]


def stable_id(prefix: str, seed: str, *, pod: str = POD) -> str:
    """A deterministic 18-character id derived from ``seed`` (same seed, same id; e.g. org users)."""
    digest = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") % (62**_SERIAL_WIDTH)
    id15 = prefix + pod + "0" + _base62(digest, _SERIAL_WIDTH)
    return id15 + checksum(id15)
