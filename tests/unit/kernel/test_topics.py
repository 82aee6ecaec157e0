"""Which topics must be co-partitioned, and the rule that says whether they are."""

from __future__ import annotations

import pytest

from sfsync.errors import ConfigError
from sfsync.topics import (
    ALL_TOPICS,
    IDENTITIES,
    OUTBOUND_TABLE_FEEDS,
    RESULTS,
    SALESFORCE_EDITS,
    WRITES,
    planned_writes,
    shared_partitions,
)


def test_the_topics_feeding_the_outbound_tables_are_created_co_partitioned() -> None:
    assert [spec.base for spec in OUTBOUND_TABLE_FEEDS] == [IDENTITIES.base, SALESFORCE_EDITS.base]
    assert {spec.partitions for spec in OUTBOUND_TABLE_FEEDS} == {WRITES.partitions, RESULTS.partitions}
    assert planned_writes("sfsync-processor", 6).name("staging.") == "staging.sfsync-processor-writes-repartition"


def test_identities_are_a_compacted_topic_keyed_like_the_writes_that_every_command_creates() -> None:
    assert IDENTITIES in ALL_TOPICS and RESULTS not in OUTBOUND_TABLE_FEEDS
    assert IDENTITIES.config == {"cleanup.policy": "compact"}
    assert IDENTITIES.key_doc == WRITES.key_doc and IDENTITIES.avro_value


def test_topics_with_one_partition_count_share_it() -> None:
    assert shared_partitions({"a": 4, "b": 4, "c": 4}, "the app") == 4


def test_different_partition_counts_are_refused_naming_each_topic_and_its_count() -> None:
    with pytest.raises(ConfigError) as caught:
        shared_partitions({"p.sfsync.results": 6, "p.sfsync.salesforce_edits": 12, "app-x-changelog": 6}, "the app")
    message = str(caught.value)
    assert "the app needs these topics co-partitioned" in message
    for shown in ("p.sfsync.results has 6", "p.sfsync.salesforce_edits has 12", "app-x-changelog has 6"):
        assert shown in message


def test_a_missing_topic_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"p\.sfsync\.results do not exist"):
        shared_partitions({"p.sfsync.results": None, "p.sfsync.salesforce_edits": 6}, "the app")
