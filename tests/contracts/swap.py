"""The SwapStore contract: a replay swap replaces a live store's state under a running worker.

Here against SQLite (the shadow another file); ``tests/integration/test_replay_swap_postgres.py``
runs the same class against PostgreSQL (the shadow another schema). The worker below is a
``BatchProcessor`` on its own store instance, as a worker process holds one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import pytest

from streams import BatchProcessor, TopicPartition
from streams.errors import PositionConflictError, StoreError, StoreSwappedError
from streams.store import OffsetAdvance, Store
from tests.contracts.store import assert_metric_pages_match, metric_pages
from tests.oracle import (
    RULES,
    WINDOWS,
    Log,
    apply_in_batches,
    event,
    make_log,
    oracle,
    random_events,
)

GROUP = "workers"


class OpenSide(Protocol):
    def __call__(self, side: str) -> Store: ...


def worker(store: Store) -> BatchProcessor:
    return BatchProcessor(store, GROUP, windows=WINDOWS, rules=RULES)


def follow(processor: BatchProcessor, log: Log) -> dict[TopicPartition, int | None]:
    """What the runtime does on StoreSwappedError: drop caches, adopt, re-read positions."""
    processor.reset()
    processor.store.follow_swap()
    return processor.assign({TopicPartition(p.topic, p.partition) for p, _ in log})


def resume(processor: BatchProcessor, log: Log, offsets: dict[TopicPartition, int | None]) -> None:
    """Re-consumes the log from ``offsets`` as a re-seeked consumer would."""
    rest = [
        item
        for item in log
        if item[0].offset >= (offsets.get(TopicPartition(item[0].topic, item[0].partition)) or 0)
    ]
    apply_in_batches(processor, rest, 25)


def assert_matches(store: Store, log: Log) -> None:
    expected = oracle(e for _, e in log)
    assert store.devices() == expected.devices
    assert store.windows() == expected.windows
    assert store.alert_states() == expected.alerts


class SwapContract:
    @pytest.fixture
    def open_side(self) -> OpenSide:
        raise NotImplementedError

    @pytest.fixture
    def corrupt(self) -> Callable[[Store, str], None]:
        raise NotImplementedError

    def test_a_swap_repairs_state_and_the_worker_resumes_from_the_shadows_offsets(
        self, open_side: OpenSide, corrupt: Callable[[Store, str], None]
    ) -> None:
        log = make_log(random_events(seed=5, count=400))
        live = open_side("live")
        running = worker(live)
        apply_in_batches(running, log[:300], 25)
        corrupt(live, "dev-2")
        assert live.devices() != oracle(e for _, e in log[:300]).devices
        shadow = open_side("shadow")
        apply_in_batches(worker(shadow), log[:200], 50)  # the rebuild is behind the live store
        backlog = live.outbox_backlog()
        assert live.stored_generation() == live.generation() == 0

        generation = open_side("live").swap_in(shadow, GROUP)  # another process: the CLI

        assert generation == 1
        assert live.stored_generation() == 1
        before = live.positions(GROUP)
        with pytest.raises(StoreSwappedError):
            running.apply(log[300:325])  # the stale worker writes nothing
        assert live.positions(GROUP) == before
        offsets = follow(running, log)
        assert live.generation() == 1
        assert sum(o or 0 for o in offsets.values()) < sum(p.offset for p, _ in log[300:301])
        resume(running, log, offsets)
        assert_matches(live, log)
        assert live.outbox_backlog() >= backlog  # the live outbox stayed (and grew)

    def test_an_idle_swap_is_seen_by_the_generation_and_a_second_swap_works(
        self, open_side: OpenSide
    ) -> None:
        log = make_log(random_events(seed=6, count=200))
        live = open_side("live")
        apply_in_batches(worker(live), log[:100], 25)
        first = open_side("shadow")
        apply_in_batches(worker(first), log[:100], 100)
        assert live.swap_in(first, GROUP) == 1
        assert live.generation() == 0
        assert live.follow_swap() == 1
        second = open_side("shadow2")
        apply_in_batches(worker(second), log, 100)
        assert live.swap_in(second, GROUP) == 2
        assert live.follow_swap() == 2
        assert_matches(live, log)
        snap = live.snapshot(GROUP)
        assert snap.devices == live.devices()
        assert snap.positions == live.positions(GROUP)

    def test_after_a_swap_metric_pages_answer_the_shadows_devices(
        self, open_side: OpenSide
    ) -> None:
        log = make_log(random_events(seed=12, count=200))
        extra = [event(f"gone-{i}", 90_000 + i, seq=1, co2=400.0) for i in range(3)]
        live = open_side("live")
        apply_in_batches(worker(live), make_log([e for _, e in log] + extra), 50)
        assert metric_pages(live, "co2", 2) == [["gone-0", "gone-1"], ["gone-2"]]
        shadow = open_side("shadow")
        apply_in_batches(worker(shadow), log, 50)  # the rebuild: no device ever sent co2

        live.swap_in(shadow, GROUP)

        live.follow_swap()
        assert_matches(live, log)
        assert metric_pages(live, "co2", 2) == [[]]
        assert_metric_pages_match(live)

    def test_a_swap_refuses_a_shadow_without_the_groups_offsets(self, open_side: OpenSide) -> None:
        live = open_side("live")
        apply_in_batches(worker(live), make_log(random_events(seed=7, count=50)), 25)
        empty = open_side("shadow")
        with pytest.raises(StoreError, match="no offsets"):
            live.swap_in(empty, GROUP)
        with pytest.raises(StoreError, match="live store"):
            live.swap_in(live, GROUP)
        assert live.stored_generation() == 0

    def test_moving_positions_forward_keeps_state_fences_workers_and_refuses_conflicts(
        self, open_side: OpenSide
    ) -> None:
        """``iotctl replay reset-group``'s store half: offsets move, nothing else does."""
        log = make_log(random_events(seed=9, count=120))
        live = open_side("live")
        running = worker(live)
        apply_in_batches(running, log[:60], 20)
        stored = live.positions(GROUP)
        devices, windows = live.devices(), live.windows()
        [first, *_] = sorted(stored)
        moves = [
            OffsetAdvance(first.topic, first.partition, stored[first], 999),
            OffsetAdvance(first.topic, 7, None, 41),  # a partition never applied
        ]

        assert live.move_positions(GROUP, moves) == 1

        assert live.positions(GROUP) == {**stored, first: 999, TopicPartition(first.topic, 7): 41}
        assert (live.devices(), live.windows()) == (devices, windows)
        with pytest.raises(StoreSwappedError):  # a worker still running follows the move
            running.apply(log[60:80])
        stale = [OffsetAdvance(first.topic, first.partition, stored[first], 1500)]
        with pytest.raises(PositionConflictError):
            live.move_positions(GROUP, stale)
        assert live.positions(GROUP)[first] == 999
        assert live.stored_generation() == 1
