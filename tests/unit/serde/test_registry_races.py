"""Two workers registering a subject's first schema at once: the one that loses the race is not refused."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

import pytest

from sfsync.emulator.server import free_port
from sfsync.errors import SchemaError
from sfsync.serde.registry import SchemaRegistry
from tests.kit import RegistryStandIn

SCHEMA = json.dumps({"type": "record", "name": "Ping", "namespace": "t", "fields": [{"name": "n", "type": "int"}]})


class RacedRegistry(RegistryStandIn):
    """Answers a registration 409 as Apicurio does to the loser of a race to create the subject
    ("already exists"), or as any registry does to an incompatible schema; a lookup finds the schema
    under id 42 only when ``registered``."""

    def __init__(self, port: int, *, message: str, registered: bool) -> None:
        super().__init__(port)
        self.message, self.registered = message, registered

    def answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, str, bytes]:
        route = urlsplit(path).path
        if method == "POST" and route.endswith("/versions"):
            return 409, "application/json", json.dumps({"error_code": 409, "message": self.message}).encode()
        if method == "POST" and route.startswith("/subjects/") and self.registered:
            found = {"subject": "s-value", "id": 42, "version": 1, "schema": SCHEMA}
            return 200, "application/json", json.dumps(found).encode()
        return 404, "application/json", json.dumps({"error_code": 40403, "message": "Schema not found"}).encode()


def test_a_registration_that_lost_the_race_to_create_the_subject_gets_the_winners_id() -> None:
    message = "An artifact with ID 's-value' in group 'null' already exists."
    with RacedRegistry(free_port(), message=message, registered=True) as stand_in:
        stand_in.start()
        assert SchemaRegistry(stand_in.url, timeout_s=1).register("s-value", SCHEMA) == 42


def test_an_incompatible_schema_is_still_refused() -> None:
    message = "Incompatible schema: a field was removed"
    with RacedRegistry(free_port(), message=message, registered=False) as stand_in:
        stand_in.start()
        with pytest.raises(SchemaError, match="not compatible"):
            SchemaRegistry(stand_in.url, timeout_s=1).register("s-value", SCHEMA)
