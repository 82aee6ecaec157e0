"""The per-field conflict policy of a Salesforce change of a field sfsync wrote."""

from __future__ import annotations

import pytest

from sfsync.processors.inbound.decide import salesforce_wins


@pytest.mark.parametrize(
    ("policy", "salesforce_at", "product_at", "wins"),
    [
        ("salesforce_wins", 1, 2, True),
        ("product_wins", 2, 1, False),
        ("last_write_wins", 2, 1, True),
        ("last_write_wins", 1, 2, False),
        ("last_write_wins", 1, 1, False),  # a tie goes to the product
        ("last_write_wins", 1, None, True),  # no product time known
    ],
)
def test_salesforce_wins(policy: str, salesforce_at: int, product_at: int | None, wins: bool) -> None:
    assert salesforce_wins(policy, salesforce_at, product_at) is wins
