"""The Store port: what the stream processors need from durable storage.

Adapters: :mod:`streams.store.sqlite` (embedded default: one worker, WAL) and
:mod:`streams.store.postgres` (scale-out: several workers share the partitions). Every method
either succeeds or raises :class:`~streams.errors.StoreError` with nothing of its transaction
committed; driver errors never escape an adapter. Store instances are synchronous and safe to
share between threads (each serializes its own connections); call them from a worker thread
in asyncio code (``asyncio.to_thread``).

The store, not Kafka's committed offset, is the source of truth: a worker seeks each assigned
partition to ``positions(group)[tp] + 1``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Generic, NamedTuple, Protocol, Self, TypeVar

from streams.domain import DerivedEvent, TopicPartition
from streams.errors import PositionConflictError
from streams.layout import PartitionLayout
from streams.projections.alerts import AlertState
from streams.projections.device import DeviceState, RecentEvent
from streams.projections.projector import ExpiredWindows
from streams.projections.windows import WindowAggregate

__all__ = [
    "BatchWrite",
    "FleetCounts",
    "InboxState",
    "InboxStore",
    "LoadedDevices",
    "OffsetAdvance",
    "OnceResult",
    "OutboxClaim",
    "OutboxRecord",
    "OutboxStore",
    "Projection",
    "ProjectionStore",
    "StateSnapshot",
    "Store",
    "StoreTransaction",
    "SwapStore",
    "TrackingStore",
]

T = TypeVar("T")


class Projection(StrEnum):
    """The projections a store keeps; the argument of ``state_hash``."""

    DEVICES = "devices"
    WINDOWS = "windows"
    ALERTS = "alerts"


class OffsetAdvance(NamedTuple):
    """Move a partition's inbox offset from ``expected`` (None: never applied) to ``offset``."""

    topic: str
    partition: int
    expected: int | None
    offset: int

    def statement(self, group: str) -> tuple[str, tuple[object, ...]]:
        """Which offset statement applies (``insert_offset`` for a first offset, else the
        compare-and-set ``update_offset``) and its parameters, as both adapters name them."""
        if self.expected is None:
            return "insert_offset", (group, self.topic, self.partition, self.offset)
        return "update_offset", (self.offset, group, self.topic, self.partition, self.expected)

    def conflict(self, group: str, why: str) -> PositionConflictError:
        """The error when the stored offset was not ``expected`` any more."""
        return PositionConflictError(
            f"{self.topic}[{self.partition}] is not at offset {self.expected} in group "
            f"{group!r} any more: {why}"
        )


@dataclass(frozen=True, slots=True)
class InboxState:
    """A partition's stored inbox: its last applied offset (None: nothing applied)."""

    offset: int | None


@dataclass(frozen=True, slots=True)
class BatchWrite:
    """Everything one batch changes, committed atomically by ``InboxStore.commit_batch``."""

    group: str
    offsets: Sequence[OffsetAdvance]
    devices: Sequence[DeviceState]
    windows: Sequence[WindowAggregate]
    alerts: Sequence[AlertState]
    outbox: Sequence[DerivedEvent]
    expired_windows: Sequence[ExpiredWindows] = ()
    """Windows retention deletes (after the upserts, in the same transaction)."""
    recent: Sequence[RecentEvent] = ()
    """Ids of readings without ``seq`` to remember (per device, within the horizon)."""
    forgotten: Sequence[tuple[str, int]] = ()
    """(device, cutoff): the device's remembered ids dated before the cutoff are deleted."""
    metrics_added: Sequence[tuple[str, str]] = ()
    """(metric, device_id) rows added to the metric index ``has_metric`` pages read: each
    metric of ``devices`` their stored rows did not have yet (at least; one already indexed
    is ignored). A device's metrics only grow, so the index then holds every metric of every
    stored device."""


@dataclass(frozen=True, slots=True)
class FleetCounts:
    """Counts over the whole fleet, read in one statement (so they agree with each other)."""

    devices: int
    seen: int
    """Devices whose ``last_seen`` is at or after the time asked about."""
    active_alerts: int


@dataclass(frozen=True, slots=True)
class LoadedDevices:
    """Stored state of some devices: their rows, open windows and alert states."""

    devices: Sequence[DeviceState]
    windows: Sequence[WindowAggregate]
    alerts: Sequence[AlertState]
    recent: Sequence[RecentEvent] = ()


@dataclass(frozen=True, slots=True)
class OutboxRecord:
    """An outbox row: ``seq`` orders rows (per key, the order of their committed appends)."""

    seq: int
    event: DerivedEvent


@dataclass(frozen=True, slots=True)
class OnceResult(Generic[T]):
    """Outcome of ``apply_once``: ``applied`` False means a duplicate was skipped."""

    applied: bool
    value: T | None = None


class InboxStore(Protocol):
    """Offsets, the applied-id inbox and the atomic batch commit."""

    def partition_layout(self, topic: str) -> PartitionLayout | None:
        """The partition layout recorded for ``topic``, None before the first record."""
        ...

    def record_partition_layout(
        self, topic: str, layout: PartitionLayout, expected: PartitionLayout | None
    ) -> bool:
        """Records ``layout`` for ``topic`` if the recorded one is still ``expected``
        (compare-and-set); False when another process changed it first."""
        ...

    def record_retention_gap(self, group: str, tp: TopicPartition, records: int) -> int:
        """Adds ``records`` that retention deleted before ``group`` applied them on ``tp``;
        returns the partition's total so far."""
        ...

    def retention_gaps(self, group: str) -> dict[TopicPartition, int]:
        """Records retention deleted before ``group`` applied them, per partition."""
        ...

    def positions(self, group: str) -> dict[TopicPartition, int]:
        """Last applied offset per partition of ``group`` (seek to offset + 1)."""
        ...

    def load_inbox(self, group: str, tp: TopicPartition) -> InboxState:
        """The stored inbox of one partition (offset None when nothing was applied)."""
        ...

    def commit_batch(self, write: BatchWrite) -> None:
        """Commits offsets, projection rows (with remembered ids) and outbox rows in ONE
        transaction.

        First it moves each partition's offset from ``expected`` to ``offset`` (a compare-and-
        set, in (topic, partition) order); if any stored offset differs it writes nothing and
        raises :class:`~streams.errors.PositionConflictError`. Rows are full replacements (upserts).
        ``metrics_added`` go into the metric index in the same transaction.
        Outbox rows get increasing ``seq`` in the given order; an ``event_id`` already in the
        outbox is ignored. On PostgreSQL the commit notifies outbox listeners.
        """
        ...


class ProjectionStore(Protocol):
    """Reads of the projections, and their canonical hash."""

    def load_devices(
        self, device_ids: Sequence[str], horizon_ms: int, reach_ms: int, recent_ms: int
    ) -> LoadedDevices:
        """Rows of the given devices, with windows ending after ``last_seen - horizon_ms``
        (at least; found among those starting after ``last_seen - reach_ms``, by index) and
        the ids of readings without ``seq`` dated after ``last_seen - recent_ms``."""
        ...

    def device(self, device_id: str) -> DeviceState | None: ...

    def devices(self) -> list[DeviceState]:
        """Every device, ordered by device id."""
        ...

    def windows(self, device_id: str | None = None) -> list[WindowAggregate]:
        """Window rows (of one device or all), ordered by device, metric, size, start."""
        ...

    def alert_states(self, device_id: str | None = None) -> list[AlertState]:
        """Alert states (of one device or all), ordered by device, rule."""
        ...

    def device_page(
        self,
        after: str | None,
        limit: int,
        *,
        seen_since: int | None = None,
        has_metric: str | None = None,
    ) -> list[DeviceState]:
        """Up to ``limit`` devices with ids after ``after`` (code point order), for paging.

        ``seen_since`` keeps devices whose ``last_seen`` is at or after it (epoch ms);
        ``has_metric`` keeps devices that have a latest value of that metric, found through
        the metric index: the page reads that metric's devices from ``after`` on, in order,
        never the devices without it.
        """
        ...

    def alert_page(
        self,
        after: tuple[str, str] | None,
        limit: int,
        *,
        device_id: str | None = None,
        active_only: bool = False,
    ) -> list[AlertState]:
        """Up to ``limit`` alert states after ``(device_id, rule)`` ``after``, in code point
        order of that pair (as :meth:`alert_states`), for paging; only ``device_id``'s if
        given, only raised ones if ``active_only``."""
        ...

    def fleet_counts(self, seen_since: int) -> FleetCounts:
        """Devices in the store, those seen at or after ``seen_since`` (epoch ms, event
        time), and raised alert states: counted by the database, never by loading rows."""
        ...

    def window_range(
        self, device_id: str, metric: str, size_ms: int, start_ms: int, end_ms: int
    ) -> list[WindowAggregate]:
        """Windows of one device's metric and size starting in ``[start_ms, end_ms)``, by start."""
        ...

    def state_hash(self, projection: Projection) -> str:
        """SHA-256 of the projection's canonical rows in primary-key (code point) order.

        Equal for equal state whatever the adapter, so replays can be verified byte for byte.
        """
        ...


class OutboxClaim(Protocol):
    """Outbox rows claimed by one relay; use as a context manager.

    Leaving the block without :meth:`mark_published` (or with an exception) releases the rows
    unpublished, to be claimed again: publication is at least once, consumers dedupe on
    ``event_id``.
    """

    @property
    def records(self) -> Sequence[OutboxRecord]:
        """The claimed rows in ``seq`` order (so in per-key order)."""
        ...

    def mark_published(self, seqs: Sequence[int] | None = None) -> None:
        """Marks rows published (all claimed ones by default) and ends the claim."""
        ...

    def release(self) -> None:
        """Ends the claim without marking anything; idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class OutboxStore(Protocol):
    """The transactional outbox's read side, for relays."""

    def claim(self, limit: int) -> OutboxClaim:
        """Claims up to ``limit`` unpublished rows, whole key prefixes in per-key order.

        A claimed key is exclusive until the claim ends: no other claim gets any row of that
        key, so several relays never reorder a key (PostgreSQL: the oldest unpublished row of
        each key is locked ``FOR UPDATE SKIP LOCKED``; SQLite: one process owns the store).
        """
        ...

    def prune_outbox(self, older_than_ms: int) -> int:
        """Deletes rows published more than ``older_than_ms`` ago; returns how many."""
        ...

    def outbox_backlog(self) -> int:
        """How many rows are not yet published."""
        ...

    def wait_for_outbox(self, timeout: float) -> bool:
        """Blocks until an outbox append commits (True) or ``timeout`` seconds pass (False).

        The first call subscribes (PostgreSQL: LISTEN); an append committed before it may go
        unnoticed, so relays call it once with timeout 0 before their first claim. Spurious
        True returns are possible; a relay simply claims again.
        """
        ...


class StoreTransaction(Protocol):
    """The transaction an ``apply_once`` effect writes in (adapter-specific SQL dialect)."""

    @property
    def paramstyle(self) -> str:
        """``qmark`` (SQLite) or ``format`` (PostgreSQL, ``%s``)."""
        ...

    def table(self, name: str) -> str:
        """``name`` qualified with the store's prefix or schema, quoted for SQL."""
        ...

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Runs one statement in the transaction; returns its rows (empty if none)."""
        ...

    def append_outbox(self, events: Sequence[DerivedEvent]) -> None:
        """Appends derived events to the outbox, committed with the effect."""
        ...


class TrackingStore(Protocol):
    """The idempotent consumer for derived topics."""

    def apply_once(
        self, consumer: str, event_id: str, ts: int, effect: Callable[[StoreTransaction], T]
    ) -> OnceResult[T]:
        """Runs ``effect`` and records (consumer, event_id) in ONE transaction, at most once.

        A recorded (consumer, event_id) (unique constraint) skips the effect and returns
        ``OnceResult(applied=False)``. If the effect raises, nothing is recorded and its
        exception propagates, so the event can be retried. ``ts`` (the event's time, epoch
        ms) is kept with the record for :meth:`prune_tracking`.
        """
        ...

    def prune_tracking(self, before_ts: int) -> int:
        """Forgets records of events dated before ``before_ts``; returns how many. The
        consumer must refuse such events from then on (its dedupe horizon)."""
        ...


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """A group's inbox positions and every projection row, read in ONE transaction."""

    positions: dict[TopicPartition, int]
    devices: Sequence[DeviceState]
    windows: Sequence[WindowAggregate]
    alerts: Sequence[AlertState]


class SwapStore(Protocol):
    """Generations: how a replay swap replaces a live store's state under running workers.

    Every swap bumps the store's *generation*. A store instance works under the generation it
    saw when it was migrated; ``commit_batch`` compares it with the stored one in the batch's
    own transaction (before the offset compare-and-set) and raises
    :class:`~streams.errors.StoreSwappedError`, writing nothing, if a swap came in between.
    """

    def generation(self) -> int:
        """The generation this instance commits batches under."""
        ...

    def stored_generation(self) -> int:
        """The store's current generation (a swap committed by anyone bumps it)."""
        ...

    def follow_swap(self) -> int:
        """Adopts the stored generation and returns it.

        Call only after dropping every cached state; then seek to ``positions(group)``.
        """
        ...

    def snapshot(self, group: str) -> StateSnapshot:
        """``group``'s positions and all projection rows as of one consistent point."""
        ...

    def swap_in(self, shadow: Store, group: str) -> int:
        """Makes ``shadow``'s projections (with remembered ids and the metric index) and
        ``group``'s offsets this store's state in ONE transaction, and bumps the generation;
        returns the new one.

        The outbox, the idempotent-consumer records and other groups' inbox rows stay. The
        shadow must be the same adapter on the same database (or file system), hold offsets
        of ``group``, and is consumed by the swap (PostgreSQL: its schema becomes the store's;
        the replaced schema is kept as ``<schema>_r<generation>``). StoreError, with nothing
        changed, if any of that does not hold.
        """
        ...

    def move_positions(self, group: str, moves: Sequence[OffsetAdvance]) -> int:
        """Sets ``group``'s inbox offsets (``iotctl replay reset-group``) in ONE transaction and
        bumps the generation (a worker still running follows as after a swap); returns the new
        generation.

        Each move is a compare-and-set from ``expected`` (None: no row yet) to ``offset``; if
        any stored offset differs, nothing is written
        and :class:`~streams.errors.PositionConflictError` is raised. Projections are not
        touched: moving forward leaves the skipped events out of the state for good.
        """
        ...


class Store(InboxStore, ProjectionStore, OutboxStore, TrackingStore, SwapStore, Protocol):
    """A complete store; adapters implement this."""

    def migrate(self) -> None:
        """Creates the schema if missing, or upgrades an older one in place (tables added
        since are created filled from the state they derive from); idempotent, safe to call
        from several workers."""
        ...

    def close(self) -> None:
        """Closes the store's connections; releases an open claim."""
        ...
