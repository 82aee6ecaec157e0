"""Integration fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sfsync.avro import SchemaRegistry


@pytest.fixture
def registry(services) -> Iterator[SchemaRegistry]:
    with SchemaRegistry(services.registry) as client:
        yield client
