"""The secrets audit of an integration test (the ``secrets_audit`` fixture of ``conftest.py``): once the test is
over, no secret it knows is in anything its workers and sfsync's topics said.

What is secret (gathered, not declared by hand):

- every secret sealed in any version of the test's ``sfsync.connections`` records (refresh tokens, rotated ones
  among them, client secrets, private keys), opened with the kit's key of each key id
  (``tests.kit.workspaces.key_item``), and those keys themselves;
- of every emulated org the test used (its ``RunningOrg``/``RunningOrgs`` fixtures, and those it names with
  :meth:`SecretsAudit.org`): its connected apps' consumer secrets, its users' passwords and security
  tokens, and every access and refresh token it issued;
- what the test names with :meth:`SecretsAudit.secret`; and anything shaped like an access token or a JWT
  (:data:`tests.kit.leaks.SHAPES`).

Where it looks:

- the logs of every worker the test spawned (:class:`~tests.integration.processes.Spawned`), and what the
  test's own process logged at INFO while the test ran (in-process workers, with the libraries quieted as
  ``sfsync.logs.configure`` quiets them);
- the ``/metrics`` page of every spawned worker given a metrics port (read as it is stopped), and of the
  metrics registries the test names with :meth:`SecretsAudit.metrics`;
- every record of every topic of the test's prefix, read uncommitted: keys, values and headers (the error log
  ``sfsync.errors`` and the DLQ's headers among them);
- texts the test hands in with :meth:`SecretsAudit.text` (a command's output).

It fails the test when a secret is found (naming it, never showing it), when it knows no secret at all (it
would prove nothing), or when a spawned worker's ``/metrics`` was never read.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry, generate_latest

from sfsync.emulator.server import RunningOrg, RunningOrgs
from sfsync.kafka.reading import read_topics
from sfsync.logs import FORMAT, QUIET_LIBRARIES
from sfsync.serde.codec import AvroDecoder
from sfsync.serde.registry import SchemaRegistry
from sfsync.topics import CONNECTIONS
from sfsync.workspaces import Connection, SealError, parse_keys
from sfsync.workspaces.records import SECRET_FIELDS
from tests.integration.processes import Spawned
from tests.kit.leaks import Leak, Secrets
from tests.kit.workspaces import key_item

__all__ = ["SecretsAudit"]


class _Captured(logging.Handler):
    """Every record logged in this process, formatted as a worker formats it."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(logging.Formatter(FORMAT))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class SecretsAudit:
    """One test's audit (see the module doc): :meth:`capturing_logs` while the test runs, then :meth:`check`."""

    def __init__(self, services: Any, prefix: str) -> None:
        self.services = services
        self.prefix = prefix
        self._named: list[tuple[str, str]] = []
        self._orgs: list[RunningOrg] = []
        self._texts: list[tuple[str, str]] = []
        self._registries: list[tuple[str, CollectorRegistry]] = []
        self._spawned_from = len(Spawned.started)
        self._captured = _Captured()
        self.read: dict[str, int] = {}
        """What the last :meth:`leaks` read: how many texts of each kind, how many secrets."""

    # -- what the test names ----------------------------------------------------------------------
    def secret(self, label: str, value: str) -> None:
        """``value`` is secret (``label``: what it is)."""
        self._named.append((label, value))

    def org(self, *orgs: RunningOrg | RunningOrgs) -> None:
        """Emulated orgs the test used: their secrets and every token they issued are looked for."""
        for found in orgs:
            for org in found if isinstance(found, RunningOrgs) else [found]:
                if all(org is not known for known in self._orgs):
                    self._orgs.append(org)

    def text(self, where: str, text: str) -> None:
        """A text to look in (a command's output...)."""
        self._texts.append((where, text))

    def metrics(self, where: str, registry: CollectorRegistry) -> None:
        """An in-process worker's metrics registry: its ``/metrics`` page is looked in."""
        self._registries.append((where, registry))

    @contextlib.contextmanager
    def capturing_logs(self) -> Iterator[None]:
        """Keep what this process logs at INFO and up meanwhile (the libraries that log request URLs at
        WARNING and up only, as every worker configures them)."""
        root = logging.getLogger()
        quiet = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
        level = root.level
        root.addHandler(self._captured)
        root.setLevel(min(level, logging.INFO) if level != logging.NOTSET else logging.INFO)
        for name in QUIET_LIBRARIES:
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            yield
        finally:
            root.removeHandler(self._captured)
            root.setLevel(level)
            for name, was in quiet.items():
                logging.getLogger(name).setLevel(was)

    # -- the audit --------------------------------------------------------------------------------
    def check(self) -> None:
        """Fail when a secret is found, or the audit is not whole (:meth:`leaks`)."""
        leaks, problems = self.leaks()
        shown = "\n".join([*(f"- {leak}" for leak in leaks), *(f"- {p}" for p in problems)])
        assert not leaks and not problems, f"secrets audit (read {self.read}):\n{shown}"

    def leaks(self) -> tuple[list[Leak], list[str]]:
        """The secrets found, and what keeps the audit from being whole: no secret known (it would prove
        nothing), a secret too short to look for, a connection that does not open, a spawned worker's
        ``/metrics`` never read."""
        problems: list[str] = []
        secrets = self._secrets(problems)
        leaks = secrets.find(self._sources(problems))
        if not len(secrets):
            problems.append("the audit knows no secret: it proves nothing")
        return leaks, problems

    def _secrets(self, problems: list[str]) -> Secrets:
        secrets = Secrets()
        count = 0

        def add(label: str, value: str, *, pem: bool = False) -> None:
            nonlocal count
            try:
                secrets.add_pem(label, value) if pem else secrets.add(label, value)
                count += 1
            except ValueError as exc:
                problems.append(str(exc))

        for label, value in self._named:
            add(label, value)
        for connection_id, key_id, opened in self._sealed(problems):
            add(f"connection key {key_id!r}", key_item(key_id).partition(":")[2])
            for name, value in opened.items():
                add(f"{name} of connection {connection_id}", value, pem=name == "private_key")
        for org in self._orgs:
            auth = org.emulator.auth
            for app in auth.config.connected_apps:
                add(f"consumer secret of {org.name}'s app {app.client_id}", app.client_secret)
            for user in auth.config.users:
                add(f"password of {user.username}", user.password)
                if user.security_token:
                    add(f"security token of {user.username}", user.security_token)
            for number, token in enumerate(auth.issued_tokens(), 1):
                add(f"token #{number} issued by {org.name}", token)
        self.read["secrets"] = count
        return secrets

    def _sealed(self, problems: list[str]) -> Iterator[tuple[str, str, dict[str, str]]]:
        """(connection id, key id, opened secrets) of every version of every connection record of the prefix."""
        topic = CONNECTIONS.name(self.prefix)
        if topic not in self._topics():
            return
        with SchemaRegistry(self.services.registry) as registry:
            decoder = AvroDecoder(registry)
            for message in read_topics({"bootstrap.servers": self.services.bootstrap}, [topic]):
                value = message.value()
                if value is None:
                    continue  # a tombstone
                connection = Connection.from_avro(decoder.decode(value)[1])
                key_id = connection.secrets.key_id
                try:
                    opened = parse_keys(key_item(key_id)).open(connection.connection_id, connection.secrets)
                except SealError:
                    problems.append(
                        f"connection {connection.connection_id}: its secrets do not open with the kit's "
                        f"key_item({key_id!r}); seal test connections with the kit's keys"
                    )
                    continue
                unknown = set(opened) - set(SECRET_FIELDS[connection.flow].all)
                if unknown:
                    problems.append(
                        f"connection {connection.connection_id}: unexpected secret fields {sorted(unknown)}"
                    )
                yield connection.connection_id, key_id, {k: v.get_secret_value() for k, v in opened.items()}

    def _topics(self) -> list[str]:
        admin = AdminClient({"bootstrap.servers": self.services.bootstrap})
        return sorted(t for t in admin.list_topics(timeout=10).topics if t.startswith(self.prefix))

    def _sources(self, problems: list[str]) -> Iterator[tuple[str, bytes | str]]:
        counts = dict.fromkeys(("logs", "metrics pages", "topic records", "texts"), 0)
        self.read.update(counts)

        def seen(kind: str, items: Iterable[tuple[str, bytes | str]]) -> Iterator[tuple[str, bytes | str]]:
            for item in items:
                self.read[kind] += 1
                yield item

        spawned = Spawned.started[self._spawned_from :]
        yield from seen("logs", [(f"log of `{s.name}` ({s.log.name})", s.output()) for s in spawned])
        yield from seen("logs", [("this process's log", "\n".join(self._captured.lines))])
        for child in spawned:
            if child.metrics_port is not None and child.metrics_text is None:
                problems.append(f"`{child.name}`: its /metrics was never read ({child.metrics_error or 'not running'})")
        pages: list[tuple[str, bytes | str]] = [
            (f"/metrics of `{s.name}`", s.metrics_text) for s in spawned if s.metrics_text is not None
        ]
        pages += [(f"/metrics of {where}", generate_latest(registry)) for where, registry in self._registries]
        yield from seen("metrics pages", pages)
        yield from seen("texts", self._texts)
        yield from seen("topic records", self._records())

    def _records(self) -> Iterator[tuple[str, bytes]]:
        topics = self._topics()
        if not topics:
            return
        for message in read_topics({"bootstrap.servers": self.services.bootstrap}, topics):
            where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
            parts: list[tuple[str, bytes]] = [("key", message.key() or b""), ("value", message.value() or b"")]
            headers = message.headers() or []
            for name, value in headers.items() if isinstance(headers, dict) else headers:
                parts.append((f"header {name}", value.encode() if isinstance(value, str) else value or b""))
            yield where, b"\n".join(f"{part}: ".encode() + data for part, data in parts)
