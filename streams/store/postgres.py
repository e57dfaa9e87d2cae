"""PostgreSQL adapter of the Store port (psycopg 3): scale-out, several workers and relays.

All tables live in one schema (``schema``), so a shadow store for replay rebuilds is another
schema of the same database. Batch writes are one transaction of set-based statements
(``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO UPDATE``: one round trip per table,
whatever the batch size). The partition fence is the first statement of every batch: a
compare-and-set of the inbox offset row, which also row-locks the partition until commit, so
two workers can never both apply a partition's events (the second gets
:class:`~streams.errors.PositionConflictError`). Appends ``pg_notify`` the schema's channel at
commit; relays ``LISTEN`` on it (:meth:`PostgresStore.wait_for_outbox`).

Each store instance uses up to three connections (batches and reads; an outbox claim; LISTEN),
each guarded by its own lock. A broken connection is reopened on the next call.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import psycopg

from streams.domain import DerivedEvent, TopicPartition
from streams.errors import (
    StoreError,
    StoreSwappedError,
    StoreUnavailableError,
)
from streams.layout import PartitionLayout
from streams.projections.alerts import AlertState
from streams.projections.canonical import hash_rows
from streams.projections.device import DeviceState, RecentEvent
from streams.projections.windows import WindowAggregate
from streams.store import _codec, _query_sql
from streams.store._pg_sql import (
    DEVICE_TYPES,
    SCHEMA_VERSION,
    UPGRADES_FROM,
    WINDOW_TYPES,
    Staged,
    Statements,
)
from streams.store._swap_sql import pg_generation, pg_lock_live, pg_set_generation, pg_swap
from streams.store.port import (
    BatchWrite,
    FleetCounts,
    InboxState,
    LoadedDevices,
    OffsetAdvance,
    OnceResult,
    OutboxRecord,
    Projection,
    StateSnapshot,
    Store,
    StoreTransaction,
)

__all__ = ["PostgresStore"]

T = TypeVar("T")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,48}$")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


_TRANSIENT = (
    psycopg.errors.TransactionRollback,  # serialization failure, deadlock
    psycopg.errors.LockNotAvailable,  # lock_timeout
    psycopg.errors.QueryCanceled,  # statement_timeout
    psycopg.errors.IdleInTransactionSessionTimeout,  # a stalled transaction ended by the server
    psycopg.errors.InsufficientResources,  # disk full, out of memory, too many connections
)
"""Failures after which the same call may succeed unchanged."""


def _translate(exc: psycopg.Error, action: str) -> StoreError:
    message = f"postgres {action} failed: {type(exc).__name__}: {exc}".strip()
    if isinstance(exc, _TRANSIENT):
        return StoreError(message, retriable=True)
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailableError(message)
    return StoreError(message, retriable=False)


def _columns(rows: Sequence[Sequence[object]], width: int) -> list[list[Any]]:
    """Rows to one list per column (the arrays ``unnest`` takes)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long the store waits on PostgreSQL before it fails (and the caller retries).

    * ``statement_s``: one statement (``statement_timeout``);
    * ``idle_in_transaction_s``: a transaction left open by a stalled client is ended by the
      server (``idle_in_transaction_session_timeout``), so a paused relay's claim cannot hold
      row locks and hold back vacuum for long;
    * ``dead_peer_s``: a half-open connection (the server or the network gone) fails writes
      after this long (``tcp_user_timeout``) and idle ones by TCP keep-alives, instead of
      hanging a batch commit for the kernel's retransmission timeout (minutes).
    """

    connect_s: float = 10.0
    statement_s: float = 60.0
    idle_in_transaction_s: float = 60.0
    dead_peer_s: float = 20.0

    def connect_kwargs(self) -> dict[str, Any]:
        idle = max(1, int(self.dead_peer_s / 2))
        return {
            "connect_timeout": max(1, int(self.connect_s)),
            "keepalives": 1,
            "keepalives_idle": idle,
            "keepalives_interval": max(1, idle // 3),
            "keepalives_count": 3,
            "tcp_user_timeout": int(self.dead_peer_s * 1000),
            "options": (
                f"-c statement_timeout={int(self.statement_s * 1000)} "
                f"-c idle_in_transaction_session_timeout={int(self.idle_in_transaction_s * 1000)}"
            ),
        }


class _Connection:
    """One lazily (re)opened autocommit connection and the lock that serializes its users."""

    def __init__(self, dsn: str, timeouts: Timeouts) -> None:
        self._dsn = dsn
        self._timeouts = timeouts
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self.lock = threading.RLock()

    def get(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._dsn, autocommit=True, **self._timeouts.connect_kwargs()
            )
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PostgresStore:
    """The Store port on one schema of a PostgreSQL database (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "streams",
        timeouts: Timeouts = Timeouts(),
        lease_s: float = 60.0,
        clock: Callable[[], int] = _now_ms,
        failpoint: Callable[[str], None] | None = None,
    ) -> None:
        """``clock`` (epoch ms) stamps outbox publication only, never projection state.

        ``failpoint`` is called with a step name inside the batch transaction
        (``after_offsets``, ``after_projections``, ``before_commit``); raising there simulates
        a crash mid-batch (tests and chaos drills).
        """
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"invalid schema name {schema!r} (lower-case identifier)")
        self.schema = schema
        self._sql = Statements(schema)
        self._clock = clock
        self._lease_s = lease_s
        self._failpoint = failpoint or (lambda _step: None)
        self._main = _Connection(dsn, timeouts)
        self._claims = _Connection(dsn, timeouts)
        self._listen = _Connection(dsn, timeouts)
        self._staged_on: object = None  # the connection whose staging tables exist
        self._listening_on: object = None  # the connection that LISTENs (reconnects re-LISTEN)
        self._claim_open = threading.Lock()  # held from claim() until the claim ends
        self._dsn = dsn
        self._generation: int | None = None  # see generation()

    # -- lifecycle --------------------------------------------------------------------------

    def migrate(self) -> None:
        with self._use(self._main, "migrate") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._sql.channel,))
            found = conn.execute("SELECT to_regclass(%s)", (self._sql.table("meta"),)).fetchone()
            row = conn.execute(self._sql.version).fetchone() if found and found[0] else None
            if row is not None and row[0] not in (SCHEMA_VERSION, *UPGRADES_FROM):
                raise StoreError(f"store schema version {row[0]} is not {SCHEMA_VERSION}")
            if row != (SCHEMA_VERSION,):
                for statement in self._sql.schema:
                    conn.execute(statement)
                conn.execute(self._sql.set_version, (SCHEMA_VERSION,))
                row = conn.execute(self._sql.version).fetchone()
            self._generation = self._read_generation(conn)
        if row != (SCHEMA_VERSION,):
            raise StoreError(f"store schema version {row} is not {SCHEMA_VERSION}")

    def close(self) -> None:
        for holder in (self._main, self._claims, self._listen):
            with holder.lock:
                holder.close()
        self._listening_on = None

    @contextmanager
    def _use(self, holder: _Connection, action: str) -> Iterator[psycopg.Connection[Any]]:
        with holder.lock:
            try:
                yield holder.get()
            except psycopg.Error as exc:
                error = _translate(exc, action)
                if isinstance(error, StoreUnavailableError):
                    holder.close()
                raise error from exc

    # -- inbox ------------------------------------------------------------------------------

    def positions(self, group: str) -> dict[TopicPartition, int]:
        with self._use(self._main, "positions") as conn:
            rows = conn.execute(self._sql.positions, (group,)).fetchall()
        return {TopicPartition(topic, part): offset for topic, part, offset in rows}

    def partition_layout(self, topic: str) -> PartitionLayout | None:
        with self._use(self._main, "partition_layout") as conn:
            row = conn.execute(self._sql.layout, (f"layout:{topic}",)).fetchone()
        return None if row is None else PartitionLayout.from_json(row[0])

    def record_partition_layout(
        self, topic: str, layout: PartitionLayout, expected: PartitionLayout | None
    ) -> bool:
        key, text = f"layout:{topic}", layout.to_json()
        with self._use(self._main, "record_partition_layout") as conn:
            if expected is None:
                cur = conn.execute(self._sql.insert_layout, (key, text))
            else:
                cur = conn.execute(self._sql.update_layout, (text, key, expected.to_json()))
            return bool(cur.rowcount)

    def record_retention_gap(self, group: str, tp: TopicPartition, records: int) -> int:
        key = _codec.gap_key(group, tp.topic, tp.partition)
        with self._use(self._main, "record_retention_gap") as conn:
            row = conn.execute(self._sql.add_gap, (key, str(records))).fetchone()
        assert row is not None  # noqa: S101 - RETURNING always answers
        return int(row[0])

    def retention_gaps(self, group: str) -> dict[TopicPartition, int]:
        prefix = _codec.gap_key(group, "", 0).removesuffix("\x1f0")
        with self._use(self._main, "retention_gaps") as conn:
            rows = conn.execute(self._sql.gaps, ("retention_gap%",)).fetchall()
        return {
            TopicPartition(*_codec.gap_from_key(key)): int(value)
            for key, value in rows
            if key.startswith(prefix)
        }

    def load_inbox(self, group: str, tp: TopicPartition) -> InboxState:
        with self._use(self._main, "load_inbox") as conn:
            row = conn.execute(self._sql.offset, (group, *tp)).fetchone()
        return InboxState(None if row is None else row[0])

    def commit_batch(self, write: BatchWrite) -> None:
        sql = self._sql
        with self._use(self._main, "commit_batch") as conn:
            if conn is not self._staged_on:  # session-local, so outside the transaction
                conn.execute(sql.devices_staged.stage)
                conn.execute(sql.windows_staged.stage)
                self._staged_on = conn
            with conn.transaction():
                self._commit_batch(conn, write)

    def _commit_batch(self, conn: psycopg.Connection[Any], write: BatchWrite) -> None:
        sql, fail, group = self._sql, self._failpoint, write.group
        self._check_generation(conn)
        self._set_offsets(conn, group, write.offsets, "another worker applied it")
        fail("after_offsets")
        if write.devices:
            rows = [_codec.device_row(state) for state in write.devices]
            self._copy_upsert(conn, sql.devices_staged, DEVICE_TYPES, rows)
        if write.metrics_added:
            conn.execute(sql.index_metrics, _columns(write.metrics_added, 2))
        if write.windows:
            self._copy_upsert(conn, sql.windows_staged, WINDOW_TYPES, write.windows)
        if write.alerts:
            rows = [_codec.alert_row(state) for state in write.alerts]
            conn.execute(sql.upsert_alerts, _columns(rows, 6))
        if write.recent:
            conn.execute(sql.remember, _columns(write.recent, 3))
        if write.forgotten:
            conn.execute(sql.forget, _columns(write.forgotten, 2))
        if write.expired_windows:
            conn.execute(sql.expire_windows, _columns(write.expired_windows, 3))
        fail("after_projections")
        if write.outbox:
            rows = [_codec.outbox_row(event) for event in write.outbox]
            conn.execute(sql.append_outbox, _columns(rows, 6))
            conn.execute(sql.notify, (sql.channel,))
        fail("before_commit")

    def _copy_upsert(
        self,
        conn: psycopg.Connection[Any],
        staged: Staged,
        types: Sequence[str],
        rows: Sequence[Sequence[object]],
    ) -> None:
        """Binary COPY into the session's staging table, then one INSERT ... ON CONFLICT."""
        with conn.cursor().copy(staged.copy) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        conn.execute(staged.merge)

    # -- projections ------------------------------------------------------------------------

    def load_devices(
        self, device_ids: Sequence[str], horizon_ms: int, reach_ms: int, recent_ms: int
    ) -> LoadedDevices:
        ids = list(device_ids)
        with self._use(self._main, "load_devices") as conn:
            devices = conn.execute(self._sql.load_devices, (ids,)).fetchall()
            windows = conn.execute(self._sql.load_windows, (ids, reach_ms, horizon_ms)).fetchall()
            alerts = conn.execute(self._sql.load_alerts, (ids,)).fetchall()
            recent = conn.execute(self._sql.load_recent, (ids, recent_ms)).fetchall()
        return LoadedDevices(
            devices=[_codec.device_from_row(row) for row in devices],
            windows=[WindowAggregate(*row) for row in windows],
            alerts=[_codec.alert_from_row(row) for row in alerts],
            recent=[RecentEvent(*row) for row in recent],
        )

    def device(self, device_id: str) -> DeviceState | None:
        with self._use(self._main, "device") as conn:
            row = conn.execute(self._sql.device, (device_id,)).fetchone()
        return None if row is None else _codec.device_from_row(row)

    def devices(self) -> list[DeviceState]:
        with self._use(self._main, "devices") as conn:
            rows = conn.execute(self._sql.devices).fetchall()
        return sorted(map(_codec.device_from_row, rows), key=lambda d: d.device_id)

    def windows(self, device_id: str | None = None) -> list[WindowAggregate]:
        with self._use(self._main, "windows") as conn:
            rows = conn.execute(self._sql.windows, (device_id, device_id)).fetchall()
        return sorted(WindowAggregate(*row) for row in rows)

    def alert_states(self, device_id: str | None = None) -> list[AlertState]:
        with self._use(self._main, "alert_states") as conn:
            rows = conn.execute(self._sql.alerts, (device_id, device_id)).fetchall()
        return sorted(map(_codec.alert_from_row, rows), key=lambda a: (a.device_id, a.rule))

    def device_page(
        self,
        after: str | None,
        limit: int,
        *,
        seen_since: int | None = None,
        has_metric: str | None = None,
    ) -> list[DeviceState]:
        sql = (
            _query_sql.pg_device_page(self.schema)
            if has_metric is None
            else _query_sql.pg_metric_page(self.schema)
        )
        params = _query_sql.page_params(after, limit, seen_since, has_metric)
        with self._use(self._main, "device_page") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_codec.device_from_row(row) for row in rows]

    def alert_page(
        self,
        after: tuple[str, str] | None,
        limit: int,
        *,
        device_id: str | None = None,
        active_only: bool = False,
    ) -> list[AlertState]:
        sql = _query_sql.pg_alert_page(self.schema)
        first = None if after is None else after[0]
        rule = None if after is None else after[1]
        params = (first, first, rule, device_id, device_id, active_only, limit)
        with self._use(self._main, "alert_page") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_codec.alert_from_row(row) for row in rows]

    def fleet_counts(self, seen_since: int) -> FleetCounts:
        sql = _query_sql.pg_fleet_counts(self.schema)
        with self._use(self._main, "fleet_counts") as conn:
            row = conn.execute(sql, (seen_since,)).fetchone()
        assert row is not None  # noqa: S101 - a SELECT of counts has one row
        devices, seen, active = row
        return FleetCounts(devices, seen, active)

    def window_range(
        self, device_id: str, metric: str, size_ms: int, start_ms: int, end_ms: int
    ) -> list[WindowAggregate]:
        sql = _query_sql.pg_window_range(self.schema)
        with self._use(self._main, "window_range") as conn:
            rows = conn.execute(sql, (device_id, metric, size_ms, start_ms, end_ms)).fetchall()
        return [WindowAggregate(*row) for row in rows]

    def state_hash(self, projection: Projection) -> str:
        if projection is Projection.DEVICES:
            return hash_rows(self.devices())
        if projection is Projection.WINDOWS:
            return hash_rows(self.windows())
        return hash_rows(self.alert_states())

    # -- outbox -----------------------------------------------------------------------------

    def claim(self, limit: int) -> _PgClaim:
        """Leases the oldest unpublished row of up to ``limit`` keys and the rows after them
        (at most ``limit`` rows), in one short transaction; nothing stays open while the
        caller publishes. A lease another relay holds keeps its keys out of this claim; one
        never ended (a relay that died or hangs) expires after ``lease_s``, and its rows are
        claimed again (at least once: consumers dedupe by event id). One open claim per
        store instance."""
        if not self._claim_open.acquire(blocking=False):
            raise StoreError("an outbox claim is already open on this store instance")
        owner = uuid.uuid4().hex
        try:
            with self._use(self._claims, "claim") as conn, conn.transaction():
                keys = [key for (key,) in conn.execute(self._sql.claim_heads, (limit,))]
                rows = conn.execute(
                    self._sql.claim_rows, (owner, int(self._lease_s * 1000), keys, limit)
                ).fetchall()
        except BaseException:
            self._claim_open.release()
            raise
        rows.sort(key=lambda row: row[0])
        records = [OutboxRecord(row[0], _codec.event_from_row(row[1:])) for row in rows]
        return _PgClaim(self, records, owner)

    def _end_claim(self, owner: str, seqs: Sequence[int], released: Sequence[int]) -> None:
        """Marks ``seqs`` published and gives up the lease of ``released``; rows whose lease
        expired and went to another relay meanwhile are left to it."""
        try:
            with self._use(self._claims, "mark_published") as conn, conn.transaction():
                if seqs:
                    conn.execute(self._sql.mark_published, (self._clock(), list(seqs), owner))
                if released:
                    conn.execute(self._sql.release, (list(released), owner))
        finally:
            self._claim_open.release()

    def prune_outbox(self, older_than_ms: int) -> int:
        with self._use(self._main, "prune_outbox") as conn:
            cur = conn.execute(self._sql.prune, (self._clock() - older_than_ms,))
        return cur.rowcount

    def outbox_backlog(self) -> int:
        with self._use(self._main, "outbox_backlog") as conn:
            row = conn.execute(self._sql.backlog).fetchone()
        return int(row[0]) if row else 0

    def wait_for_outbox(self, timeout: float) -> bool:
        with self._use(self._listen, "wait_for_outbox") as conn:
            if conn is not self._listening_on:
                conn.execute(self._sql.listen)
                self._listening_on = conn
            woken = False
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                woken = True
            if woken:  # drain what else queued up: one claim serves them all
                for _ in conn.notifies(timeout=0.0):
                    pass
        return woken

    # -- generations (replay swaps) ---------------------------------------------------------

    def _read_generation(self, conn: psycopg.Connection[Any]) -> int:
        row = conn.execute(pg_generation(self.schema)).fetchone()
        return 0 if row is None else int(row[0])

    def _check_generation(self, conn: psycopg.Connection[Any]) -> None:
        """First statement of a batch: its lock on ``meta`` makes a swap wait for the batch,
        or the batch wait for the swap and then read the swapped-in generation."""
        stored = self._read_generation(conn)
        if self._generation is None:
            self._generation = stored
        elif stored != self._generation:
            raise StoreSwappedError(
                f"the store was swapped (generation {self._generation} -> {stored}): "
                "follow the swap and seek to its positions"
            )

    def generation(self) -> int:
        if self._generation is None:
            self._generation = self.stored_generation()
        return self._generation

    def stored_generation(self) -> int:
        with self._use(self._main, "stored_generation") as conn:
            return self._read_generation(conn)

    def follow_swap(self) -> int:
        self._generation = self.stored_generation()
        return self._generation

    def snapshot(self, group: str) -> StateSnapshot:
        with self._use(self._main, "snapshot") as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return StateSnapshot(
                    self.positions(group), self.devices(), self.windows(), self.alert_states()
                )
            finally:
                if not conn.broken:
                    conn.execute("COMMIT")

    def swap_in(self, shadow: Store, group: str) -> int:
        """Renames schemas in one transaction: the shadow's becomes this store's, and this
        store's is kept as ``<schema>_r<generation>`` (drop it once the swap is trusted)."""
        if not isinstance(shadow, PostgresStore):
            raise StoreError("a PostgreSQL store swaps in a PostgreSQL shadow only")
        if shadow.schema == self.schema:
            raise StoreError("the shadow store is the live store")
        if shadow._dsn != self._dsn:
            raise StoreError("the shadow schema must be in the live store's database")
        if not shadow.positions(group):
            raise StoreError(f"the shadow holds no offsets of group {group!r}: nothing to swap")
        with self._use(self._main, "swap_in") as conn, conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '30s'")
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._sql.channel,))
            conn.execute(pg_lock_live(self.schema))
            generation = self._read_generation(conn) + 1
            retired = f"{self.schema}_r{generation}"
            for statement, grouped in pg_swap(self.schema, shadow.schema, retired):
                conn.execute(statement, (group,) if grouped else ())
            conn.execute(pg_set_generation(self.schema), (str(generation),))
        return generation

    def _set_offsets(
        self,
        conn: psycopg.Connection[Any],
        group: str,
        advances: Sequence[OffsetAdvance],
        why: str,
    ) -> None:
        """Each advance's insert or compare-and-set, in partition order; a conflict raises."""
        for adv in sorted(advances, key=lambda a: (a.topic, a.partition)):
            name, params = adv.statement(group)
            if conn.execute(getattr(self._sql, name), params).rowcount != 1:
                raise adv.conflict(group, why)

    def move_positions(self, group: str, moves: Sequence[OffsetAdvance]) -> int:
        sql = self._sql
        with self._use(self._main, "move_positions") as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (sql.channel,))
            self._set_offsets(conn, group, moves, "a worker applied events meanwhile")
            generation = self._read_generation(conn) + 1
            conn.execute(pg_set_generation(self.schema), (str(generation),))
        return generation

    # -- idempotent consumer ----------------------------------------------------------------

    def prune_tracking(self, before_ts: int) -> int:
        with self._use(self._main, "prune_tracking") as conn:
            return int(conn.execute(self._sql.prune_tracking, (before_ts,)).rowcount)

    def apply_once(
        self, consumer: str, event_id: str, ts: int, effect: Callable[[StoreTransaction], T]
    ) -> OnceResult[T]:
        with self._use(self._main, "apply_once") as conn, conn.transaction():
            cur = conn.execute(self._sql.track, (consumer, event_id, ts))
            if cur.rowcount == 0:
                return OnceResult(applied=False)
            tx = _PgTransaction(conn, self._sql)
            value = effect(tx)
        return OnceResult(applied=True, value=value)


class _PgClaim:
    def __init__(self, store: PostgresStore, records: list[OutboxRecord], owner: str) -> None:
        self._store: PostgresStore | None = store
        self._records = records
        self._owner = owner

    @property
    def records(self) -> Sequence[OutboxRecord]:
        return self._records

    def mark_published(self, seqs: Sequence[int] | None = None) -> None:
        if self._store is None:
            raise StoreError("outbox claim already ended")
        store, self._store = self._store, None
        marked = [r.seq for r in self._records] if seqs is None else list(seqs)
        left = sorted({r.seq for r in self._records} - set(marked))
        store._end_claim(self._owner, marked, left)

    def release(self) -> None:
        if self._store is not None:
            store, self._store = self._store, None
            store._end_claim(self._owner, (), [r.seq for r in self._records])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _PgTransaction:
    paramstyle = "format"

    def __init__(self, conn: psycopg.Connection[Any], sql: Statements) -> None:
        self._conn = conn
        self._sql = sql

    def table(self, name: str) -> str:
        return self._sql.table(name)

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            cur = self._conn.execute(sql, params)
            return cur.fetchall() if cur.description is not None else []
        except psycopg.Error as exc:
            raise _translate(exc, "apply_once effect") from exc

    def append_outbox(self, events: Sequence[DerivedEvent]) -> None:
        if not events:
            return
        rows = [_codec.outbox_row(event) for event in events]
        try:
            self._conn.execute(self._sql.append_outbox, _columns(rows, 6))
            self._conn.execute(self._sql.notify, (self._sql.channel,))
        except psycopg.Error as exc:
            raise _translate(exc, "append_outbox") from exc
