"""The Store contract, run against the SQLite adapter (PostgreSQL: tests/integration)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.store import OutboxStore, SqliteStore, Store
from streams.store._sqlite_sql import SCHEMA
from tests.contracts.store import (
    OpenStore,
    StoreContract,
)


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
