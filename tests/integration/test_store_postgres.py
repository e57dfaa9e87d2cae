"""The Store contract against PostgreSQL (a unique schema per test), plus what only the
scale-out adapter promises: row-locked claims across store instances and LISTEN/NOTIFY."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from devstack import DevStackSettings
from streams import BatchProcessor, StoreError
from streams.store import OutboxStore, PostgresStore, Projection, Store
from streams.store._pg_sql import SCHEMA_VERSION
from streams.store.postgres import Timeouts
from tests.contracts.store import (
    OpenStore,
    StoreContract,
    alert_log,
    assert_metric_pages_match,
    metric_pages,
    with_metric,
)
from tests.oracle import RULES, WINDOWS, apply_in_batches, event, make_log, random_events


def schema_name(unique: Callable[[str], str]) -> str:
    return re.sub(r"[^a-z0-9_]", "_", unique("s").lower())[:40]


@pytest.fixture
def pg_dsn(settings: DevStackSettings) -> str:
    return settings.pg_dsn()


@pytest.fixture
def open_pg(pg_dsn: str, unique: Callable[[str], str]) -> Iterator[OpenStore]:
    schema = schema_name(unique)
    opened: list[PostgresStore] = []

    def make(
        *,
        failpoint: Callable[[str], None] | None = None,
        clock: Callable[[], int] | None = None,
        shadow: bool = False,
    ) -> Store:
        extra: dict[str, Any] = {} if clock is None else {"clock": clock}
        name = f"{schema}_shadow" if shadow else schema
        store = PostgresStore(pg_dsn, schema=name, failpoint=failpoint, **extra)
        store.migrate()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for name in (schema, f"{schema}_shadow"):
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def open_store(self, open_pg: OpenStore) -> OpenStore:
        return open_pg

    @pytest.fixture
    def relay_pair(self, open_store: OpenStore) -> tuple[OutboxStore, OutboxStore]:
        return open_store(), open_store()  # two relays = two connections, row locks between


def test_one_store_instance_holds_one_claim_at_a_time(open_pg: OpenStore) -> None:
    store = open_pg()
    BatchProcessor(store, "workers", windows=WINDOWS, rules=RULES).apply(alert_log())
    with store.claim(1), pytest.raises(StoreError, match="already open"):
        store.claim(1)
    with store.claim(1) as claim:
        assert claim.records


def test_concurrent_migrations_and_workers_share_one_schema(open_pg: OpenStore) -> None:
    log = make_log(random_events(seed=11, count=200), partitions=4)
    by_partition = {part: [item for item in log if item[0].partition == part] for part in range(4)}
    errors: list[BaseException] = []

    def worker(parts: list[int]) -> None:
        try:
            store = open_pg()
            processor = BatchProcessor(store, "workers", windows=WINDOWS, rules=RULES)
            for part in parts:
                apply_in_batches(processor, by_partition[part], 17)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(parts,)) for parts in ([0, 1], [2, 3])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    single = open_pg(shadow=True)
    apply_in_batches(BatchProcessor(single, "workers", windows=WINDOWS, rules=RULES), log, 50)
    reader = open_pg()
    for projection in (Projection.DEVICES, Projection.WINDOWS, Projection.ALERTS):
        assert reader.state_hash(projection) == single.state_hash(projection)


def test_a_store_of_the_previous_version_is_upgraded_once_then_migrate_runs_no_ddl(
    open_pg: OpenStore, pg_dsn: str
) -> None:
    store = open_pg()
    assert isinstance(store, PostgresStore)
    schema = store.schema
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as version 1 left it
        conn.execute(
            f'ALTER TABLE "{schema}".devices DROP COLUMN boot, DROP COLUMN seq_resets, '
            "DROP COLUMN restart_ts"
        )
        conn.execute(f'DROP TABLE "{schema}".recent_events, "{schema}".device_metrics')
        conn.execute(f"UPDATE \"{schema}\".meta SET value = '1' WHERE key = 'schema_version'")  # noqa: S608 - a test schema's name
    upgraded = open_pg()
    processor = BatchProcessor(upgraded, "workers", windows=WINDOWS, rules=RULES)
    processor.apply(make_log(random_events(seed=3, count=40)))
    assert_metric_pages_match(upgraded)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        version = conn.execute(
            f"SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"  # noqa: S608
        ).fetchone()
    assert version == (SCHEMA_VERSION,)
    assert upgraded.devices()
    with psycopg.connect(pg_dsn) as other, other.transaction():  # a worker mid-batch
        other.execute(f'LOCK TABLE "{schema}".devices IN ACCESS EXCLUSIVE MODE')
        started = time.monotonic()
        open_pg()  # another worker starting meanwhile: no DDL, so no wait on the lock
        assert time.monotonic() - started < 5


def test_a_store_of_version_3_gains_the_metric_index_filled_from_its_devices(
    open_pg: OpenStore, pg_dsn: str
) -> None:
    store = open_pg()
    assert isinstance(store, PostgresStore)
    schema = store.schema
    log = make_log([*random_events(seed=4, count=60), event("co2-only", 0, seq=1, co2=400.0)])
    BatchProcessor(store, "workers", windows=WINDOWS, rules=RULES).apply(log)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # as version 3 left it
        conn.execute(f'DROP TABLE "{schema}".device_metrics')
        conn.execute(f"UPDATE \"{schema}\".meta SET value = '3' WHERE key = 'schema_version'")  # noqa: S608 - a test schema's name

    upgraded = open_pg()

    assert metric_pages(upgraded, "co2", 10) == [["co2-only"]]
    assert len(with_metric(upgraded, "temp")) == len(upgraded.devices()) - 1
    assert_metric_pages_match(upgraded, ("temp", "hum", "co2"))
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        version = conn.execute(
            f"SELECT value FROM \"{schema}\".meta WHERE key = 'schema_version'"  # noqa: S608
        ).fetchone()
    assert version == (SCHEMA_VERSION,) == ("4",)


def test_an_unreachable_server_is_a_retriable_store_error() -> None:
    store = PostgresStore("postgresql://iot:iot@127.0.0.1:1/iot", timeouts=Timeouts(connect_s=1))
    with pytest.raises(StoreError) as failure:
        store.positions("workers")
    assert failure.value.retriable
    assert isinstance(failure.value.__cause__, psycopg.Error)


@pytest.fixture
def short_timeouts(pg_dsn: str, unique: Callable[[str], str]) -> Iterator[PostgresStore]:
    schema = schema_name(unique)
    store = PostgresStore(pg_dsn, schema=schema, timeouts=Timeouts(idle_in_transaction_s=1))
    store.migrate()
    yield store
    store.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_claim_holds_no_transaction_while_its_rows_are_published(
    short_timeouts: PostgresStore,
) -> None:
    """Claim, commit, publish: a relay that stalls with a claim (paused, a publish that
    hangs) holds no transaction, row lock or snapshot, so nothing waits on it and the
    server's idle-in-transaction timeout (1 s here) has nothing to end."""
    store = short_timeouts
    BatchProcessor(store, "workers", windows=WINDOWS, rules=RULES).apply(alert_log())
    claim = store.claim(10)
    assert claim.records
    with store._use(store._claims, "state") as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    time.sleep(1.5)  # the stall: longer than idle_in_transaction_s
    claim.mark_published()
    assert store.outbox_backlog() == 0


def test_the_lease_of_a_claim_never_ended_expires_and_its_rows_are_claimed_again(
    pg_dsn: str, short_timeouts: PostgresStore
) -> None:
    store = short_timeouts
    BatchProcessor(store, "workers", windows=WINDOWS, rules=RULES).apply(alert_log())
    dead = PostgresStore(pg_dsn, schema=store.schema, lease_s=1.0)
    other = PostgresStore(pg_dsn, schema=store.schema, lease_s=1.0)
    try:
        claimed = [record.seq for record in dead.claim(100).records]  # never ended: it died
        assert claimed
        with other.claim(100) as early:
            assert early.records == []  # leased to the relay that died
        time.sleep(1.5)
        with other.claim(100) as late:
            assert [record.seq for record in late.records] == claimed
            late.mark_published()
        assert store.outbox_backlog() == 0
    finally:
        dead.close()
        other.close()


def test_every_connection_bounds_statements_idle_transactions_and_dead_peers(
    short_timeouts: PostgresStore,
) -> None:
    with short_timeouts._use(short_timeouts._main, "settings") as conn:
        shown = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in ("statement_timeout", "idle_in_transaction_session_timeout")
        }
        parameters = conn.info.get_parameters()
    assert shown == {"statement_timeout": "1min", "idle_in_transaction_session_timeout": "1s"}
    assert parameters["keepalives"] == "1"
    assert parameters["tcp_user_timeout"] == "20000"
