"""Credentials never reach the terminal: a registry URL's ``user:password@`` is redacted in every
error sfsync prints and in the messages its errors carry."""

from __future__ import annotations

import os
import subprocess
import sys

from sfsync.redaction import redact
from sfsync.serde.registry import SchemaRegistry

SECRET_URL = "http://alice:s3cret-pw@127.0.0.1:9/apis/ccompat/v7"  # nothing listens on port 9


def test_a_registry_urls_password_is_not_in_a_failing_commands_error() -> None:
    env = {**os.environ, "SCHEMA_REGISTRY_URL": SECRET_URL}
    done = subprocess.run(
        [sys.executable, "-m", "sfsync.cli.main", "schemas", "register"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )

    assert done.returncode == 2, done.stderr
    assert "did not answer" in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert "http://[redacted]@127.0.0.1:9" in done.stderr


def test_the_registry_names_itself_without_its_credentials() -> None:
    with SchemaRegistry(SECRET_URL, timeout_s=0.5) as registry:
        assert "s3cret-pw" not in registry.url


def test_redaction_strips_url_credentials_and_tokens_alike() -> None:
    text = redact("https://bob:hunter2@registry.example/x Authorization: Bearer 00Dxx0000001gPL!AQ4AQFsomething")
    assert "hunter2" not in text and "AQ4AQ" not in text
    assert text.startswith("https://[redacted]@registry.example/x")


def test_redaction_leaves_the_jwt_bearer_flows_name_and_still_strips_a_bearer_header() -> None:
    assert (
        redact("--username: the jwt_bearer flow needs a username") == "--username: the jwt_bearer flow needs a username"
    )
    assert redact("Authorization: Bearer abc.def-123") == "Authorization: [redacted]"
    assert redact("bearer abc") == "[redacted]"
