"""The registry's settings: every problem at once (each bad key on its own line), keys never shown."""

from __future__ import annotations

import pytest

from sfsync.errors import ConfigError
from sfsync.workspaces import load_workspaces_settings
from tests.kit.workspaces import key_item


def test_every_problem_is_listed_at_once_with_each_bad_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "localhost")
    monkeypatch.setenv("SFSYNC_WORKSPACES_LOAD_TIMEOUT_S", "0")
    monkeypatch.setenv("SFSYNC_CONNECTION_KEYS", f"{key_item('k1')},k2:c2hvcnQ=,oops")
    with pytest.raises(ConfigError) as caught:
        load_workspaces_settings()
    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert any(p.startswith("KAFKA_BOOTSTRAP_SERVERS") for p in problems)
    assert any(p.startswith("SFSYNC_WORKSPACES_LOAD_TIMEOUT_S") for p in problems)
    assert "SFSYNC_CONNECTION_KEYS key 'k2': 5 bytes, expected 32 (AES-256)" in problems
    assert "SFSYNC_CONNECTION_KEYS item 3: expected key_id:base64(32 bytes), found no ':'" in problems
    assert key_item("k1").split(":")[1] not in str(caught.value)
    assert "c2hvcnQ=" not in str(caught.value)


def test_the_keys_never_show_in_repr_str_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    value = f"{key_item('k2')},{key_item('k1')}"
    monkeypatch.setenv("SFSYNC_CONNECTION_KEYS", value)
    settings = load_workspaces_settings()
    for shown in (repr(settings), str(settings), str(settings.model_dump()), repr(settings.keys())):
        for item in value.split(","):
            assert item.split(":")[1] not in shown
    assert settings.keys().key_ids == ["k2", "k1"]


def test_without_keys_the_settings_load_but_no_key_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFSYNC_CONNECTION_KEYS", raising=False)
    settings = load_workspaces_settings()
    assert settings.connection_keys is None
    with pytest.raises(ConfigError, match="SFSYNC_CONNECTION_KEYS is not set: connections' secrets are never"):
        settings.keys()


def test_every_setting_says_what_it_is() -> None:
    from sfsync.workspaces import WorkspacesSettings

    own = {"enabled", "required", "connection_keys", "load_timeout_s", "delivery_timeout_s"}
    fields = WorkspacesSettings.model_fields
    assert own <= set(fields)
    assert all(fields[name].description for name in own)


def test_the_registry_is_off_and_unknown_workspaces_are_served_unless_the_settings_say_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SFSYNC_WORKSPACES_ENABLED", raising=False)
    monkeypatch.delenv("SFSYNC_WORKSPACES_REQUIRED", raising=False)
    default = load_workspaces_settings()
    assert (default.enabled, default.required) == (False, False)  # single-org: the env connection serves all
    monkeypatch.setenv("SFSYNC_WORKSPACES_ENABLED", "true")
    monkeypatch.setenv("SFSYNC_WORKSPACES_REQUIRED", "true")
    chosen = load_workspaces_settings()
    assert (chosen.enabled, chosen.required) == (True, True)
