"""The Store contract, run against the SQLite adapter (PostgreSQL: tests/integration)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams import BatchProcessor
from streams.store import OutboxStore, SqliteStore, Store
from streams.store._sqlite_sql import SCHEMA
from tests.contracts.store import (
    OpenStore,
    StoreContract,
    assert_metric_pages_match,
)
from tests.oracle import BASE_TS, RULES, WINDOWS, event, make_log


class TestSqliteStore(StoreContract):
    @pytest.fixture
    def open_store(self, tmp_path: Path) -> Iterator[OpenStore]:
        opened: list[SqliteStore] = []

        def make(
            *,
            failpoint: Callable[[str], None] | None = None,
            clock: Callable[[], int] | None = None,
            shadow: bool = False,
        ) -> Store:
            extra: dict[str, Any] = {} if clock is None else {"clock": clock}
            store = SqliteStore(
                tmp_path / "store.db",
                prefix="shadow_" if shadow else "",
                failpoint=failpoint,
                **extra,
            )
            store.migrate()
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()

    @pytest.fixture
    def relay_pair(self, store: Store) -> tuple[OutboxStore, OutboxStore]:
        return store, store  # one process owns an SQLite store; its relays share the instance


def test_a_store_made_before_boot_epochs_gains_their_columns(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript(SCHEMA.format(p=""))  # the layout before boot and seq_resets
    old.execute(
        "INSERT INTO devices VALUES ('a', 1, 2, 3, 0, 2, -5, '[]', 0, 0, 0, 0, 0, '{}', '{}')"
    )
    old.commit()
    old.close()
    store = SqliteStore(tmp_path / "old.db")
    store.migrate()
    store.migrate()
    device = store.device("a")
    assert device is not None
    assert (device.count, device.last_seq, device.boot, device.seq_resets) == (3, 2, None, 0)
    assert device.restart_ts is None
    store.close()


def test_a_store_made_before_the_metric_index_gains_it_filled(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "old.db")
    old.executescript(SCHEMA.format(p=""))  # the layout before the index of metrics
    for device_id, metrics in (("b", '{"hum":[40.0,5],"temp":[20.5,5]}'), ("a", '{"temp":[1,2]}')):
        old.execute(
            "INSERT INTO devices VALUES (?, 1, 5, 1, 1, 1, -5, '[]', 0, 0, 0, 0, 0, '{}', ?)",
            (device_id, metrics),
        )
    old.execute(
        "INSERT INTO devices VALUES ('c', 1, 2, 1, 1, 1, -5, '[]', 0, 0, 0, 0, 0, '{}', '{}')"
    )
    old.commit()
    old.close()
    store = SqliteStore(tmp_path / "old.db")
    store.migrate()
    store.migrate()
    assert [d.device_id for d in store.device_page(None, 10, has_metric="temp")] == ["a", "b"]
    assert [d.device_id for d in store.device_page("a", 10, has_metric="temp")] == ["b"]
    assert [d.device_id for d in store.device_page(None, 10, has_metric="hum")] == ["b"]
    assert_metric_pages_match(store)
    store.close()


def test_a_metric_page_searches_an_index_instead_of_scanning_the_devices(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    store.migrate()
    events = [
        event(f"d{i}", i, seq=1, temp=1.0, **({"hum": 2.0} if i % 7 else {})) for i in range(50)
    ]
    BatchProcessor(store, "workers", windows=WINDOWS, rules=RULES).apply(make_log(events))
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    for after, seen_since in ((None, None), ("d3", None), ("d3", BASE_TS + 10)):
        store.device_page(after, 5, seen_since=seen_since, has_metric="hum")
    store._conn.set_trace_callback(None)
    assert len(statements) == 3
    for statement in statements:
        plan = [row[3] for row in store._conn.execute(f"EXPLAIN QUERY PLAN {statement}")]
        assert all(step.startswith("SEARCH") for step in plan), plan
        assert any("device_id>" in step for step in plan if "devices" not in step), plan
    store.close()
