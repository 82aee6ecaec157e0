"""A Confluent-compatible schema registry: confluent-kafka's client, with its errors turned into sfsync's."""

from __future__ import annotations

import json
from typing import Any

import fastavro
from confluent_kafka.schema_registry import ConfigCompatibilityLevel, Schema, SchemaRegistryClient, ServerConfig
from confluent_kafka.schema_registry.error import SchemaRegistryError

from sfsync.errors import SchemaError, ServiceUnavailableError, SfsyncError, SkippableRecordError
from sfsync.redaction import redact
from sfsync.settings import RegistryConnection


# ---------------------------------------------------------------------- registry
class UnknownSchemaError(SkippableRecordError):
    """A record names a schema id the registry does not have: that record is parked, the stream goes on."""

    default_code = "UNKNOWN_SCHEMA_ID"


class SchemaRegistry:
    """A Confluent-compatible registry (Apicurio's ccompat API here). Errors become sfsync's."""

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, username: str | None = None, password: str | None = None
    ) -> None:
        conf: dict[str, Any] = {
            "url": url,
            "timeout": timeout_s,
            "max.retries": 2,
            "retries.wait.ms": 200,
            "retries.max.wait.ms": 1000,
        }
        if username:
            conf["basic.auth.user.info"] = f"{username}:{password or ''}"
        self.url = redact(url)  # what messages name: never the credentials a URL may carry
        self._client = SchemaRegistryClient(conf)
        self._by_id: dict[int, Any] = {}

    def _call(self, what: str, func: Any, *args: Any, not_found: SfsyncError | None = None) -> Any:
        """``func(*args)`` with the registry's errors as sfsync's; a 404 raises ``not_found`` when given."""
        try:
            return func(*args)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404 and not_found is not None:
                raise not_found from exc
            if exc.http_status_code == 409:
                raise SchemaError(f"registry refused {what}: not compatible ({exc.error_message})") from exc
            if exc.http_status_code in (422, 400):
                raise SchemaError(f"registry refused {what}: {exc.error_message}") from exc
            if exc.http_status_code >= 500:
                raise ServiceUnavailableError(
                    f"schema registry at {self.url} failed on {what}: HTTP {exc.http_status_code}"
                ) from exc
            raise SchemaError(f"registry: {what}: HTTP {exc.http_status_code} {exc.error_message}") from exc
        except Exception as exc:
            raise ServiceUnavailableError(
                f"schema registry at {self.url} did not answer ({what}): {type(exc).__name__}"
            ) from exc

    @classmethod
    def from_settings(cls, conn: RegistryConnection) -> SchemaRegistry:
        """The registry a component's settings point at (URL, timeout, basic auth)."""
        password = conn.schema_registry_password
        return cls(
            conn.schema_registry_url,
            timeout_s=conn.schema_registry_timeout_s,
            username=conn.schema_registry_username,
            password=password.get_secret_value() if password else None,
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
        return int(registered.schema_id)

    def register(self, subject: str, schema_str: str) -> int:
        """Register (or find) ``schema_str`` under ``subject``; the registry enforces compatibility."""
        return int(
            self._call(f"registering {subject}", self._client.register_schema, subject, Schema(schema_str, "AVRO"))
        )

    def is_compatible(self, subject: str, schema_str: str) -> bool:
        """Whether ``schema_str`` may be registered under ``subject`` (True when the subject is new)."""
        try:
            return bool(self._client.test_compatibility(subject, Schema(schema_str, "AVRO")))
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return True
            raise SchemaError(f"registry: compatibility check of {subject}: {exc.error_message}") from exc
        except Exception as exc:
            raise ServiceUnavailableError(f"schema registry at {self.url} did not answer") from exc

    def set_compatibility(self, subject: str, level: str) -> None:
        self._call(
            f"setting compatibility of {subject}",
            self._client.set_config,
            subject,
            ServerConfig(compatibility=ConfigCompatibilityLevel(level)),
        )

    def writer_schema(self, schema_id: int) -> Any:
        """The parsed writer schema of ``schema_id`` (fetched once, then cached).

        Raises:
            UnknownSchemaError: the registry has no such id (the record is bad, not the registry).
            ServiceUnavailableError: the registry did not answer.
        """
        parsed = self._by_id.get(schema_id)
        if parsed is None:
            unknown = UnknownSchemaError(
                f"schema id {schema_id} is not in the registry at {self.url}: the record was not written "
                "through it (another registry, or bytes that only look like Confluent's wire format)"
            )
            schema = self._call(
                f"fetching schema id {schema_id}", self._client.get_schema, schema_id, not_found=unknown
            )
            parsed = fastavro.parse_schema(json.loads(schema.schema_str))
            self._by_id[schema_id] = parsed
        return parsed
