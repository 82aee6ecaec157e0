"""The sink process's start-up heap, frozen before its first batch (sfsync.sinks.main.freeze_start_up_heap)."""

from __future__ import annotations

import gc
import weakref

from sfsync.sinks.main import freeze_start_up_heap


class _Node:
    """A collector-tracked object that can be part of a cycle and be referred to weakly."""

    def __init__(self) -> None:
        self.other: _Node | None = None


def test_what_start_up_left_alive_is_out_of_every_later_collection_and_its_garbage_is_collected_first() -> None:
    alive = {"describes": [{"Contact": ["Email"]}]}  # container objects: tracked by the collector
    first, second = _Node(), _Node()
    first.other, second.other = second, first  # a cycle no one will refer to: only a collection frees it
    gone = weakref.ref(first)
    del first, second
    try:
        freeze_start_up_heap()
        assert gone() is None  # collected before the freeze: garbage is not kept for good
        assert gc.get_freeze_count() > 0
        tracked = {id(o) for o in gc.get_objects()}  # what a collection of any generation walks
        assert id(alive) not in tracked and id(alive["describes"]) not in tracked
    finally:
        gc.unfreeze()  # this test process goes on as it was
    assert id(alive) in {id(o) for o in gc.get_objects()}
