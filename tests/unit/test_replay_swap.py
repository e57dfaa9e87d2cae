"""Replay swap and merge on SQLite (PostgreSQL: tests/integration)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.errors import StoreError
from streams.replay.jobs import split
from streams.replay.rebuild import Plan
from streams.store import Projection, SqliteStore, Store
from tests.contracts.store import assert_metric_pages_match
from tests.contracts.swap import (
    GROUP,
    OpenSide,
    SwapContract,
    assert_matches,
    worker,
)
from tests.oracle import (
    apply_in_batches,
    make_log,
    random_events,
)


class TestSqliteSwap(SwapContract):
    @pytest.fixture
    def open_side(self, tmp_path: Path) -> Iterator[OpenSide]:
        opened: list[SqliteStore] = []

        def make(side: str) -> Store:
            store = SqliteStore(tmp_path / f"{side}.db")
            store.migrate()
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()

    @pytest.fixture
    def corrupt(self, tmp_path: Path) -> Callable[[Store, str], None]:
        def damage(store: Store, device_id: str) -> None:
            with sqlite3.connect(tmp_path / "live.db") as db:
                db.execute("UPDATE devices SET count = count + 7 WHERE device_id = ?", (device_id,))
                db.execute("DELETE FROM windows WHERE device_id = ?", (device_id,))

        return damage

    def test_a_shadow_in_the_same_file_under_a_prefix_swaps_too(self, tmp_path: Path) -> None:
        log = make_log(random_events(seed=8, count=120))
        live = SqliteStore(tmp_path / "one.db")
        shadow = SqliteStore(tmp_path / "one.db", prefix="shadow_")
        for store in (live, shadow):
            store.migrate()
        apply_in_batches(worker(shadow), log, 40)
        assert live.swap_in(shadow, GROUP) == 1
        assert_matches(live, log)
        live.close()
        shadow.close()


def test_merging_parts_of_a_split_rebuild_equals_one_store_and_refuses_shared_devices(
    tmp_path: Path,
) -> None:
    """``rebuild --jobs``: each process applies some partitions into a file of its own."""
    log = make_log(random_events(seed=10, count=300), partitions=3)
    whole = SqliteStore(tmp_path / "whole.db")
    merged = SqliteStore(tmp_path / "merged.db")
    parts = [SqliteStore(tmp_path / f"part-{i}.db") for i in range(2)]
    for store in (whole, merged, *parts):
        store.migrate()
    apply_in_batches(worker(whole), log, 50)
    apply_in_batches(worker(parts[0]), [item for item in log if item[0].partition != 1], 50)
    apply_in_batches(worker(parts[1]), [item for item in log if item[0].partition == 1], 50)

    merged.merge(parts)

    for projection in Projection:
        assert merged.state_hash(projection) == whole.state_hash(projection)
    assert_metric_pages_match(merged)
    assert merged.positions(GROUP) == whole.positions(GROUP)
    for tp in whole.positions(GROUP):
        assert merged.load_inbox(GROUP, tp) == whole.load_inbox(GROUP, tp)
    assert merged.outbox_backlog() == whole.outbox_backlog()
    again = SqliteStore(tmp_path / "again.db")
    again.migrate()
    with pytest.raises(StoreError, match="UNIQUE"):  # the same devices twice
        again.merge([parts[0], parts[0]])
    assert again.devices() == []
    assert again.positions(GROUP) == {}
    for store in (whole, merged, again, *parts):
        store.close()


def test_more_parts_than_sqlite_attaches_are_refused_before_anything_is_merged(
    tmp_path: Path,
) -> None:
    merged = SqliteStore(tmp_path / "merged.db")
    merged.migrate()
    parts = [SqliteStore(tmp_path / f"part-{i}.db") for i in range(merged.merge_capacity + 1)]
    for part in parts:
        part.migrate()
    apply_in_batches(worker(parts[0]), make_log(random_events(seed=11, count=20)), 10)
    with pytest.raises(StoreError, match="attaches at most"):
        merged.merge(parts)
    assert merged.devices() == []
    for store in (merged, *parts):
        store.close()


def test_a_split_balances_partitions_by_records_and_drops_empty_ones() -> None:
    chosen = Plan(start={0: 0, 1: 0, 2: 10, 3: 5}, end={0: 100, 1: 60, 2: 50, 3: 5})
    assert split(chosen, 2) == [[0], [1, 2]]
    assert split(chosen, 8) == [[0], [1], [2]]
    assert split(chosen, 1) == [[0, 1, 2]]
