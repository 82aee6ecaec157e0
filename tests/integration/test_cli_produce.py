"""`sfsync produce --fake N` writes N realistic events, spread over the product topics."""

from __future__ import annotations

from typer.testing import CliRunner

from sfsync.cli.main import app
from sfsync.topics import PRODUCT_TOPICS

from .helpers import end_offsets


def test_produce_fake_publishes_exactly_n_events(services, prefix, monkeypatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", services.bootstrap)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", services.registry)
    monkeypatch.setenv("SFSYNC_TOPIC_PREFIX", prefix)
    result = CliRunner().invoke(app, ["produce", "--fake", "400", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "published 400 events" in result.output
    per_topic = {spec.base: end_offsets(services.bootstrap, spec.name(prefix)) for spec in PRODUCT_TOPICS}
    assert sum(per_topic.values()) == 400
    assert all(count > 0 for count in per_topic.values()), per_topic
