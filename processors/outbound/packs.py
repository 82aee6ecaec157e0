"""Planned writes packed per partition: one repartition record carries many writes.

The ordering agent is a Faust agent, and Faust's per-message path costs ~200 µs of CPU a message
(``bench/processor_peer.py``), several times the work of ordering one write. An event plans one to
three writes, each for its own record key, so one repartition record per write made the ordering
agent's runtime overhead the largest cost of the processor. So the product agents put each planned
write in the *pack* of the partition its key belongs to (:func:`partition_of`: the Java client's
murmur2, as every producer of the co-partitioned topics uses), and a pack goes out as one record to
that partition, with the :data:`PACK_HEADER` header, when:

- it holds ``max_writes`` writes or would pass ``max_bytes`` with the next one (:meth:`WritePacks.add`);
- the processor's pack timer fires (every ``writes_pack_linger_ms``: latency is bounded at low rates,
  packs grow with the rate under load), or an offset commit is about to happen
  (:meth:`WritePacks.seal`: every pack first, then the producer's flush, then the commit).

Order and partitioning are those of one record per write: a key's writes are in the packs of one
partition, in the order they were planned, and packs of a partition go out in order; the ordering
agent reads a pack's writes in order (:func:`unpack`), and its tables' changes go to the pack's
partition, which is each key's. A write larger than ``max_bytes`` is not packed: its partition's
pack goes out first, then the write alone as before (so the producer still refuses, at once, a
write larger than the topics accept). A record without the header is one write, as before: a write
replayed from the DLQ is one.

The format (:data:`PACK_FORMAT` ``1``): for each write, its key's length (4 bytes, big-endian), the key,
its value's length (4 bytes), the value (the Avro ``Write`` in Confluent's wire format).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable
from typing import NamedTuple

from aiokafka.partitioner import murmur2

from sfsync.errors import SkippableRecordError

__all__ = ["PACK_FORMAT", "PACK_HEADER", "Pack", "WritePacks", "is_pack", "pack", "partition_of", "unpack"]

PACK_HEADER = "sfsync-writes-pack"
"""The header of a repartition record that is a pack of writes; its value is :data:`PACK_FORMAT`."""
PACK_FORMAT = b"1"
"""The only pack format: length-prefixed (key, value) pairs."""

_LENGTH = struct.Struct(">I")
FRAMING_BYTES = 2 * _LENGTH.size
"""Bytes a pack adds to each write (two lengths)."""


@functools.lru_cache(maxsize=65_536)  # a record's key recurs with each of its writes; murmur2 in Python is 5-10 µs
def partition_of(key: bytes, partitions: int) -> int:
    """``key``'s partition by the Java client's default partitioner (Faust's, librdkafka's ``murmur2_random``)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def pack(writes: Iterable[tuple[bytes, bytes]]) -> bytes:
    """``writes`` ((key, value) in order) as one pack's value."""
    parts: list[bytes] = []
    for key, value in writes:
        parts += (_LENGTH.pack(len(key)), key, _LENGTH.pack(len(value)), value)
    return b"".join(parts)


def unpack(value: bytes | None) -> list[tuple[bytes, bytes]]:
    """The (key, value) writes of a pack, in order.

    Raises:
        SkippableRecordError: ``value`` is not a pack (empty, truncated, or a length past its end).
    """
    if not value:
        raise SkippableRecordError("an empty pack of writes")
    out: list[tuple[bytes, bytes]] = []
    at, end, size = 0, len(value), _LENGTH.size
    try:
        while at < end:
            (n,) = _LENGTH.unpack_from(value, at)
            key = value[at + size : at + size + n]
            at += size + n
            (m,) = _LENGTH.unpack_from(value, at)
            body = value[at + size : at + size + m]
            at += size + m
            if len(key) != n or len(body) != m:
                raise struct.error("a length past the end")
            out.append((key, body))
    except struct.error as exc:
        raise SkippableRecordError(
            f"not a pack of writes (format {PACK_FORMAT.decode()}): truncated at byte {at}"
        ) from exc
    return out


def is_pack(headers: Iterable[tuple[str, bytes | None]]) -> bool:
    """Whether a repartition record with ``headers`` is a pack (:data:`PACK_HEADER`).

    Raises:
        SkippableRecordError: it is a pack of a format this version does not read.
    """
    for name, value in headers:
        if name == PACK_HEADER:
            if value != PACK_FORMAT:
                raise SkippableRecordError(
                    f"a pack of writes of unknown format {value!r} (this version reads {PACK_FORMAT!r})"
                )
            return True
    return False


class Pack(NamedTuple):
    """One pack ready to go out: to ``partition``, keyed by its first write's key, ``writes`` writes in ``value``."""

    partition: int
    key: bytes
    value: bytes
    writes: int


class _Open:
    __slots__ = ("size", "writes")

    def __init__(self) -> None:
        self.writes: list[tuple[bytes, bytes]] = []
        self.size = 0


class WritePacks:
    """The open packs of a processor's planned writes, one per partition of its repartition topic.

    ``send(pack)`` gets each pack that goes out; ``send_alone(key, value)`` each write too large to
    pack (after its partition's pack). Both are called in the order the packs and writes must reach
    Kafka. Not thread-safe: the product agents and the timer share one event loop.
    """

    def __init__(
        self,
        partitions: int,
        send: Callable[[Pack], None],
        send_alone: Callable[[bytes, bytes], None],
        *,
        max_writes: int,
        max_bytes: int,
    ) -> None:
        if partitions < 1 or max_writes < 1 or max_bytes < 1:
            raise ValueError("partitions, max_writes and max_bytes must be positive")
        self.partitions = partitions
        self.max_writes = max_writes
        self.max_bytes = max_bytes
        self._send = send
        self._send_alone = send_alone
        self._open: dict[int, _Open] = {}

    def add(self, key: bytes, value: bytes) -> None:
        """Put one planned write in its partition's pack (sending that pack first when the write would
        not fit in it, and then when it is full).

        Raises what ``send`` or ``send_alone`` raise; a write ``send_alone`` refuses was not sent
        (its partition's pack was). A pack ``send`` refuses stays open, with its writes.
        """
        partition = partition_of(key, self.partitions)
        size = len(key) + len(value) + FRAMING_BYTES
        if size > self.max_bytes:
            self._seal(partition)
            self._send_alone(key, value)
            return
        open_ = self._open.get(partition)
        if open_ is not None and open_.size + size > self.max_bytes:
            self._seal(partition)
            open_ = None
        if open_ is None:
            open_ = self._open[partition] = _Open()
        open_.writes.append((key, value))
        open_.size += size
        if len(open_.writes) >= self.max_writes:
            self._seal(partition)

    def seal(self) -> int:
        """Send every open pack; how many writes went out."""
        return sum(self._seal(partition) for partition in list(self._open))

    def __len__(self) -> int:
        """Writes in open packs (not sent yet)."""
        return sum(len(o.writes) for o in self._open.values())

    def _seal(self, partition: int) -> int:
        open_ = self._open.get(partition)
        if open_ is None or not open_.writes:
            return 0
        self._send(Pack(partition, open_.writes[0][0], pack(open_.writes), writes=len(open_.writes)))
        del self._open[partition]
        return len(open_.writes)
