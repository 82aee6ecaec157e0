"""The sink process's garbage collector, set for batches before its first one (sfsync.sinks.main)."""

from __future__ import annotations

import gc
import weakref

from sfsync.sinks.main import YOUNG_COLLECTION_THRESHOLD, tune_collector_for_batches


class _Node:
    """A collector-tracked object that can be part of a cycle and be referred to weakly."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def test_start_ups_objects_leave_every_later_collection_its_garbage_first_and_young_ones_are_collected_less() -> None:
    alive = {"describes": [{"Contact": ["Email"]}]}  # container objects: tracked by the collector
    first, second = _Node(), _Node()
    first.other, second.other = second, first  # a cycle no one will refer to: only a collection frees it
    gone = weakref.ref(first)
    del first, second
    thresholds = gc.get_threshold()
    try:
        tune_collector_for_batches()
        assert gone() is None  # collected before the freeze: garbage is not kept for good
        assert gc.get_freeze_count() > 0
        tracked = {id(o) for o in gc.get_objects()}  # what a collection of any generation walks
        assert id(alive) not in tracked and id(alive["describes"]) not in tracked
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
        assert thresholds[0] < YOUNG_COLLECTION_THRESHOLD
    finally:
        gc.unfreeze()  # this test process goes on as it was
        gc.set_threshold(*thresholds)
    assert id(alive) in {id(o) for o in gc.get_objects()}
