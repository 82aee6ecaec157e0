"""A patch of faust-streaming 0.15.3's consumer: handing a fetched message to its streams costs no tasks.

Faust's ``Consumer._drain_messages`` hands each fetched message to the conductor with
``await self.wait_first(callback(message), self.suspend_flow.wait())``, so that a hand-over blocked
by a full stream buffer or suspended flow gives way when a rebalance suspends the flow. ``wait_first``
wraps each of its awaitables, and the service's ``stopped`` and ``crashed`` events, in a task of its
own, waits for the first, then cancels the others: four tasks and an ``asyncio.wait`` per message,
~25 µs of CPU (py-spy over a trivial agent), a third of Faust's whole per-message cost, although the
hand-over almost never blocks (the conductor awaits flow control only while the flow is suspended,
and a stream's queue only when full).

:func:`hand_over` runs the hand-over's first step itself: when it finishes without suspending (the
common case), nothing else is done; when it suspends (flow suspended, buffer full), the rest of it
runs under ``wait_first`` exactly as Faust runs it (:class:`Continued` resumes the coroutine where it
stopped, as ``yield from`` does), so a rebalance still interrupts it. The messages, their order,
their read offsets and every ack are as before; what changes is that the drain loop no longer yields
to the event loop after each message (it still does after every ``getmany`` batch and every 100
messages, as Faust's own loop does), so the streams take the queued messages in runs.

:class:`DrainingConsumer` is Faust's consumer with that drain loop (Faust's ``_drain_messages``,
copied, with the hand-over replaced); offered upstream as a change to ``_drain_messages``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING

__all__ = ["Continued", "drain_messages", "hand_over"]


class Continued:
    """Awaiting it runs ``coro`` on from where it suspended (its first ``send`` yielded ``yielded``)."""

    __slots__ = ("coro", "yielded")

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self.coro = coro
        self.yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, yielded = self.coro, self.yielded
        while True:  # what ``yield from coro`` does, from its second step on
            try:
                sent = yield yielded
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - thrown in (a cancellation): the coroutine's to handle
                try:
                    yielded = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value


async def hand_over(
    coro: Coroutine[Any, Any, Any],
    wait_first: Callable[..., Awaitable[Any]],
    suspended: Callable[[], Awaitable[Any]],
) -> None:
    """Run ``coro`` (a message's hand-over to its streams): its first step here; if that suspends,
    the rest under ``wait_first(rest, suspended())`` (Faust's race against a flow suspension).
    Raises what ``coro`` raises."""
    try:
        yielded = coro.send(None)
    except StopIteration:
        return
    await wait_first(Continued(coro, yielded), suspended())


async def drain_messages(consumer: Any, fetcher: Any) -> None:  # pragma: no cover - the worker's loop
    """faust-streaming 0.15.3's ``Consumer._drain_messages``, each message handed over by :func:`hand_over`."""
    callback = consumer.callback
    getmany = consumer.getmany
    consumer_should_stop = consumer._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = consumer._read_offset.__getitem__
    set_read_offset = consumer._read_offset.__setitem__
    set_flag = consumer.diag.set_flag
    unset_flag = consumer.diag.unset_flag
    commit_every = consumer._commit_every
    acks_enabled_for = consumer.app.topics.acks_enabled_for
    wait_first = consumer.wait_first
    suspend_flow_wait = consumer.suspend_flow.wait
    yield_every = 100
    num_since_yield = 0
    sleep = asyncio.sleep
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = getmany(timeout=1.0)
            await consumer.sleep(0)  # Faust: getmany may be called in a loop never releasing the event loop
            if not consumer.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await consumer._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and consumer._n_acked >= commit_every:
                            consumer._n_acked = 0
                            await consumer.commit()
                        await hand_over(
                            cast(Coroutine[Any, Any, Any], callback(message)), wait_first, suspend_flow_wait
                        )
                        set_read_offset(tp, offset)
                    else:
                        consumer.log.dev("DROPPED MESSAGE ROFF %r: k=%r v=%r", offset, message.key, message.value)
            unset_flag(CONSUMER_FETCHING)
    except consumer.consumer_stopped_errors:
        if consumer.transport.app.should_stop:
            consumer.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if consumer.transport.app.should_stop:
            consumer.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        consumer.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)
