"""Parking a Faust message's record in the DLQ: what to park, and the one way both apps park it.

A processor decides *that* a record is bad (a :class:`Parked`, with the stage that found it); the
record itself is the message's bytes and coordinates (:func:`original_record`), parked byte for
byte by :func:`park_all`, which returns once the DLQ has it queued.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sfsync.ops.dlq import DeadLetterQueue, OriginalRecord, Stage

__all__ = ["Parked", "message_headers", "original_record", "park_all"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parked:
    """A record to park in the DLQ, and why."""

    original: OriginalRecord
    reason: BaseException
    stage: Stage
    mapping: str | None = None
    field: str | None = None


def message_headers(message: Any) -> list[tuple[str, bytes]]:
    """A Faust message's headers as (name, bytes) pairs."""
    headers = message.headers or ()
    items = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), bytes(v or b"")) for k, v in items]


def original_record(message: Any) -> OriginalRecord:
    """The record a Faust ``message`` carries, as the DLQ parks it."""
    return OriginalRecord(
        message.topic, message.partition, message.offset, message.key, message.value, tuple(message_headers(message))
    )


async def park_all(
    dlq: DeadLetterQueue, parked: Sequence[Parked], on_parked: Callable[[Stage], None] | None = None
) -> None:
    """Park each record (in a thread: the DLQ's producer blocks), log it, and tell ``on_parked`` its stage."""
    for p in parked:
        log.warning(
            "parked %s[%d]@%d (%s%s): %s",
            p.original.topic,
            p.original.partition,
            p.original.offset,
            p.stage,
            f", mapping {p.mapping}" if p.mapping else "",
            p.reason,
        )
        await asyncio.to_thread(dlq.park, p.original, p.reason, stage=p.stage, mapping=p.mapping or None, field=p.field)
        if on_parked is not None:
            on_parked(p.stage)
