"""The SwapStore contract against PostgreSQL: the shadow is a schema, the swap renames."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import psycopg
import pytest

from devstack import DevStackSettings
from streams.store import PostgresStore, Store
from tests.contracts.swap import GROUP, OpenSide, SwapContract, assert_matches, worker
from tests.oracle import apply_in_batches, make_log, random_events


@pytest.fixture
def schema(unique: Callable[[str], str]) -> str:
    return re.sub(r"[^a-z0-9_]", "_", unique("s").lower())[:36]


class TestPostgresSwap(SwapContract):
    @pytest.fixture
    def open_side(self, settings: DevStackSettings, schema: str) -> Iterator[OpenSide]:
        dsn = settings.pg_dsn()
        opened: list[PostgresStore] = []

        def make(side: str) -> Store:
            name = schema if side == "live" else f"{schema}_{side}"
            store = PostgresStore(dsn, schema=name)
            store.migrate()
            opened.append(store)
            return store

        yield make
        for store in opened:
            store.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            names = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (f"{schema}%",)
            ).fetchall()
            for (name,) in names:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    @pytest.fixture
    def corrupt(self, settings: DevStackSettings, schema: str) -> Callable[[Store, str], None]:
        def damage(store: Store, device_id: str) -> None:
            with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
                conn.execute(
                    f'UPDATE "{schema}".devices SET count = count + 7 WHERE device_id = %s',  # noqa: S608
                    (device_id,),
                )
                conn.execute(
                    f'DELETE FROM "{schema}".windows WHERE device_id = %s',  # noqa: S608
                    (device_id,),
                )

        return damage

    def test_prepared_statements_of_a_worker_follow_the_renamed_schema(
        self, open_side: OpenSide, schema: str
    ) -> None:
        log = make_log(random_events(seed=9, count=300))
        live = open_side("live")
        running = worker(live)
        apply_in_batches(running, log[:150], 10)  # > 5 executions: psycopg prepared them
        shadow = open_side("shadow")
        apply_in_batches(worker(shadow), log[:150], 150)
        open_side("live").swap_in(shadow, GROUP)
        running.reset()
        live.follow_swap()
        running.assign(live.positions(GROUP))
        apply_in_batches(running, log[150:], 10)
        assert_matches(live, log)
        assert live.outbox_backlog() > 0  # the live outbox moved along
