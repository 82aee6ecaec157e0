"""A Confluent-compatible schema registry: confluent-kafka's client, with its errors turned into sfsync's.

Outages (the registry restarting, a gateway in front of it failing): a client built with a
:class:`~sfsync.retry.RetryPolicy` (every worker's: :meth:`SchemaRegistry.from_settings` with
``ride_out_outages=True``, until ``SCHEMA_REGISTRY_RETRY_TIMEOUT_S``) tries a call that met a transient
fault again — no answer (connection refused or reset, a timeout) or an HTTP 408, 429 or 5xx — with the
policy's jittered waits until the deadline, counted from the call's first failure; then it raises
the same :class:`~sfsync.errors.ServiceUnavailableError` as a single attempt would. Any other
answer is not retried: a 404 for a schema id is the record's fault (:class:`UnknownSchemaError`, a
skippable-record error), a 409/422/400 a :class:`~sfsync.errors.SchemaError`. One WARNING is logged
when an outage starts ("unreachable, retrying until ...") and one INFO when the registry answers
again, not a line per attempt. confluent-kafka's own retries are off (``max.retries`` 0): this is the
calls' one retry owner (docs/decisions/0006-one-retry-owner.md). A command a person runs builds its
client without a policy: one attempt, the error reported at once.

Two ways to wait, for two kinds of caller:

- the blocking methods (:meth:`SchemaRegistry.register`, :meth:`~SchemaRegistry.writer_schema`...)
  sleep between attempts in the calling thread: for start-up, before a worker joins its consumer
  group, and for code that owns its thread;
- :meth:`SchemaRegistry.awriter_schema` is for an event loop that must keep running meanwhile (a
  Faust app's, whose consumer heartbeats on that loop and is evicted from its group after the
  broker session timeout; the sink's, which serves its stop signal there): each attempt runs in a
  worker thread (bounded by ``timeout_s``) and the waits are ``asyncio.sleep``, so an outage as long
  as the whole deadline never holds the loop; cancelling it stops the retries at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import fastavro
from confluent_kafka.schema_registry import ConfigCompatibilityLevel, Schema, SchemaRegistryClient, ServerConfig
from confluent_kafka.schema_registry.error import SchemaRegistryError

from sfsync import time as sfsync_time
from sfsync.errors import SchemaError, ServiceUnavailableError, SfsyncError, SkippableRecordError
from sfsync.redaction import redact
from sfsync.retry import RetryPolicy
from sfsync.settings import RegistryConnection

__all__ = ["OUTAGE_WAIT_INITIAL_S", "OUTAGE_WAIT_MAX_S", "SchemaRegistry", "UnknownSchemaError"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP answers of the registry that a later attempt may not get (a restart, a gateway, overload)."""

OUTAGE_WAIT_INITIAL_S = 0.5
"""The first wait before a registry call that met a transient fault is tried again."""
OUTAGE_WAIT_MAX_S = 5.0
"""The longest wait between attempts: a registry that is back is noticed within this."""


# ---------------------------------------------------------------------- registry
class UnknownSchemaError(SkippableRecordError):
    """A record names a schema id the registry does not have: that record is parked, the stream goes on."""

    default_code = "UNKNOWN_SCHEMA_ID"


class _UnansweredError(ServiceUnavailableError):
    """A transient fault of one attempt (no answer, or HTTP 408/429/5xx): tried again while the policy allows."""


class SchemaRegistry:
    """A Confluent-compatible registry (Apicurio's ccompat API here). Errors become sfsync's.

    ``retry``: how long a call that meets a transient fault is tried again (module doc); None: one
    attempt. ``clock`` and ``sleep`` (blocking) are the ones the blocking retries use.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 5.0,
        username: str | None = None,
        password: str | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = sfsync_time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        conf: dict[str, Any] = {"url": url, "timeout": timeout_s, "max.retries": 0}
        if username:
            conf["basic.auth.user.info"] = f"{username}:{password or ''}"
        self.url = redact(url)  # what messages name: never the credentials a URL may carry
        self.retry = retry
        self._clock = clock
        self._sleep = sleep
        self._client = SchemaRegistryClient(conf)
        self._by_id: dict[int, Any] = {}
        self._outage_lock = threading.Lock()
        self._outage_since: float | None = None
        """When the current outage's first failed call failed (``clock``); None while the registry answers."""

    # -- one attempt -----------------------------------------------------------------------
    def _attempt(self, what: str, func: Callable[..., _T], *args: Any, not_found: SfsyncError | None = None) -> _T:
        """``func(*args)`` once, with the registry's errors as sfsync's; a 404 raises ``not_found`` when given.

        Raises:
            _UnansweredError: no answer, or an HTTP status of :data:`TRANSIENT_STATUSES` (a
                :class:`~sfsync.errors.ServiceUnavailableError`).
        """
        try:
            return func(*args)
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status == 404 and not_found is not None:
                raise not_found from exc
            if status == 409:
                raise SchemaError(f"registry refused {what}: not compatible ({exc.error_message})") from exc
            if status in (422, 400):
                raise SchemaError(f"registry refused {what}: {exc.error_message}") from exc
            if status in TRANSIENT_STATUSES or status >= 500:
                raise _UnansweredError(f"schema registry at {self.url} failed on {what}: HTTP {status}") from exc
            raise SchemaError(f"registry: {what}: HTTP {status} {exc.error_message}") from exc
        except Exception as exc:
            raise _UnansweredError(
                f"schema registry at {self.url} did not answer ({what}): {type(exc).__name__}"
            ) from exc

    # -- retries (module doc) ----------------------------------------------------------------
    def _wait_before_retry(
        self, error: _UnansweredError, what: str, first_failure: float, attempt: int
    ) -> float | None:
        """How long to wait before attempt ``attempt + 1`` of a call that first failed at ``first_failure``;
        None: no retry (no policy, or its deadline has passed). Logs the outage's WARNING once."""
        policy = self.retry
        if policy is None:
            return None
        now = self._clock()
        deadline = policy.deadline(first_failure)
        if now >= deadline:
            with self._outage_lock:
                self._outage_since = None  # given up: a later call's failure starts (and reports) an outage anew
            return None
        with self._outage_lock:
            starting = self._outage_since is None
            if starting:
                self._outage_since = first_failure
        if starting:
            until = sfsync_time.utcnow() + dt.timedelta(seconds=deadline - now)
            log.warning(
                "schema registry unreachable, retrying until %s (%.0fs): %s",
                until.strftime("%H:%M:%S UTC"),
                deadline - now,
                error,
            )
        else:
            log.debug("schema registry: attempt %d failed (%s): %s", attempt, what, error)
        return min(policy.delay(attempt), deadline - now)

    def _answered(self) -> None:
        """A call got an answer: an outage in progress is over (its INFO line)."""
        if self._outage_since is None:
            return
        with self._outage_lock:
            since, self._outage_since = self._outage_since, None
        if since is not None:
            log.info("schema registry at %s answers again (after %.0fs unreachable)", self.url, self._clock() - since)

    def _call(self, what: str, func: Callable[..., _T], *args: Any, not_found: SfsyncError | None = None) -> _T:
        """:meth:`_attempt`, tried again after transient faults while :attr:`retry` allows (blocking waits).

        Raises:
            ServiceUnavailableError: no answer until the deadline (or at the one attempt without a policy).
        """
        first_failure: float | None = None
        attempt = 0
        while True:
            try:
                result = self._attempt(what, func, *args, not_found=not_found)
            except _UnansweredError as error:
                attempt += 1
                first_failure = self._clock() if first_failure is None else first_failure
                wait = self._wait_before_retry(error, what, first_failure, attempt)
                if wait is None:
                    raise ServiceUnavailableError(str(error)) from error.__cause__
                self._sleep(wait)
                continue
            self._answered()
            return result

    async def _acall(self, what: str, func: Callable[..., _T], *args: Any, not_found: SfsyncError | None = None) -> _T:
        """:meth:`_call` for an event loop: each attempt in a worker thread, ``asyncio.sleep`` in between."""
        first_failure: float | None = None
        attempt = 0
        while True:
            try:
                result = await asyncio.to_thread(self._attempt, what, func, *args, not_found=not_found)
            except _UnansweredError as error:
                attempt += 1
                first_failure = self._clock() if first_failure is None else first_failure
                wait = self._wait_before_retry(error, what, first_failure, attempt)
                if wait is None:
                    raise ServiceUnavailableError(str(error)) from error.__cause__
                await asyncio.sleep(wait)
                continue
            self._answered()
            return result

    @classmethod
    def from_settings(cls, conn: RegistryConnection, *, ride_out_outages: bool) -> SchemaRegistry:
        """The registry a component's settings point at (URL, timeout, basic auth).

        ``ride_out_outages``: a worker's client, whose calls are retried until
        ``SCHEMA_REGISTRY_RETRY_TIMEOUT_S`` (module doc; 0: one attempt all the same); False: a
        command's, one attempt per call, the fault reported at once.
        """
        password = conn.schema_registry_password
        deadline_s = conn.schema_registry_retry_timeout_s
        retry = None
        if ride_out_outages and deadline_s > 0:
            retry = RetryPolicy(
                timeout_s=deadline_s,
                wait_initial_s=min(OUTAGE_WAIT_INITIAL_S, deadline_s),
                wait_max_s=min(OUTAGE_WAIT_MAX_S, deadline_s),
            )
        return cls(
            conn.schema_registry_url,
            timeout_s=conn.schema_registry_timeout_s,
            username=conn.schema_registry_username,
            password=password.get_secret_value() if password else None,
            retry=retry,
        )

    def close(self) -> None:
        """Release the HTTP connections (schemas already fetched stay cached)."""
        self._client.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lookup(self, subject: str, schema_str: str) -> int:
        """The id under which ``schema_str`` is registered for ``subject``; raises if it is not registered."""
        registered = self._call(
            f"looking up {subject}", self._client.lookup_schema, subject, Schema(schema_str, "AVRO")
        )
        if registered.schema_id is None:
            raise SchemaError(f"registry: looking up {subject}: the answer names no schema id")
        return int(registered.schema_id)

    def register(self, subject: str, schema_str: str) -> int:
        """Register (or find) ``schema_str`` under ``subject``; the registry enforces compatibility.

        A refusal is checked once by looking the schema up: two workers registering a subject's first
        schema at once race to create it, and Apicurio answers the loser 409 "already exists" although
        the very schema is now registered (seen when the chaos run's workers all restart together).
        """
        try:
            return int(
                self._call(f"registering {subject}", self._client.register_schema, subject, Schema(schema_str, "AVRO"))
            )
        except SchemaError as refused:
            try:
                return self.lookup(subject, schema_str)
            except SfsyncError:
                raise refused from refused.__cause__

    def is_compatible(self, subject: str, schema_str: str) -> bool:
        """Whether ``schema_str`` may be registered under ``subject`` (True when the subject is new)."""
        new_subject = _NewSubjectError()
        try:
            return bool(
                self._call(
                    f"checking the compatibility of {subject}",
                    self._client.test_compatibility,
                    subject,
                    Schema(schema_str, "AVRO"),
                    not_found=new_subject,
                )
            )
        except _NewSubjectError:
            return True

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call(
            f"setting compatibility of {subject}",
            self._client.set_config,
            subject,
            ServerConfig(compatibility=ConfigCompatibilityLevel(level)),
        )

    def has_writer_schema(self, schema_id: int) -> bool:
        """Whether :meth:`writer_schema` answers ``schema_id`` from its cache, without a call."""
        return schema_id in self._by_id

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed writer schema of ``schema_id`` (fetched once, then cached); a fetch blocks the
        calling thread through an outage (module doc).

        Raises:
            UnknownSchemaError: the registry has no such id (the record is bad, not the registry).
            ServiceUnavailableError: the registry did not answer (until the retry deadline).
        """
        parsed = self._by_id.get(schema_id)
        if parsed is None:
            what, not_found = self._fetching(schema_id)
            schema = self._call(what, self._client.get_schema, schema_id, not_found=not_found)
            parsed = self._by_id.setdefault(schema_id, self._parse(schema_id, schema))
        return parsed

    async def awriter_schema(self, schema_id: int) -> Any:
        """:meth:`writer_schema` for an event loop: the loop runs on through an outage (module doc).

        Raises:
            UnknownSchemaError: the registry has no such id (the record is bad, not the registry).
            ServiceUnavailableError: the registry did not answer (until the retry deadline).
        """
        parsed = self._by_id.get(schema_id)
        if parsed is None:
            what, not_found = self._fetching(schema_id)
            schema = await self._acall(what, self._client.get_schema, schema_id, not_found=not_found)
            parsed = self._by_id.setdefault(schema_id, self._parse(schema_id, schema))
        return parsed

    def _fetching(self, schema_id: int) -> tuple[str, UnknownSchemaError]:
        """What fetching ``schema_id`` is called in errors, and the error its 404 raises."""
        return f"fetching schema id {schema_id}", self._unknown(schema_id)

    def _parse(self, schema_id: int, schema: Schema) -> Any:
        if schema.schema_str is None:
            raise SchemaError(f"registry at {self.url}: schema id {schema_id} came without its schema text")
        return fastavro.parse_schema(json.loads(schema.schema_str))

    def _unknown(self, schema_id: int) -> UnknownSchemaError:
        return UnknownSchemaError(
            f"schema id {schema_id} is not in the registry at {self.url}: the record was not written "
            "through it (another registry, or bytes that only look like Confluent's wire format)"
        )


class _NewSubjectError(SfsyncError):
    """The registry has no such subject yet (a compatibility check's 404): anything is compatible."""
