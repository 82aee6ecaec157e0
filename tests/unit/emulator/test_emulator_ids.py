"""Salesforce ids: the 15 -> 18 checksum, validation and normalisation."""

from __future__ import annotations

import pytest

from sfsync.emulator import ids

# Published pairs (see research/salesforce-api.md, IDs section) and ids recorded from real orgs.
KNOWN = [
    ("a01M00000062mPg", "a01M00000062mPgIAI"),
    ("001M000000qfPyS", "001M000000qfPySIAU"),
    ("a0D30000001n7Pi", "a0D30000001n7PiEAI"),
    ("AbCdEfGhIjKlMnO", "AbCdEfGhIjKlMnOVKV"),
    ("0035500001H9cak", "0035500001H9cakAAB"),
    ("00Q9H00000C6pyc", "00Q9H00000C6pycUAB"),  # cci_collections_create_leads.json
    ("0035500001H9kaA", "0035500001H9kaAAAR"),  # cci_collections_upsert_contact_by_email.json
    ("a00D0000008pQRA", "a00D0000008pQRAIA2"),  # restforce_sobject_get_deleted.json
]


@pytest.mark.parametrize(("id15", "id18"), KNOWN)
def test_to18_matches_real_pairs(id15: str, id18: str) -> None:
    assert ids.to18(id15) == id18
    assert ids.checksum(id15) == id18[15:]


@pytest.mark.parametrize(("id15", "id18"), KNOWN)
def test_normalize_accepts_15_and_any_case_of_18(id15: str, id18: str) -> None:
    assert ids.normalize(id15) == id18
    assert ids.normalize(id18) == id18
    assert ids.normalize(id18.lower()) == id18
    assert ids.normalize(id18.upper()) == id18


def test_validity() -> None:
    assert ids.is_valid_id("0035500001H9cak")
    assert ids.is_valid_id("0035500001H9cakAAB")
    assert ids.is_valid_id("0035500001h9cakaab")  # 18-character ids are case-insensitive
    assert not ids.is_valid_id("001RM000003oLrB000")  # checksum marks a digit as upper case
    assert not ids.is_valid_id("0035500001H9cakAA")  # 17 characters
    assert not ids.is_valid_id("0035500001H9ca-")
    assert not ids.is_valid_id(None)
    assert not ids.is_valid_id(12345)
    assert ids.try_normalize("not an id at all") is None
    with pytest.raises(ValueError, match="malformed id"):
        ids.normalize("001RM000003oLrB000")


def test_new_id_is_18_chars_with_prefix_valid_and_unique() -> None:
    minted = {ids.new_id("003") for _ in range(2000)}
    assert len(minted) == 2000
    for record_id in minted:
        assert len(record_id) == 18
        assert record_id.startswith("003" + ids.POD)
        assert ids.is_valid_id(record_id)
        assert ids.to18(record_id[:15]) == record_id
    with pytest.raises(ValueError, match="key prefix"):
        ids.new_id("03")


def test_stable_id_is_deterministic() -> None:
    first = ids.stable_id("005", "rep@acme.test")
    assert first == ids.stable_id("005", "rep@acme.test")
    assert first != ids.stable_id("005", "other@acme.test")
    assert first.startswith("005") and ids.is_valid_id(first)
