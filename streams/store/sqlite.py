"""SQLite adapter of the Store port: the embedded default for one worker.

The database runs in WAL mode with ``synchronous=NORMAL`` by default: a process crash
(kill -9) loses nothing committed; a power loss may lose the last transactions, which is still
exactly-once, because offsets, projections and outbox rows are lost *together* and the events
are consumed again from the older stored offset. Every write is one ``BEGIN IMMEDIATE``
transaction. One process owns a store file (one worker, one relay); threads of that process
may share a :class:`SqliteStore` (it serializes them). ``prefix`` namespaces every table, so a
shadow store for replay rebuilds can live in the same file.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

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
from streams.store._sqlite_sql import (
    ADDED_COLUMNS,
    ADDED_TABLES,
    SCHEMA,
    SCHEMA_VERSION,
    statements,
)
from streams.store._swap_sql import (
    sqlite_generation,
    sqlite_merge,
    sqlite_set_generation,
    sqlite_swap,
)
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

__all__ = ["SqliteStore"]

T = TypeVar("T")
_PREFIX = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*)?$")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _translate(exc: sqlite3.Error, action: str) -> StoreError:
    """Locked, busy and a full disk (SQLITE_FULL: ENOSPC, rolled back whole) pass: the same
    call may succeed later unchanged. Anything else is not retriable."""
    message = f"sqlite {action} failed: {exc}"
    text = str(exc).lower()
    if isinstance(exc, sqlite3.OperationalError) and any(
        word in text for word in ("locked", "busy", "disk is full")
    ):
        return StoreUnavailableError(message)
    return StoreError(message, retriable=False)


class SqliteStore:
    """The Store port on one SQLite file (see the module docstring for durability)."""

    def __init__(
        self,
        path: str | Path,
        *,
        prefix: str = "",
        synchronous: str = "NORMAL",
        busy_timeout_s: float = 5.0,
        clock: Callable[[], int] = _now_ms,
        failpoint: Callable[[str], None] | None = None,
    ) -> None:
        """``clock`` (epoch ms) stamps outbox publication only, never projection state.

        ``failpoint`` is called with a step name inside the batch transaction
        (``after_offsets``, ``after_projections``, ``before_commit``); raising there simulates
        a crash mid-batch (tests and chaos drills).
        """
        if not _PREFIX.match(prefix):
            raise ValueError(f"invalid table prefix {prefix!r}")
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"invalid synchronous mode {synchronous!r}")
        self._p = prefix
        self._path = Path(path)
        self._generation: int | None = None  # see generation()
        self._clock = clock
        self._failpoint = failpoint or (lambda _step: None)
        self._lock = threading.RLock()
        self._appended = threading.Event()
        self._held_keys: set[str] = set()
        try:
            self._conn = sqlite3.connect(
                str(path), timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            for pragma in (
                "journal_mode=WAL",
                f"synchronous={synchronous.upper()}",
                "temp_store=MEMORY",
                "cache_size=-65536",
            ):
                self._conn.execute(f"PRAGMA {pragma}")
        except sqlite3.Error as exc:
            raise _translate(exc, "open") from exc
        self._sql = statements(prefix)

    # -- lifecycle --------------------------------------------------------------------------

    def migrate(self) -> None:
        with self._guard("migrate"):
            self._conn.executescript(SCHEMA.format(p=self._p))
            self._add_columns()
            with self._transaction() as cur:
                self._add_tables(cur)
                cur.execute(self._sql["set_version"], (SCHEMA_VERSION,))
                row = cur.execute(self._sql["version"]).fetchone()
                self._generation = self._read_generation(cur)
        if row != (SCHEMA_VERSION,):
            raise StoreError(f"store schema version {row} is not {SCHEMA_VERSION}")

    def _add_columns(self) -> None:
        for table, columns in ADDED_COLUMNS.items():
            name = f"{self._p}{table}"
            have = {row[1] for row in self._conn.execute(f"PRAGMA table_info({name})")}
            for column, kind in columns:
                if column not in have:
                    self._conn.execute(f"ALTER TABLE {name} ADD COLUMN {column} {kind}")
        # records kept before they were dated count from now (never forgotten early)
        self._conn.execute(self._sql["date_tracking"], (self._clock(),))
        self._conn.execute(self._sql["tracking_by_ts"])

    def _add_tables(self, cur: sqlite3.Cursor) -> None:
        """Creates and fills each added table the store lacks (in the caller's transaction,
        so a table exists only filled)."""
        for table, (create, fill) in ADDED_TABLES.items():
            if cur.execute(self._sql["has_table"], (f"{self._p}{table}",)).fetchone() is None:
                cur.execute(create.format(p=self._p))
                cur.execute(fill.format(p=self._p))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def _guard(self, action: str) -> Iterator[None]:
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise _translate(exc, action) from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
            cur.execute("COMMIT")  # may fail too (a full disk): then rolled back like the rest
        except BaseException:
            with suppress(sqlite3.Error):
                self._conn.rollback()
            raise

    # -- inbox ------------------------------------------------------------------------------

    def partition_layout(self, topic: str) -> PartitionLayout | None:
        with self._guard("partition_layout"):
            row = self._conn.execute(self._sql["layout"], (f"layout:{topic}",)).fetchone()
        return None if row is None else PartitionLayout.from_json(row[0])

    def record_partition_layout(
        self, topic: str, layout: PartitionLayout, expected: PartitionLayout | None
    ) -> bool:
        key, text = f"layout:{topic}", layout.to_json()
        with self._guard("record_partition_layout"), self._transaction() as cur:
            if expected is None:
                cur.execute(self._sql["insert_layout"], (key, text))
            else:
                cur.execute(self._sql["update_layout"], (text, key, expected.to_json()))
            return bool(cur.rowcount)

    def record_retention_gap(self, group: str, tp: TopicPartition, records: int) -> int:
        key = _codec.gap_key(group, tp.topic, tp.partition)
        with self._guard("record_retention_gap"), self._transaction() as cur:
            row = cur.execute(self._sql["add_gap"], (key, str(records))).fetchone()
        return int(row[0])

    def retention_gaps(self, group: str) -> dict[TopicPartition, int]:
        prefix = _codec.gap_key(group, "", 0).removesuffix("\x1f0")
        with self._guard("retention_gaps"):
            rows = self._conn.execute(self._sql["gaps"], ("retention_gap%",)).fetchall()
        return {
            TopicPartition(*_codec.gap_from_key(key)): int(value)
            for key, value in rows
            if key.startswith(prefix)
        }

    def positions(self, group: str) -> dict[TopicPartition, int]:
        with self._guard("positions"):
            rows = self._conn.execute(self._sql["positions"], (group,)).fetchall()
        return {TopicPartition(topic, part): offset for topic, part, offset in rows}

    def load_inbox(self, group: str, tp: TopicPartition) -> InboxState:
        with self._guard("load_inbox"):
            row = self._conn.execute(self._sql["offset"], (group, *tp)).fetchone()
        return InboxState(None if row is None else row[0])

    def commit_batch(self, write: BatchWrite) -> None:
        sql, fail = self._sql, self._failpoint
        with self._guard("commit_batch"), self._transaction() as cur:
            self._check_generation(cur)
            self._set_offsets(cur, write.group, write.offsets, "another worker applied it")
            fail("after_offsets")
            cur.executemany(sql["upsert_device"], map(_codec.device_row, write.devices))
            cur.executemany(sql["index_metrics"], write.metrics_added)
            cur.executemany(sql["upsert_window"], write.windows)
            cur.executemany(sql["expire_windows"], ((d, t, n) for d, n, t in write.expired_windows))
            cur.executemany(sql["upsert_alert"], map(_codec.alert_row, write.alerts))
            cur.executemany(sql["remember"], write.recent)
            cur.executemany(sql["forget"], write.forgotten)
            fail("after_projections")
            cur.executemany(sql["append_outbox"], map(_codec.outbox_row, write.outbox))
            fail("before_commit")
        if write.outbox:
            self._appended.set()

    # -- projections ------------------------------------------------------------------------

    def load_devices(
        self, device_ids: Sequence[str], horizon_ms: int, reach_ms: int, recent_ms: int
    ) -> LoadedDevices:
        ids = _codec.dumps(list(device_ids))
        with self._guard("load_devices"):
            devices = self._conn.execute(self._sql["load_devices"], (ids,)).fetchall()
            windows = self._conn.execute(
                self._sql["load_windows"], (ids, reach_ms, horizon_ms)
            ).fetchall()
            alerts = self._conn.execute(self._sql["load_alerts"], (ids,)).fetchall()
            recent = self._conn.execute(self._sql["load_recent"], (ids, recent_ms)).fetchall()
        return LoadedDevices(
            devices=[_codec.device_from_row(row) for row in devices],
            windows=[WindowAggregate(*row) for row in windows],
            alerts=[_codec.alert_from_row(row) for row in alerts],
            recent=[RecentEvent(*row) for row in recent],
        )

    def device(self, device_id: str) -> DeviceState | None:
        with self._guard("device"):
            row = self._conn.execute(self._sql["device"], (device_id,)).fetchone()
        return None if row is None else _codec.device_from_row(row)

    def devices(self) -> list[DeviceState]:
        with self._guard("devices"):
            rows = self._conn.execute(self._sql["devices"]).fetchall()
        return sorted(map(_codec.device_from_row, rows), key=lambda d: d.device_id)

    def windows(self, device_id: str | None = None) -> list[WindowAggregate]:
        with self._guard("windows"):
            rows = self._conn.execute(self._sql["windows"], (device_id, device_id)).fetchall()
        return sorted(WindowAggregate(*row) for row in rows)

    def alert_states(self, device_id: str | None = None) -> list[AlertState]:
        with self._guard("alert_states"):
            rows = self._conn.execute(self._sql["alerts"], (device_id, device_id)).fetchall()
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
            _query_sql.sqlite_device_page(self._p)
            if has_metric is None
            else _query_sql.sqlite_metric_page(self._p)
        )
        params = _query_sql.page_params(after, limit, seen_since, has_metric)
        with self._guard("device_page"):
            rows = self._conn.execute(sql, params).fetchall()
        return [_codec.device_from_row(row) for row in rows]

    def alert_page(
        self,
        after: tuple[str, str] | None,
        limit: int,
        *,
        device_id: str | None = None,
        active_only: bool = False,
    ) -> list[AlertState]:
        sql = _query_sql.sqlite_alert_page(self._p)
        first = None if after is None else after[0]
        rule = None if after is None else after[1]
        params = (first, first, rule, device_id, device_id, active_only, limit)
        with self._guard("alert_page"):
            rows = self._conn.execute(sql, params).fetchall()
        return [_codec.alert_from_row(row) for row in rows]

    def fleet_counts(self, seen_since: int) -> FleetCounts:
        with self._guard("fleet_counts"):
            row = self._conn.execute(_query_sql.sqlite_fleet_counts(self._p), (seen_since,))
            devices, seen, active = row.fetchone()
        return FleetCounts(devices, seen, active)

    def window_range(
        self, device_id: str, metric: str, size_ms: int, start_ms: int, end_ms: int
    ) -> list[WindowAggregate]:
        sql = _query_sql.sqlite_window_range(self._p)
        with self._guard("window_range"):
            rows = self._conn.execute(
                sql, (device_id, metric, size_ms, start_ms, end_ms)
            ).fetchall()
        return [WindowAggregate(*row) for row in rows]

    def state_hash(self, projection: Projection) -> str:
        if projection is Projection.DEVICES:
            return hash_rows(self.devices())
        if projection is Projection.WINDOWS:
            return hash_rows(self.windows())
        return hash_rows(self.alert_states())

    # -- outbox -----------------------------------------------------------------------------

    def claim(self, limit: int) -> _SqliteClaim:
        records: list[OutboxRecord] = []
        keys: set[str] = set()
        with self._guard("claim"):
            for row in self._conn.execute(self._sql["unpublished"]):
                if len(records) >= limit:
                    break
                key = row[3]
                if key in self._held_keys:
                    continue
                keys.add(key)
                records.append(OutboxRecord(row[0], _codec.event_from_row(row[1:])))
            self._held_keys |= keys
        return _SqliteClaim(self, records, keys)

    def _end_claim(self, keys: set[str], seqs: Sequence[int]) -> None:
        try:
            if seqs:
                with self._guard("mark_published"), self._transaction() as cur:
                    cur.execute(self._sql["mark_published"], (self._clock(), _codec.dumps(seqs)))
        finally:
            with self._lock:
                self._held_keys -= keys

    def prune_outbox(self, older_than_ms: int) -> int:
        with self._guard("prune_outbox"), self._transaction() as cur:
            cur.execute(self._sql["prune"], (self._clock() - older_than_ms,))
            return cur.rowcount

    def outbox_backlog(self) -> int:
        with self._guard("outbox_backlog"):
            (count,) = self._conn.execute(self._sql["backlog"]).fetchone()
        return int(count)

    def wait_for_outbox(self, timeout: float) -> bool:
        fired = self._appended.wait(timeout)
        self._appended.clear()
        return fired

    # -- generations (replay swaps) ---------------------------------------------------------

    def _read_generation(self, cur: sqlite3.Cursor) -> int:
        row = cur.execute(sqlite_generation(self._p)).fetchone()
        return 0 if row is None else int(row[0])

    def _check_generation(self, cur: sqlite3.Cursor) -> None:
        stored = self._read_generation(cur)
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
        with self._guard("stored_generation"):
            return self._read_generation(self._conn.cursor())

    def follow_swap(self) -> int:
        self._generation = self.stored_generation()
        return self._generation

    def snapshot(self, group: str) -> StateSnapshot:
        with self._guard("snapshot"):
            self._conn.execute("BEGIN")  # WAL: one read snapshot until COMMIT
            try:
                return StateSnapshot(
                    self.positions(group), self.devices(), self.windows(), self.alert_states()
                )
            finally:
                self._conn.execute("COMMIT")

    def swap_in(self, shadow: Store, group: str) -> int:
        """Copies the shadow's rows over this store's in one ``BEGIN IMMEDIATE`` transaction
        (the shadow file ATTACHed), so every connection to this file, the running worker's
        too, sees the old state or the new one, never a mix."""
        if not isinstance(shadow, SqliteStore):
            raise StoreError("an SQLite store swaps in an SQLite shadow only")
        same_file = shadow._path.resolve() == self._path.resolve()
        if same_file and shadow._p == self._p:
            raise StoreError("the shadow store is the live store")
        if not shadow.positions(group):
            raise StoreError(f"the shadow holds no offsets of group {group!r}: nothing to swap")
        source = f'main."{shadow._p}' if same_file else f'replay_shadow."{shadow._p}'
        with self._guard("swap_in"):
            if not same_file:
                self._conn.execute("ATTACH DATABASE ? AS replay_shadow", (str(shadow._path),))
            try:
                with self._transaction() as cur:
                    generation = self._read_generation(cur) + 1
                    for statement, grouped in sqlite_swap(f'main."{self._p}', source):
                        cur.execute(statement, (group,) if grouped else ())
                    cur.execute(sqlite_set_generation(self._p), (str(generation),))
            finally:
                if not same_file:
                    self._conn.execute("DETACH DATABASE replay_shadow")
        return generation

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    @property
    def prefix(self) -> str:
        """The prefix of every table name."""
        return self._p

    @property
    def merge_capacity(self) -> int:
        """How many parts :meth:`merge` takes at once: SQLite's limit of attached databases
        (10 unless SQLite was built otherwise)."""
        return self._conn.getlimit(sqlite3.SQLITE_LIMIT_ATTACHED)

    def merge(self, parts: Sequence[SqliteStore]) -> None:
        """Copies every row of ``parts`` (stores with this store's prefix, in other files)
        into this store, in ONE transaction: projections, inbox offsets and recent ids,
        idempotent-consumer records and the outbox.

        For rebuilds whose partitions were applied by several processes, each into a file of
        its own: devices never cross partitions, so no key exists twice; if one does, StoreError
        and nothing is merged. Call on a store nothing else writes (a fresh shadow).
        """
        names = [f"replay_part{i}" for i in range(len(parts))]
        if len(parts) > self.merge_capacity:
            raise StoreError(
                f"{len(parts)} parts cannot be merged at once: SQLite attaches at most "
                f"{self.merge_capacity} databases"
            )
        with self._guard("merge"):
            attached: list[str] = []
            try:
                for name, part in zip(names, parts, strict=True):
                    self._conn.execute(f"ATTACH DATABASE ? AS {name}", (str(part._path),))
                    attached.append(name)
                with self._transaction() as cur:
                    for name, part in zip(names, parts, strict=True):
                        for statement in sqlite_merge(f'main."{self._p}', f'{name}."{part._p}'):
                            cur.execute(statement)
            finally:
                for name in attached:
                    self._conn.execute(f"DETACH DATABASE {name}")

    def _set_offsets(
        self, cur: sqlite3.Cursor, group: str, advances: Sequence[OffsetAdvance], why: str
    ) -> None:
        """Each advance's insert or compare-and-set, in partition order; a conflict raises."""
        for adv in sorted(advances, key=lambda a: (a.topic, a.partition)):
            name, params = adv.statement(group)
            if cur.execute(self._sql[name], params).rowcount != 1:
                raise adv.conflict(group, why)

    def move_positions(self, group: str, moves: Sequence[OffsetAdvance]) -> int:
        with self._guard("move_positions"), self._transaction() as cur:
            self._set_offsets(cur, group, moves, "a worker applied events meanwhile")
            generation = self._read_generation(cur) + 1
            cur.execute(sqlite_set_generation(self._p), (str(generation),))
        return generation

    # -- idempotent consumer ----------------------------------------------------------------

    def prune_tracking(self, before_ts: int) -> int:
        with self._guard("prune_tracking"), self._transaction() as cur:
            cur.execute(self._sql["prune_tracking"], (before_ts,))
            return int(cur.rowcount)

    def apply_once(
        self, consumer: str, event_id: str, ts: int, effect: Callable[[StoreTransaction], T]
    ) -> OnceResult[T]:
        with self._guard("apply_once"), self._transaction() as cur:
            cur.execute(self._sql["track"], (consumer, event_id, ts))
            if cur.rowcount == 0:
                return OnceResult(applied=False)
            tx = _SqliteTransaction(cur, self._p, self._sql["append_outbox"])
            value = effect(tx)
        if tx.appended:
            self._appended.set()
        return OnceResult(applied=True, value=value)


class _SqliteClaim:
    def __init__(self, store: SqliteStore, records: list[OutboxRecord], keys: set[str]) -> None:
        self._store = store
        self._records = records
        self._keys: set[str] | None = keys

    @property
    def records(self) -> Sequence[OutboxRecord]:
        return self._records

    def mark_published(self, seqs: Sequence[int] | None = None) -> None:
        if self._keys is None:
            raise StoreError("outbox claim already ended")
        keys, self._keys = self._keys, None
        chosen = [r.seq for r in self._records] if seqs is None else list(seqs)
        self._store._end_claim(keys, chosen)

    def release(self) -> None:
        if self._keys is not None:
            keys, self._keys = self._keys, None
            self._store._end_claim(keys, ())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class _SqliteTransaction:
    paramstyle = "qmark"

    def __init__(self, cur: sqlite3.Cursor, prefix: str, append_sql: str) -> None:
        self._cur = cur
        self._prefix = prefix
        self._append_sql = append_sql
        self.appended = False

    def table(self, name: str) -> str:
        return f'"{self._prefix}{name}"'

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._cur.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _translate(exc, "apply_once effect") from exc

    def append_outbox(self, events: Sequence[DerivedEvent]) -> None:
        try:
            self._cur.executemany(self._append_sql, map(_codec.outbox_row, events))
        except sqlite3.Error as exc:
            raise _translate(exc, "append_outbox") from exc
        self.appended = self.appended or bool(events)
