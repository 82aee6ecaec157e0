"""The directory over the registry's topics (read by the kit's in-memory topics): the last record of each key,
tombstones, bad records passed over, Kafka failures before and after it loaded."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from sfsync.errors import ConfigError, FatalError, ServiceUnavailableError
from sfsync.workspaces import ConnectionNotFoundError, Directory, WorkspaceState
from tests.kit import FakeRegistry
from tests.kit.workspaces import FakeRegistryTopics, connection, key_item, keys, workspace


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


@pytest.fixture
def topics(registry: FakeRegistry) -> FakeRegistryTopics:
    return FakeRegistryTopics(registry, prefix="p.")


@pytest.fixture
def directory(registry: FakeRegistry, topics: FakeRegistryTopics) -> Iterator[Directory]:
    with Directory({}, registry, prefix="p.", keys=keys("k1"), read=topics, poll_s=0.05, retry_wait_s=0.05) as found:  # type: ignore[arg-type]
        yield found


def test_the_last_record_of_each_key_is_kept_and_a_tombstone_removes_it(
    topics: FakeRegistryTopics, directory: Directory
) -> None:
    topics.put_connection(connection("acme-org"))
    topics.put_connection(connection("globex-org"))
    topics.put_workspace(workspace("ws-b", "acme-org"))
    topics.put_workspace(workspace("ws-a", "globex-org"))
    topics.put_workspace(workspace("ws-c", "acme-org"))
    topics.put_workspace(workspace("ws-b", "acme-org", WorkspaceState.PAUSED, reason="migrating"))
    topics.remove_workspace("ws-c")
    topics.remove_connection("globex-org")
    directory.start().wait_loaded(5)
    assert [w.workspace_id for w in directory.workspaces()] == ["ws-a", "ws-b"]
    paused = directory.workspace("ws-b")
    assert paused is not None and paused.state is WorkspaceState.PAUSED and paused.reason == "migrating"
    assert directory.workspace("ws-c") is None
    assert [c.connection_id for c in directory.connections()] == ["acme-org"]
    assert [w.workspace_id for w in directory.workspaces_of("acme-org")] == ["ws-b"]


def test_a_change_written_later_is_followed(topics: FakeRegistryTopics, directory: Directory) -> None:
    directory.start().wait_loaded(5)
    assert directory.workspaces() == []
    topics.put_workspace(workspace("ws-1"))
    assert directory.wait_for(lambda state: state.workspace("ws-1") is not None, 5)
    topics.remove_workspace("ws-1")
    assert directory.wait_for(lambda state: state.workspace("ws-1") is None, 5)


def test_a_bad_record_is_passed_over_with_a_warning_and_the_others_are_read(
    topics: FakeRegistryTopics, directory: Directory, caplog: pytest.LogCaptureFixture
) -> None:
    topics.add(topics.workspaces_topic, "ws-x", b"not avro")
    topics.put_workspace(workspace("ws-other"))
    topics.add(topics.workspaces_topic, "ws-y", topics.records[-1].value())  # ws-other's record under ws-y
    topics.add(topics.connections_topic, "ws-z", topics.records[-1].value())  # a Workspace on the connections topic
    topics.put_workspace(workspace("ws-1"))
    with caplog.at_level(logging.WARNING, logger="sfsync.workspaces.directory"):
        directory.start().wait_loaded(5)
    assert [w.workspace_id for w in directory.workspaces()] == ["ws-1", "ws-other"]
    assert directory.connections() == []
    warnings = [r.getMessage() for r in caplog.records]
    assert any("passed over p.sfsync.workspaces[0]@0" in w and "wire format" in w for w in warnings)
    assert any("passed over p.sfsync.workspaces[0]@2: the record's id is not its key" in w for w in warnings)
    assert any("passed over p.sfsync.connections[0]@0" in w and "does not belong" in w for w in warnings)


def test_a_missing_topic_before_loading_fails_at_once(topics: FakeRegistryTopics, directory: Directory) -> None:
    topics.fail_next_read = FatalError(
        "topic p.sfsync.workspaces does not exist; create it with `sfsync topics ensure`"
    )
    directory.start()
    with pytest.raises(FatalError, match="does not exist"):
        directory.wait_loaded(30)


def test_kafka_not_answering_is_retried_and_named_when_loading_takes_too_long(
    registry: FakeRegistry, topics: FakeRegistryTopics
) -> None:
    topics.fail_next_read = ServiceUnavailableError("Kafka at 127.0.0.1:1 did not answer within 10s")
    topics.put_workspace(workspace("ws-1"))
    slow = Directory({}, registry, prefix="p.", read=topics, poll_s=0.05, retry_wait_s=0.5)  # type: ignore[arg-type]
    with slow.start():
        with pytest.raises(ServiceUnavailableError, match=r"within 0.1s: Kafka at 127.0.0.1:1 did not answer"):
            slow.wait_loaded(0.1)
        slow.wait_loaded(5)
        assert slow.workspace("ws-1") is not None
    assert topics.reads == [None, None]


def test_a_record_met_while_the_schema_registry_is_down_is_read_again_not_passed_over(
    registry: FakeRegistry, topics: FakeRegistryTopics, directory: Directory
) -> None:
    topics.put_workspace(workspace("ws-1"))
    registry.unavailable = ServiceUnavailableError("schema registry at http://registry did not answer")
    directory.start()
    with pytest.raises(ServiceUnavailableError, match="schema registry at http://registry did not answer"):
        directory.wait_loaded(0.3)
    registry.unavailable = None
    directory.wait_loaded(5)
    assert directory.workspace("ws-1") is not None
    assert all(starts is None for starts in topics.reads)  # read again from the start: nothing was applied


def test_after_loading_a_failure_is_logged_and_reading_goes_on_where_it_stopped(
    topics: FakeRegistryTopics, directory: Directory, caplog: pytest.LogCaptureFixture
) -> None:
    topics.put_workspace(workspace("ws-1"))
    topics.put_workspace(workspace("ws-2"))
    with caplog.at_level(logging.WARNING, logger="sfsync.workspaces.directory"):
        directory.start().wait_loaded(5)
        topics.interrupt = ServiceUnavailableError("Kafka did not answer: reading failed")
        deadline = time.monotonic() + 5
        while len(topics.reads) < 2 and time.monotonic() < deadline:  # the directory reads again
            time.sleep(0.01)
        topics.put_workspace(workspace("ws-3"))
        assert directory.wait_for(lambda state: state.workspace("ws-3") is not None, 5)
    assert topics.reads == [None, {(topics.workspaces_topic, 0): 2}]
    assert [w.workspace_id for w in directory.workspaces()] == ["ws-1", "ws-2", "ws-3"]
    assert any("Kafka did not answer: reading failed; reading again" in r.getMessage() for r in caplog.records)


def test_settings_open_the_connections_secrets_only_with_keys(
    registry: FakeRegistry, topics: FakeRegistryTopics, directory: Directory
) -> None:
    topics.put_connection(connection("acme-org"))
    directory.start().wait_loaded(5)
    settings = directory.salesforce_settings("acme-org", read_timeout_s=5)
    assert settings.refresh_token is not None and settings.refresh_token.get_secret_value() == "r1"
    assert settings.read_timeout_s == 5
    with pytest.raises(ConnectionNotFoundError, match="no connection 'nope'"):
        directory.salesforce_settings("nope")
    with Directory({}, registry, prefix="p.", read=topics, poll_s=0.05) as keyless:  # type: ignore[arg-type]
        keyless.start().wait_loaded(5)
        with pytest.raises(ConfigError, match="SFSYNC_CONNECTION_KEYS is not set"):
            keyless.salesforce_settings("acme-org")


def test_a_directory_repr_shows_key_ids_only(directory: Directory) -> None:
    assert key_item("k1").split(":")[1] not in repr(directory)
    assert "key_ids=['k1']" in repr(directory)
