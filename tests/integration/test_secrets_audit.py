"""The secrets audit itself (``tests/integration/secrets_audit.py``, the ``secrets_audit`` fixture) finds a secret in
each place it looks, on the real Kafka and registry: a spawned process's log and ``/metrics`` page, this process's
log, an in-process metrics registry, an error-log entry, a DLQ record's header, a command's output; and it knows
each kind of secret without being told: an org's issued tokens and consumer secret, a connection's sealed
secrets, the connection key. An audit that could not fail would prove nothing."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from prometheus_client import CollectorRegistry, Gauge

from sfsync.emulator.server import free_port, serve_orgs_in_thread
from sfsync.errors import Category
from sfsync.ops.errorlog import ErrorLog, ErrorLogEntry
from sfsync.serde.registry import SchemaRegistry
from sfsync.workspaces import RegistryWriter
from tests.integration.helpers import make_topics
from tests.integration.processes import Spawned, pipeline_env
from tests.integration.secrets_audit import SecretsAudit
from tests.kit.workspaces import connection, key_item


def test_the_audit_finds_a_secret_wherever_it_looks(
    services: Any, prefix: str, registry: SchemaRegistry, tmp_path: Path
) -> None:
    make_topics(services, prefix)
    kafka = {"bootstrap.servers": services.bootstrap}
    audit = SecretsAudit(services, prefix)
    with serve_orgs_in_thread(1) as orgs:
        (org,) = orgs
        access = org.emulator.auth.issue_session().access_token
        refresh = org.refresh_token()
        user = org.emulator.auth.config.users[0]
        audit.org(orgs)
        audit.secret("the test's own secret", "NAMED-by-the-test-0c7e")
        with RegistryWriter(kafka, registry, prefix=prefix) as writer:
            sealed = {"refresh_token": "5Aep861-SEALED-only-a1b2", "client_secret": "CLIENT-sealed-only-3c4d"}
            writer.put_connection(connection("leaky", sealed))

        key = key_item("k1").partition(":")[2]
        page = tmp_path / "page"
        page.mkdir()
        (page / "metrics").write_text(f'leak{{key="{key}"}} 1.0\n')
        port = free_port()
        server = Spawned(
            "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(page),
            env=pipeline_env(services, prefix), log=tmp_path / "server.log", metrics_port=port,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 20
            while True:  # its log names each path asked for: a password in one
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/{user.password}", timeout=2)
                except urllib.error.HTTPError:
                    break  # 404, logged
                except OSError:
                    assert time.monotonic() < deadline, server.log_tail()
                    time.sleep(0.1)
        finally:
            server.stop()

        with audit.capturing_logs():
            logging.getLogger("sfsync.sinks").info("logged in with %s", access)
        gauges = CollectorRegistry()
        Gauge("leak", "a label holding a secret", ["token"], registry=gauges).labels(refresh).set(1)
        audit.metrics("an in-process worker", gauges)
        with ErrorLog(kafka, registry, prefix=prefix) as errors:
            errors.record(ErrorLogEntry(Category.CONNECTION, "LEAK", f"refused: {org.client_secret}"))
        producer = Producer(kafka)
        producer.produce(prefix + "sfsync.dlq", b"{}", headers=[("sfsync.errors.note", b"CLIENT-sealed-only-3c4d")])
        assert producer.flush(30) == 0
        audit.text("a command's output", "connection show: NAMED-by-the-test-0c7e")

        leaks, problems = audit.leaks()

    assert not problems
    expected = [  # (what, where it begins)
        (f"password of {user.username}", "log of `http.server "),
        ("connection key 'k1'", "/metrics of `http.server "),
        ("token #1 issued by org0", "this process's log"),
        ("token #2 issued by org0", "/metrics of an in-process worker"),
        (f"consumer secret of org0's app {org.client_id}", prefix + "sfsync.errors["),
        ("client_secret of connection leaky", prefix + "sfsync.dlq["),
        ("the test's own secret", "a command's output"),
    ]
    missed = [(what, where) for what, where in expected if not [
        leak for leak in leaks if leak.secret == what and leak.where.startswith(where)
    ]]  # fmt: skip
    assert not missed, "\n".join(str(leak) for leak in leaks)
    (header,) = [leak for leak in leaks if leak.where.startswith(prefix + "sfsync.dlq")]
    assert "header sfsync.errors.note: <client_secret of connection leaky>" in header.context


def test_the_audit_refuses_to_vouch_for_a_test_whose_secrets_it_cannot_know(services: Any, prefix: str) -> None:
    audit = SecretsAudit(services, prefix)
    audit.secret("a short secret", "r1")
    leaks, problems = audit.leaks()
    assert not leaks
    assert problems == [
        "a short secret: 2 characters, too short to look for (at least 8): give the test a distinctive value",
        "the audit knows no secret: it proves nothing",
    ]
