"""Replay: rebuild projections from the event log into a shadow store, and compare.

The rebuild reads the telemetry topic with a consumer of its own (assigned partitions and
seeks, no consumer group), so the live workers' group is never disturbed, and applies the
same processor code as the workers into a separate store. Processors are pure functions of
the log, so a rebuild over the same records gives the same ``state_hash`` as any other.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import OffsetOutOfRangeError

from contracts.kafka import KafkaClientSettings
from contracts.registry.cache import SchemaCache
from contracts.registry.factory import open_registry
from streams.decoding import UNDECODABLE, learn_schemas, read_telemetry
from streams.domain import Position, TelemetryEvent
from streams.domain import TopicPartition as StorePartition
from streams.errors import ConfigError
from streams.layout import PartitionLayout
from streams.processor import COLLECTOR_THRESHOLDS, BatchProcessor, processor_for
from streams.projections.canonical import canonical_row, hash_rows
from streams.settings import WorkerSettings
from streams.store.port import Projection, StateSnapshot, Store

__all__ = [
    "CopyReport",
    "Plan",
    "Progress",
    "RebuildReport",
    "RetentionLoss",
    "Swapped",
    "Verification",
    "apply_in_order",
    "catch_up",
    "compare",
    "copy_slice",
    "plan",
    "rebuild",
    "refuse_lossy_swap",
    "retention_deleted",
    "shadow_layout",
    "state_hashes",
    "swap",
    "telemetry_partitions",
    "verify",
    "verify_aligned",
]


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress line of a rebuild."""

    events: int
    seconds: float
    rate: float
    positions: dict[int, tuple[int, int]]
    """partition -> (next offset, end offset)."""
    eta_s: float | None


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What a rebuild read and applied, and the shadow store's hashes afterwards."""

    events: int
    undecodable: int
    seconds: float
    start: dict[int, int]
    end: dict[int, int]
    hashes: dict[str, str]

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @classmethod
    async def of(
        cls, shadow: Store, chosen: Plan, events: int, undecodable: int, started: float
    ) -> RebuildReport:
        """The report of a rebuild of ``chosen`` into ``shadow`` that began at ``started``
        (``time.monotonic``); hashes the shadow."""
        return cls(
            events=events,
            undecodable=undecodable,
            seconds=time.monotonic() - started,
            start=chosen.start,
            end=chosen.end,
            hashes=await asyncio.to_thread(state_hashes, shadow),
        )


@dataclass(frozen=True, slots=True)
class Verification:
    """Live against shadow, per projection, with a sample of the devices that differ."""

    equal: dict[str, bool]
    live: dict[str, str]
    shadow: dict[str, str]
    differing_devices: list[str] = field(default_factory=list)
    differing_keys: dict[str, list[str]] = field(default_factory=dict)
    """projection -> a sample of primary keys (``/``-joined) whose rows differ."""
    aligned: bool = True
    """Both sides had applied the log up to the same offsets (False: differences may be
    events one side had not applied yet)."""
    positions: dict[int, int] = field(default_factory=dict)
    """partition -> the last offset both sides had applied when compared."""

    @property
    def ok(self) -> bool:
        return all(self.equal.values())


def state_hashes(store: Store) -> dict[str, str]:
    """The canonical hash of every projection of ``store``."""
    return {projection.value: store.state_hash(projection) for projection in Projection}


def verify(live: Store, shadow: Store, sample: int = 10) -> Verification:
    """Compares two stores projection by projection; names up to ``sample`` differing devices."""
    live_hashes, shadow_hashes = state_hashes(live), state_hashes(shadow)
    equal = {name: live_hashes[name] == shadow_hashes[name] for name in live_hashes}
    differing: set[str] = set()
    if not all(equal.values()):
        left = {d.device_id: d for d in live.devices()}
        right = {d.device_id: d for d in shadow.devices()}
        differing |= {d for d in left.keys() | right.keys() if left.get(d) != right.get(d)}
        left_windows = {(w.device_id, w.metric, w.size_ms, w.start_ms): w for w in live.windows()}
        right_windows = {
            (w.device_id, w.metric, w.size_ms, w.start_ms): w for w in shadow.windows()
        }
        differing |= {
            key[0]
            for key in left_windows.keys() | right_windows.keys()
            if left_windows.get(key) != right_windows.get(key)
        }
    return Verification(equal, live_hashes, shadow_hashes, sorted(differing)[:sample])


def _key(row: Any) -> str:
    width = {"DeviceState": 1, "AlertState": 2}.get(type(row).__name__, 4)
    return "/".join(str(part) for part in canonical_row(row)[:width])


def compare(live: StateSnapshot, shadow: StateSnapshot, sample: int = 10) -> Verification:
    """Compares two snapshots row by row; names up to ``sample`` differing keys and devices
    per projection. ``aligned`` says whether both had applied the same offsets."""
    sides: dict[str, tuple[Sequence[Any], Sequence[Any]]] = {
        Projection.DEVICES.value: (live.devices, shadow.devices),
        Projection.WINDOWS.value: (live.windows, shadow.windows),
        Projection.ALERTS.value: (live.alerts, shadow.alerts),
    }
    equal: dict[str, bool] = {}
    hashes: tuple[dict[str, str], dict[str, str]] = ({}, {})
    keys: dict[str, list[str]] = {}
    devices: set[str] = set()
    for name, (left, right) in sides.items():
        hashes[0][name], hashes[1][name] = hash_rows(left), hash_rows(right)
        equal[name] = hashes[0][name] == hashes[1][name]
        if equal[name]:
            continue
        by_key = ({_key(r): r for r in left}, {_key(r): r for r in right})
        differing = sorted(
            k for k in by_key[0].keys() | by_key[1].keys() if by_key[0].get(k) != by_key[1].get(k)
        )
        keys[name] = differing[:sample]
        devices |= {k.split("/", 1)[0] for k in differing}
    return Verification(
        equal,
        hashes[0],
        hashes[1],
        sorted(devices)[:sample],
        keys,
        aligned=live.positions == shadow.positions,
        positions={tp.partition: offset for tp, offset in sorted(live.positions.items())},
    )


async def _offsets(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], at_ms: int | None, *, end: bool
) -> dict[TopicPartition, int]:
    """Offsets of the first record at or after ``at_ms`` (None: the log's start or end)."""
    if at_ms is None:
        found = await (consumer.end_offsets(tps) if end else consumer.beginning_offsets(tps))
        return dict(found)
    stamped = await consumer.offsets_for_times(dict.fromkeys(tps, at_ms))
    ends = await consumer.end_offsets(tps)
    return {tp: (stamped[tp].offset if stamped[tp] is not None else ends[tp]) for tp in tps}


async def _check_retention(
    consumer: AIOKafkaConsumer, start: dict[TopicPartition, int], from_ms: int, option: str
) -> None:
    """ConfigError when records after ``from_ms`` were already deleted by retention."""
    beginnings = await consumer.beginning_offsets(list(start))
    for tp, offset in start.items():
        if offset != beginnings[tp] or offset == 0:
            continue
        consumer.seek(tp, offset)
        fetched = await consumer.getmany(tp, timeout_ms=2000, max_records=1)
        first = fetched.get(tp)
        if first and first[0].timestamp > from_ms:
            raise ConfigError(
                f"{option} is before retention: partition {tp.partition} starts at offset "
                f"{offset}, written at {first[0].timestamp} ms"
            )


@dataclass(frozen=True, slots=True)
class Plan:
    """Which offsets a rebuild reads: ``start`` inclusive, ``end`` exclusive, per partition."""

    start: dict[int, int]
    end: dict[int, int]

    @property
    def records(self) -> int:
        return sum(max(0, self.end[p] - self.start[p]) for p in self.start)


async def plan(
    settings: WorkerSettings,
    from_ms: int | None = None,
    to_ms: int | None = None,
    *,
    option: str = "--from",
) -> Plan:
    """The offsets a rebuild from ``from_ms`` to ``to_ms`` would read; nothing is applied.

    ConfigError for a time in the future, ``to`` not after ``from``, an unknown topic, or a
    ``from`` before retention (``option`` names ``from_ms`` in those messages).
    """
    now_ms = time.time_ns() // 1_000_000
    if from_ms is not None and from_ms > now_ms:
        raise ConfigError(f"{option} lies in the future")
    if to_ms is not None and from_ms is not None and to_ms <= from_ms:
        raise ConfigError("--to must come after --from")
    tps = [
        TopicPartition(settings.telemetry_topic, p) for p in await telemetry_partitions(settings)
    ]
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, group_id=None, **settings.kafka.aiokafka_kwargs()
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        start = await _offsets(consumer, tps, from_ms, end=False)
        end = await _offsets(consumer, tps, to_ms, end=True)
        if from_ms is not None:
            await _check_retention(consumer, start, from_ms, option)
    finally:
        await consumer.stop()
    return Plan(
        {tp.partition: offset for tp, offset in start.items()},
        {tp.partition: offset for tp, offset in end.items()},
    )


async def telemetry_partitions(settings: WorkerSettings) -> list[int]:
    """The telemetry topic's partitions; ConfigError if the topic does not exist."""
    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        # Listing first: describing a missing topic may create it where auto-creation is on.
        if settings.telemetry_topic not in await admin.list_topics():
            raise ConfigError(f"unknown topic {settings.telemetry_topic!r}")
        [description] = await admin.describe_topics([settings.telemetry_topic])
    finally:
        await admin.close()
    return sorted(int(p["partition"]) for p in description["partitions"])


def _decode(
    registry: SchemaCache, fetched: dict[TopicPartition, list[Any]], end: dict[TopicPartition, int]
) -> tuple[list[tuple[Position, TelemetryEvent | None]], int]:
    """The fetched records before ``end`` as events, and how many did not decode (schemas
    learnt beforehand, so this never waits). An undecodable record stays in the batch
    without an event, as in the worker: its offset is recorded like any other."""
    batch: list[tuple[Position, TelemetryEvent | None]] = []
    append = batch.append
    bad = 0
    for tp, records in fetched.items():
        topic, partition, stop = tp.topic, tp.partition, end[tp]
        for record in records:
            if record.offset >= stop:
                break
            event: TelemetryEvent | None
            try:
                event = read_telemetry(registry, record.value or b"")
            except UNDECODABLE:
                bad += 1
                event = None
            append((Position(topic, partition, record.offset), event))
    return batch, bad


_collector_users: list[tuple[int, int, int]] = []
"""The thresholds to restore, once per rebuild running in this process (nesting-safe)."""


@contextlib.contextmanager
def _tuned_collector() -> Iterator[None]:
    """A rebuild allocates millions of short-lived objects and keeps few (the processor's
    caches): freeze what exists and run the young collection less often. Full collections
    scanning the growing caches were about a fifth of a rebuild's CPU time. The first of
    overlapping rebuilds tunes, the last one out restores."""
    if not _collector_users:
        gc.freeze()
        _collector_users.append(gc.get_threshold())
        gc.set_threshold(*COLLECTOR_THRESHOLDS)
    else:
        _collector_users.append(_collector_users[0])
    try:
        yield
    finally:
        restore = _collector_users.pop()
        if not _collector_users:
            gc.set_threshold(*restore)
            gc.unfreeze()


def _consumer(settings: WorkerSettings) -> AIOKafkaConsumer:
    """A group-less consumer tuned for reading a log end to end: large fetches."""
    return AIOKafkaConsumer(
        enable_auto_commit=False,
        group_id=None,
        # Never jump: a position retention deleted is an error, not a silent skip to the end.
        auto_offset_reset="none",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
        **settings.kafka.aiokafka_kwargs(),
    )


async def _fetch(
    consumer: AIOKafkaConsumer, pending: list[TopicPartition], max_records: int = 50_000
) -> dict[TopicPartition, list[Any]]:
    """One fetch; ConfigError if retention deleted records the replay still needs (the
    consumer runs with ``auto_offset_reset="none"``)."""
    try:
        fetched: dict[TopicPartition, list[Any]] = await consumer.getmany(
            *pending, timeout_ms=1000, max_records=max_records
        )
    except OffsetOutOfRangeError as exc:
        raise ConfigError(
            f"the log no longer holds the records to replay ({exc}): retention deleted them; "
            "rebuild from the log's start as it is now"
        ) from exc
    return fetched


async def apply_in_order(
    settings: WorkerSettings,
    processor: BatchProcessor,
    layout: PartitionLayout,
    start: dict[int, int],
    end: dict[int, int],
    progress: Callable[[Progress], None] | None = None,
) -> tuple[int, int]:
    """:func:`apply_range` one partition layout at a time: every record of an earlier
    partition count is applied before any of a later one, so a device that moved to another
    partition is applied in the order it was produced (the live workers applied everything
    before the partitions were added)."""
    events = undecodable = 0
    at = dict(start)
    for _, starts in layout.epochs[1:]:
        until = {p: max(at[p], min(end.get(p, 0), starts.get(p, 0))) for p in at}
        counted = await apply_range(settings, processor, at, until, progress)
        events, undecodable, at = events + counted[0], undecodable + counted[1], until
    counted = await apply_range(settings, processor, at, end, progress)
    return events + counted[0], undecodable + counted[1]


async def apply_range(
    settings: WorkerSettings,
    processor: BatchProcessor,
    start: dict[int, int],
    end: dict[int, int],
    progress: Callable[[Progress], None] | None = None,
    batch_events: int = 20_000,
) -> tuple[int, int]:
    """Applies the records of offsets ``start`` (inclusive) to ``end`` (exclusive) per
    partition with ``processor``; returns (events applied or skipped, undecodable).

    Fetching and decoding the next batch overlaps with the store transaction of the previous
    one (a worker thread; the store releases the GIL while it writes).
    """
    topic = settings.telemetry_topic
    tps = [TopicPartition(topic, p) for p in sorted(start) if end.get(p, 0) > start[p]]
    if not tps:
        return 0, 0
    stop = {tp: end[tp.partition] for tp in tps}
    total = sum(stop[tp] - start[tp.partition] for tp in tps)
    consumer = _consumer(settings)
    await consumer.start()
    events = undecodable = 0
    started = last_report = time.monotonic()
    applying: asyncio.Future[Any] | None = None
    collector = contextlib.ExitStack()
    collector.enter_context(_tuned_collector())
    try:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
        position = {tp: start[tp.partition] for tp in tps}
        async with open_registry(settings.registry, settings.kafka) as registry:
            while pending := [tp for tp in tps if position[tp] < stop[tp]]:
                fetched = await _fetch(consumer, pending)
                await learn_schemas(
                    registry, (r.value for records in fetched.values() for r in records)
                )
                batch, bad = _decode(registry, fetched, stop)
                for tp in pending:  # the consumer's own position: records or not
                    position[tp] = await consumer.position(tp)
                undecodable += bad
                if applying is not None:
                    await applying
                    applying = None
                if batch:
                    events += len(batch) - bad
                    applying = asyncio.ensure_future(asyncio.to_thread(processor.apply, batch))
                if progress and time.monotonic() - last_report >= 1.0:
                    last_report = time.monotonic()
                    elapsed = last_report - started
                    rate = events / elapsed if elapsed else 0.0
                    left = total - events - undecodable
                    eta = left / rate if rate else None
                    positions = {tp.partition: (position[tp], stop[tp]) for tp in tps}
                    progress(Progress(events, elapsed, rate, positions, eta))
            if applying is not None:
                await applying
                applying = None
    finally:
        if applying is not None:
            applying.cancel()
            with contextlib.suppress(BaseException):
                await applying
        collector.close()
        await consumer.stop()
    return events, undecodable


async def rebuild(
    settings: WorkerSettings,
    shadow: Store,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    group: str | None = None,
    layout: PartitionLayout | None = None,
) -> RebuildReport:
    """Applies the telemetry log's records from ``from_ms`` (None: earliest) up to ``to_ms``
    (None: the end offsets when the rebuild starts) into ``shadow``, in batches.

    Offsets are recorded under ``group`` (default: the workers' group), so the shadow can
    later be swapped in under running workers (:func:`swap`). Records are judged by
    ``layout``, the live store's (see :func:`shadow_layout`)."""
    chosen = await plan(settings, from_ms, to_ms)
    layout = await shadow_layout(settings, shadow, layout)
    processor = processor_for(settings, shadow, group, layout)
    started = time.monotonic()
    events, undecodable = await apply_in_order(
        settings, processor, layout, chosen.start, chosen.end, progress
    )
    return await RebuildReport.of(shadow, chosen, events, undecodable, started)


async def shadow_layout(
    settings: WorkerSettings, shadow: Store, layout: PartitionLayout | None
) -> PartitionLayout:
    """The partition layout a rebuild judges records by, recorded in ``shadow``: ``layout``
    (the live store's, which knows every repartition), else the shadow's own, else the
    topic's current count as the only one it ever had."""
    topic = settings.telemetry_topic
    recorded = await asyncio.to_thread(shadow.partition_layout, topic)
    if layout is None:
        layout = recorded or PartitionLayout.single(len(await telemetry_partitions(settings)))
    if recorded is None:
        await asyncio.to_thread(shadow.record_partition_layout, topic, layout, None)
    return layout


async def catch_up(
    settings: WorkerSettings, shadow: Store, until: dict[int, int], group: str | None = None
) -> int:
    """Applies to ``shadow`` the records after its own positions up to ``until`` (exclusive
    next offsets per partition); returns how many. Partitions at or past ``until`` stay."""
    group = group or settings.group
    stored = await asyncio.to_thread(shadow.positions, group)
    mine = {tp.partition: offset + 1 for tp, offset in stored.items()}
    first = await _log_start(settings, list(until))
    behind = {p: (n, first[p]) for p, n in mine.items() if p in first and n < first[p]}
    if behind:
        raise ConfigError(
            "the shadow is behind the log's start (retention deleted what it misses): "
            + ", ".join(f"partition {p} at {n}, log from {f}" for p, (n, f) in behind.items())
        )
    start = {p: mine.get(p, first[p]) for p in until}  # nothing applied yet: the log's start
    layout = await shadow_layout(settings, shadow, None)
    processor = processor_for(settings, shadow, group, layout)
    events, _ = await apply_in_order(settings, processor, layout, start, until)
    return events


async def _log_start(settings: WorkerSettings, partitions: list[int]) -> dict[int, int]:
    """The first offset the log still holds, per partition."""
    consumer = AIOKafkaConsumer(group_id=None, **settings.kafka.aiokafka_kwargs())
    await consumer.start()
    try:
        tps = [TopicPartition(settings.telemetry_topic, p) for p in partitions]
        return {tp.partition: n for tp, n in (await consumer.beginning_offsets(tps)).items()}
    finally:
        await consumer.stop()


def _next_offsets(positions: dict[StorePartition, int], topic: str) -> dict[int, int]:
    return {tp.partition: offset + 1 for tp, offset in positions.items() if tp.topic == topic}


async def verify_aligned(
    settings: WorkerSettings,
    live: Store,
    shadow: Store,
    *,
    wait_s: float = 30.0,
    sample: int = 10,
) -> Verification:
    """Compares live and shadow at the same log position, while the live store moves on.

    Takes a consistent snapshot of the live store, catches the shadow up to the snapshot's
    offsets, and compares rows; so a difference is a real one, not an event one side has not
    seen yet. If the live store is behind the shadow on a partition, waits up to ``wait_s``
    for the live workers to get there, then compares anyway (``aligned`` False).
    """
    group, topic = settings.group, settings.telemetry_topic
    deadline = time.monotonic() + wait_s
    while True:
        snap = await asyncio.to_thread(live.snapshot, group)
        ahead = _next_offsets(await asyncio.to_thread(shadow.positions, group), topic)
        reached = _next_offsets(snap.positions, topic)
        if all(reached.get(p, 0) >= n for p, n in ahead.items()) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await catch_up(settings, shadow, reached, group)
    mine = await asyncio.to_thread(shadow.snapshot, group)
    return compare(snap, mine, sample)


@dataclass(frozen=True, slots=True)
class RetentionLoss:
    """What a swap gives up once retention deleted the start of the log: state built from
    records the log no longer holds cannot be rebuilt."""

    deleted: dict[int, int]
    """partition -> records retention deleted (the offset the log now starts at)."""
    devices_dropped: tuple[str, ...] = ()
    """Devices in the live state that the rebuilt state does not have (all their events
    aged out)."""

    @property
    def records(self) -> int:
        return sum(self.deleted.values())


@dataclass(frozen=True, slots=True)
class Swapped:
    """A swap's outcome: the new generation, records the workers re-apply, what was lost."""

    generation: int
    reapplied: int
    loss: RetentionLoss | None = None


async def retention_deleted(settings: WorkerSettings) -> dict[int, int]:
    """Per partition whose log no longer starts at offset 0: how many records retention
    deleted."""
    first = await _log_start(settings, await telemetry_partitions(settings))
    return {p: n for p, n in sorted(first.items()) if n > 0}


def refuse_lossy_swap(deleted: dict[int, int], accept_loss: bool) -> None:
    """ConfigError when retention deleted records and the operator did not accept losing them
    (the one rule; the CLI asks before rebuilding, :func:`swap` again before swapping)."""
    if not deleted or accept_loss:
        return
    where = ", ".join(f"partition {p} starts at offset {n:,}" for p, n in deleted.items())
    raise ConfigError(
        f"retention deleted {sum(deleted.values()):,} records of the log ({where}): a swap "
        "would replace state built from them with state that lacks them. Give --accept-loss "
        "to swap anyway (the report lists the devices dropped), or keep the live store"
    )


async def swap(
    settings: WorkerSettings, live: Store, shadow: Store, *, accept_loss: bool = False
) -> Swapped:
    """Makes ``shadow`` the live state under running workers.

    Refused (ConfigError) when retention deleted the start of the log, unless
    ``accept_loss``: then the result says what was lost. The shadow first catches up to the
    live store's current offsets (so the workers have little to re-apply); then
    ``live.swap_in`` replaces projections and the group's offsets in one transaction and
    bumps the generation. Workers notice at their next batch (or within a second when idle),
    drop their caches and seek to the swapped-in offsets: events after them are applied
    once, to the new state; none is lost, none applied twice.
    """
    deleted = await retention_deleted(settings)
    refuse_lossy_swap(deleted, accept_loss)
    group, topic = settings.group, settings.telemetry_topic
    reached = _next_offsets(await asyncio.to_thread(live.positions, group), topic)
    await catch_up(settings, shadow, reached, group)
    mine = _next_offsets(await asyncio.to_thread(shadow.positions, group), topic)
    loss = None
    if deleted:
        kept = {d.device_id for d in await asyncio.to_thread(shadow.devices)}
        gone = [d.device_id for d in await asyncio.to_thread(live.devices)]
        loss = RetentionLoss(deleted, tuple(sorted(d for d in gone if d not in kept)))
    before = _next_offsets(await asyncio.to_thread(live.positions, group), topic)
    generation = await asyncio.to_thread(live.swap_in, shadow, group)
    return Swapped(generation, sum(max(0, before.get(p, 0) - n) for p, n in mine.items()), loss)


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What ``copy_slice`` read and re-published."""

    read: int
    copied: int
    seconds: float


async def copy_slice(
    kafka: KafkaClientSettings,
    topic: str,
    target: str,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    device_id: str | None = None,
    rate: float | None = None,
) -> CopyReport:
    """Re-publishes the records of ``topic`` between the two times (optionally one device's)
    to ``target``, keeping keys, headers (so event ids) and timestamps, at most ``rate``/s.

    The producer is idempotent with acks=all; the copy is at least once: consumers of the
    target dedupe by the ``event_id`` header as they do for the original topic.
    """
    if from_ms is not None and to_ms is not None and to_ms <= from_ms:
        raise ConfigError("--to must come after --from")
    if topic == target:
        raise ConfigError("the target must differ from the topic")
    settings = WorkerSettings(kafka=kafka, telemetry_topic=topic)
    tps = [TopicPartition(topic, p) for p in await telemetry_partitions(settings)]
    await telemetry_partitions(settings.model_copy(update={"telemetry_topic": target}))
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="none",
        **kafka.aiokafka_kwargs(),
    )
    producer = AIOKafkaProducer(enable_idempotence=True, acks="all", **kafka.aiokafka_kwargs())
    await consumer.start()
    await producer.start()
    started = time.monotonic()
    read = copied = 0
    key = device_id.encode() if device_id is not None else None
    try:
        consumer.assign(tps)
        start = await _offsets(consumer, tps, from_ms, end=False)
        end = await _offsets(consumer, tps, to_ms, end=True)
        for tp in tps:
            consumer.seek(tp, start[tp])
        while pending := [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            fetched = await _fetch(consumer, pending, max_records=1000)
            for tp, records in fetched.items():
                for record in records:
                    if record.offset >= end[tp]:
                        break
                    read += 1
                    if key is not None and record.key != key:
                        continue
                    await producer.send(
                        target,
                        value=record.value,
                        key=record.key,
                        headers=list(record.headers),
                        timestamp_ms=record.timestamp,
                    )
                    copied += 1
                    if rate:
                        ahead = copied / rate - (time.monotonic() - started)
                        if ahead > 0:
                            await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return CopyReport(read, copied, time.monotonic() - started)
