"""Finishing a stream's events aside from the agent's loop: acked in offset order, as the current event.

An agent that finishes events out of order (one waits aside while later ones go on) must not ack
them out of order: faust-streaming 0.15.3 commits past a gap when the first unacked offset is the
committed one (``Consumer._new_offset`` takes ``min(acked) - committed > 1`` for the gap test, so
with offset N committed and N unacked, N+1 acked commits N+2 and N is never read again).
:class:`InOrderAcks` acks an event only once every earlier event of its partition was acked.

A table written for an event finished outside the agent's loop needs that event as Faust's current
event (the changelog partition is the event's): :func:`acting_for` sets it for the calling task.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any

from faust.streams import _current_event

__all__ = ["InOrderAcks", "acting_for"]


@contextlib.contextmanager
def acting_for(event: Any) -> Iterator[None]:
    """Within the block, ``event`` is Faust's current event in this task (as in the agent's own loop),
    so a table written there logs the change to the event's partition of its changelog."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


class InOrderAcks:
    """Events taken (:meth:`take`, in the order the stream gave them) are acked (``ack``) in that
    order per partition, each once it and every earlier one of its partition are :meth:`finish`-ed."""

    def __init__(self, ack: Callable[[Any], Awaitable[Any]]) -> None:
        self._ack = ack
        self._lines: dict[Any, deque[Any]] = {}
        self._finished: set[int] = set()

    def take(self, event: Any) -> None:
        """``event`` came from the stream: it is acked after every event taken before it in its partition."""
        self._lines.setdefault(event.message.tp, deque()).append(event)

    async def finish(self, event: Any) -> None:
        """``event`` is done: ack it, and the finished ones after it, once nothing earlier waits."""
        line = self._lines.get(event.message.tp)
        if line is None:
            return  # its partition was revoked: it is read again from the committed offset
        self._finished.add(id(event))
        while line and id(line[0]) in self._finished:
            first = line.popleft()
            self._finished.discard(id(first))
            await self._ack(first)

    def forget(self, tps: Iterable[Any]) -> None:
        """The partitions were revoked: their events taken and not acked are never acked here."""
        for tp in tps:
            for event in self._lines.pop(tp, ()):
                self._finished.discard(id(event))

    def waiting(self) -> int:
        """How many events were taken and not acked yet."""
        return sum(len(line) for line in self._lines.values())
