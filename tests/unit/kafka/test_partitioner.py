"""Every producer sfsync builds partitions like the Java client (murmur2), as Faust and aiokafka do.

On a real broker, ``tests/integration/test_partitioning.py`` checks where each producer's records land.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from sfsync.errors import ConfigError
from sfsync.kafka.clients import JAVA_PARTITIONER, build_producer, producer_config

ROOT = Path(__file__).resolve().parents[3]
RUNTIME = ("sfsync", "producers", "processors", "sinks", "sources", "salesforce", "schemas")
"""The folders whose code runs in sfsync's processes (``sfsync/<part>`` links to the others)."""

JAVA_MURMUR2 = {  # org.apache.kafka.common.utils.UtilsTest#testMurmur2 (Utils.murmur2, a signed int)
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def _signed(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


def test_the_partitioner_faust_uses_is_javas_murmur2() -> None:
    assert {key: _signed(murmur2(key)) for key in JAVA_MURMUR2} == JAVA_MURMUR2
    partitions = list(range(6))
    for key, hashed in JAVA_MURMUR2.items():  # Java: Utils.toPositive(murmur2(key)) % numPartitions
        assert DefaultPartitioner()(key, partitions, partitions) == (hashed & 0x7FFFFFFF) % 6


def test_every_producer_config_names_the_java_partitioner_and_no_other_is_allowed() -> None:
    assert JAVA_PARTITIONER == "murmur2_random"  # librdkafka's name for the Java client's partitioner
    assert producer_config({"bootstrap.servers": "127.0.0.1:9"}, "p")["partitioner"] == JAVA_PARTITIONER
    assert producer_config({"partitioner": JAVA_PARTITIONER}, "p")["partitioner"] == JAVA_PARTITIONER
    for other in ("consistent_random", "murmur2", "fnv1a_random", "random"):
        with pytest.raises(ConfigError, match=f"partitioner '{other}' is not allowed"):
            build_producer({"bootstrap.servers": "127.0.0.1:9", "partitioner": other}, "p")


def _producer_constructions(path: Path) -> list[int]:
    """Lines of ``path`` that name confluent-kafka's ``Producer`` (imported or called)."""
    tree = ast.parse(path.read_text(), str(path))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confluent_kafka"):
            lines += [node.lineno for alias in node.names if alias.name in ("Producer", "SerializingProducer")]
        elif isinstance(node, ast.Attribute) and node.attr in ("Producer", "SerializingProducer"):
            lines.append(node.lineno)
    return lines


def test_only_build_producer_makes_a_librdkafka_producer() -> None:
    """So every producer path (the Publisher, the sink's results, the poller's transactions, the
    processor's writes, the DLQ, the error log, the CLI, the demo) gets :func:`producer_config`."""
    found = {
        str(path.relative_to(ROOT)): lines
        for folder in RUNTIME
        for path in sorted((ROOT / folder).rglob("*.py"))
        if not path.is_symlink() and (lines := _producer_constructions(path))
    }
    assert set(found) == {"sfsync/kafka/clients.py"}, found
    source = (ROOT / "sfsync/kafka/clients.py").read_text()
    assert source.count("Producer(") == 1 and "return Producer(producer_config(config, client))" in source
