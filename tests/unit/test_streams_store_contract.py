"""The Store contract, run against the SQLite adapter (PostgreSQL: tests/integration)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streams.store import OutboxStore, SqliteStore, Store
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
