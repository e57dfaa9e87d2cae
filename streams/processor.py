"""The batch processor: inbox filtering, projections and outbox in one store transaction.

:meth:`BatchProcessor.apply` is the whole consistency core of a stream worker, independent
of faust and Kafka: hand it the decoded events of a batch with their positions, in log order
per partition, and it commits their effects exactly once.

Guarantees:

* **Exactly-once effects.** An event at or below its partition's stored offset is skipped
  (``old_offset``); an event whose id was already applied is skipped (``duplicate_event_id``,
  and counted in the device's ``duplicates``); an event with a ``seq`` too far below the
  device's sequence window is skipped (``seq_out_of_window``, counted per device). Everything
  else is applied once, and offsets, projection rows and outbox rows commit together or not
  at all.
* **Write-through cache.** Device state, open windows, alert states and inbox offsets are
  cached in memory and loaded from the store on first use. If a commit fails for any reason
  (crash simulation, lost connection, :class:`~streams.errors.PositionConflictError`) the whole
  cache is dropped, so the next batch starts from what the store holds; redeliver the batch
  (or seek to :meth:`BatchProcessor.assign`'s offsets) and nothing is applied twice.
* **Rebalances.** Call :meth:`BatchProcessor.assign` when partitions are assigned (it returns
  where to seek) and :meth:`BatchProcessor.revoke` when they are revoked. A worker that missed
  a revocation is fenced by the store (PositionConflictError), never applies a partition twice.

* **One writer per device.** A device's events must live on the partition the platform's
  partitioner gives its id, so that one worker owns a device at a time: a record on another
  partition is skipped (``misrouted``), and an unplanned partition count is refused
  (:mod:`streams.layout`). Not thread-safe: one thread drives one processor.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING

from contracts.topics import ALERTS
from streams.domain import DerivedEvent, Position, TelemetryEvent, TopicPartition
from streams.errors import PartitionLayoutError
from streams.inbox import PartitionInbox
from streams.layout import PartitionLayout
from streams.projections.alerts import AlertRule, load_alert_rules
from streams.projections.device import Admission, SeqWindow
from streams.projections.projector import Projector
from streams.projections.windows import DEFAULT_WINDOWS, WindowSpec
from streams.store.port import BatchWrite, OffsetAdvance, Store

if TYPE_CHECKING:
    from streams.settings import WorkerSettings

__all__ = ["COLLECTOR_THRESHOLDS", "BatchProcessor", "BatchResult", "SkipReason"]


class SkipReason(StrEnum):
    """Why an event of a batch was not applied (metric label values)."""

    OLD_OFFSET = "old_offset"
    DUPLICATE_EVENT_ID = "duplicate_event_id"
    SEQ_OUT_OF_WINDOW = "seq_out_of_window"
    UNDECODABLE = "undecodable"
    """A record that is not a telemetry event: passed over, but its offset is committed."""
    MISROUTED = "misrouted"
    """A record on a partition the platform's partitioner does not give its device."""
    REFETCHED = "refetched"
    """A record fetched from past the partition's stored position: not applied, the
    partition is fetched again from the stored position (``BatchResult.refetch``)."""


_EMPTY: Mapping[SkipReason, int] = MappingProxyType({})

COLLECTOR_THRESHOLDS = (50_000, 20, 100)
"""The garbage collector's thresholds (``gc.set_threshold``) for a process applying batches:
each batch allocates tens of thousands of short-lived objects while few are kept (the caches),
so the young collection runs less often, and far fewer survivors of a batch in progress get
promoted and scanned again and again by full collections."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a committed batch did; ``positions`` are the partitions' new last applied offsets."""

    applied: int
    skipped: Mapping[SkipReason, int] = field(default_factory=lambda: _EMPTY)
    derived: tuple[DerivedEvent, ...] = ()
    positions: Mapping[TopicPartition, int] = field(default_factory=dict)
    commit_seconds: float = 0.0
    refetch: Mapping[TopicPartition, int] = field(default_factory=dict)
    """Partitions to fetch again, from the offset given (see ``refetch_gaps``)."""


class BatchProcessor:
    """Applies batches of telemetry exactly once to one store for one consumer group."""

    def __init__(
        self,
        store: Store,
        group: str,
        *,
        windows: Sequence[WindowSpec] = DEFAULT_WINDOWS,
        rules: Sequence[AlertRule] = (),
        seq_window: SeqWindow | None = None,
        alerts_topic: str = ALERTS.name,
    ) -> None:
        """``seq_window`` bounds de-duplication per device (sequence window, and the horizon
        of readings without ``seq``); alerts are appended to the outbox for ``alerts_topic``."""
        self.store = store
        self.group = group
        self._projector = Projector(windows, rules, seq_window, alerts_topic)
        self._horizon_ms = max((spec.grace_ms for spec in windows), default=0)
        self._reach_ms = max((spec.size_ms + spec.grace_ms for spec in windows), default=0)
        self._partitions: dict[tuple[str, int], PartitionInbox] = {}
        self._device_partition: dict[str, tuple[str, int]] = {}
        self._routed: dict[str, tuple[int, int]] = {}  # device -> (partition, count) checked
        self._layouts: dict[str, PartitionLayout | None] = {}
        self.refetch_gaps = False
        """Whether a record past the offset after the stored one is left for the consumer to
        fetch again from there (a worker, whose consumer may be positioned past the store
        after its partitions moved away and back), instead of taken as it comes (replay,
        which reads the log in order itself). A log without records there (compacted,
        truncated) is seen as such when the fetch from there starts past it again."""
        self._sent_back: dict[tuple[str, int], int] = {}

    # -- assignment -------------------------------------------------------------------------

    def assign(
        self, partitions: Iterable[TopicPartition], partition_count: int | None = None
    ) -> dict[TopicPartition, int | None]:
        """Drops cached state of newly assigned partitions; returns the offset to seek to.

        The offset is the stored last applied offset + 1, or None when nothing was applied
        (start from the consumer's reset policy, normally the earliest offset).
        ``partition_count`` is the topic's count as the consumer sees it: recorded as the
        store's layout the first time, PartitionLayoutError when it differs from it.
        """
        assigned = [TopicPartition(*tp) for tp in partitions]
        if partition_count is not None:
            for topic in {tp.topic for tp in assigned}:
                self.check_layout(topic, partition_count)
        self.revoke(assigned)
        stored = self.store.positions(self.group)
        return {tp: (stored[tp] + 1 if tp in stored else None) for tp in assigned}

    def revoke(self, partitions: Iterable[TopicPartition]) -> None:
        """Forgets the cached state of revoked partitions and of their devices."""
        gone = {(tp[0], tp[1]) for tp in partitions}
        for tp in gone:
            self._partitions.pop(tp, None)
            self._sent_back.pop(tp, None)
        devices = [d for d, tp in self._device_partition.items() if tp in gone]
        self._projector.drop(devices)
        for device_id in devices:
            del self._device_partition[device_id]

    def reset(self) -> None:
        """Forgets every cached state; the next batch reloads from the store."""
        self._partitions.clear()
        self._device_partition.clear()
        self._routed.clear()
        self._layouts.clear()
        self._projector.clear()
        self._sent_back.clear()

    def check_layout(self, topic: str, partitions: int) -> PartitionLayout:
        """The store's layout of ``topic`` (recorded with ``partitions`` if it has none);
        PartitionLayoutError if it plans another partition count."""
        layout = self.store.partition_layout(topic)
        if layout is None:
            layout = PartitionLayout.single(partitions)
            if not self.store.record_partition_layout(topic, layout, None):
                return self.check_layout(topic, partitions)  # recorded by another worker
        if layout.partitions != partitions:
            raise PartitionLayoutError(
                f"{topic} has {partitions} partitions, but this store's state was built on "
                f"{layout.partitions}: applying would split devices between workers. Nothing "
                "is applied. To add partitions: stop the gateways, let the workers apply "
                f"everything, run `iotctl replay repartition --partitions {partitions} "
                "--execute`, then restart the workers and the gateways"
            )
        self._layouts[topic] = layout
        return layout

    def adopt_layout(self, topic: str, layout: PartitionLayout) -> None:
        """Judges records of ``topic`` by ``layout`` (a rebuild takes the live store's)."""
        self._layouts[topic] = layout

    def _routed_here(self, device_id: str, position: Position) -> bool:
        """Whether the device belongs on the record's partition (remembered per device and
        partition count, so the hash runs once per device)."""
        layout = self._layout(position.topic)
        if layout is None:
            return True
        count = layout.count_at(position.partition, position.offset)
        if self._routed.get(device_id) == (position.partition, count):
            return True
        if not layout.routes(device_id, position.partition, position.offset):
            return False
        self._routed[device_id] = (position.partition, count)
        return True

    def _layout(self, topic: str) -> PartitionLayout | None:
        if topic not in self._layouts:
            self._layouts[topic] = self.store.partition_layout(topic)
        return self._layouts[topic]

    # -- applying ---------------------------------------------------------------------------

    def apply(self, batch: Sequence[tuple[Position, TelemetryEvent | None]]) -> BatchResult:
        """Applies a batch in ONE store transaction; returns once it committed.

        Events of a partition must come in offset order (as a consumer delivers them). An
        entry without an event is a record that could not be decoded: nothing is applied for
        it, but the stored offset moves past it like past any other record, so the position
        a reader waits for is reached.
        Raises :class:`~streams.errors.StoreError`: then nothing of the batch is committed,
        the cache is dropped, and the caller must redeliver the same batch or seek to
        :meth:`assign`'s offsets before anything else (moving on would skip its events).
        """
        if not batch:
            return BatchResult(applied=0)
        try:
            write, result = self._prepare(batch)
            if write is None:
                return result
            started = time.perf_counter()
            self.store.commit_batch(write)
        except BaseException:
            self.reset()
            raise
        return BatchResult(
            applied=result.applied,
            skipped=result.skipped,
            derived=result.derived,
            positions=result.positions,
            commit_seconds=time.perf_counter() - started,
        )

    def _prepare(
        self, batch: Sequence[tuple[Position, TelemetryEvent | None]]
    ) -> tuple[BatchWrite | None, BatchResult]:
        """Filters and projects the batch in memory; returns the write and its result."""
        parts = self._load(batch)
        projector = self._projector
        device_partition = self._device_partition
        touched: dict[tuple[str, int], PartitionInbox] = {}
        refetch: dict[tuple[str, int], int] = {}
        old = duplicate = out_of_window = undecodable = misrouted = applied = refetched = 0
        for position, event in batch:
            tp = (position.topic, position.partition)
            inbox = parts[tp]
            if position.offset <= inbox.offset:
                old += 1
                continue
            if (
                position.offset != inbox.offset + 1
                and inbox.offset >= 0
                and (tp in refetch or (self.refetch_gaps and self._gap_not_in_log(tp, inbox)))
            ):
                refetch.setdefault(tp, inbox.offset + 1)
                refetched += 1
                continue
            inbox.offset = position.offset
            touched[tp] = inbox
            if event is None:
                undecodable += 1
                continue
            if not self._routed_here(event.device_id, position):
                misrouted += 1
                continue
            device_partition[event.device_id] = tp
            admission = projector.apply(event)
            if admission is Admission.NEW:
                applied += 1
            elif admission is Admission.DUPLICATE:
                duplicate += 1
            else:
                out_of_window += 1
        changes = projector.take_changes()
        write = None
        if touched:
            offsets = [
                OffsetAdvance(
                    tp[0],
                    tp[1],
                    None if inbox.committed < 0 else inbox.committed,
                    inbox.offset,
                )
                for tp, inbox in touched.items()
            ]
            write = BatchWrite(
                group=self.group,
                offsets=offsets,
                devices=changes.devices,
                windows=changes.windows,
                alerts=changes.alerts,
                outbox=changes.derived,
                expired_windows=changes.expired,
                recent=changes.recent,
                forgotten=changes.forgotten,
                metrics_added=changes.metrics_added,
            )
            for inbox in touched.values():  # what the next batch expects the store to hold
                inbox.committed = inbox.offset
        counts = (
            (SkipReason.OLD_OFFSET, old),
            (SkipReason.DUPLICATE_EVENT_ID, duplicate),
            (SkipReason.SEQ_OUT_OF_WINDOW, out_of_window),
            (SkipReason.UNDECODABLE, undecodable),
            (SkipReason.MISROUTED, misrouted),
            (SkipReason.REFETCHED, refetched),
        )
        self._sent_back.update(refetch)
        result = BatchResult(
            applied=applied,
            skipped=MappingProxyType({reason: n for reason, n in counts if n}),
            derived=tuple(changes.derived),
            positions={TopicPartition(*tp): inbox.offset for tp, inbox in touched.items()},
            refetch={TopicPartition(*tp): offset for tp, offset in refetch.items()},
        )
        return write, result

    def _gap_not_in_log(self, tp: tuple[str, int], inbox: PartitionInbox) -> bool:
        """A fetch starts past the offset after the stored one: whether to fetch again from
        there; not when the fetch from there already started past it (the log has no
        records there)."""
        return self._sent_back.pop(tp, None) != inbox.offset + 1

    def _load(
        self, batch: Sequence[tuple[Position, TelemetryEvent | None]]
    ) -> dict[tuple[str, int], PartitionInbox]:
        parts = self._partitions
        for tp in {(position.topic, position.partition) for position, _ in batch}:
            if tp not in parts:
                state = self.store.load_inbox(self.group, TopicPartition(*tp))
                parts[tp] = PartitionInbox(-1 if state.offset is None else state.offset)
        unknown = self._projector.unknown(event.device_id for _, event in batch if event)
        if unknown:
            projector = self._projector
            loaded = self.store.load_devices(
                unknown, self._horizon_ms, self._reach_ms, projector.seq_window.horizon_ms
            )
            projector.load(unknown, loaded.devices, loaded.windows, loaded.alerts, loaded.recent)
            # Each loaded device is its partition's from now on, applied or not (a batch of
            # records another worker applied loads them all): a revocation must drop it,
            # or it outlives the partition's return as a state older than the store's.
            loaded_now = set(unknown)
            for position, event in batch:
                if event is not None and event.device_id in loaded_now:
                    self._device_partition[event.device_id] = (position.topic, position.partition)
        return parts


def processor_for(
    settings: WorkerSettings,
    store: Store,
    group: str | None = None,
    layout: PartitionLayout | None = None,
) -> BatchProcessor:
    """The processor the settings describe (windows and their retention, alert rules, the
    alerts topic) over ``store``, for ``group`` (default: the workers' group): the live
    workers and replay apply the log with the same one. ``layout`` judges the telemetry
    records (default: the store's)."""
    rules = load_alert_rules(settings.alert_rules) if settings.alert_rules else ()
    processor = BatchProcessor(
        store,
        group or settings.group,
        windows=settings.windows(),
        rules=rules,
        seq_window=SeqWindow(horizon_ms=round(settings.dedupe_horizon_s * 1000)),
        alerts_topic=settings.alerts_topic,
    )
    if layout is not None:
        processor.adopt_layout(settings.telemetry_topic, layout)
    return processor
