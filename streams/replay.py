"""Replay: rebuild projections from the event log into a shadow store, and compare.

The rebuild reads the telemetry topic with a consumer of its own (assigned partitions and
seeks, no consumer group), so the live workers' group is never disturbed, and applies the
same processor code as the workers into a separate store. Processors are pure functions of
the log, so a rebuild over the same records gives the same ``state_hash`` as any other.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from iot_gateway.kafka_client import KafkaClientSettings
from iot_gateway.registry.cache import SchemaCache
from iot_gateway.registry.factory import open_registry
from streams.domain import Position, TelemetryEvent
from streams.errors import ConfigError
from streams.processor import BatchProcessor
from streams.projections.alerts import load_alert_rules
from streams.store.port import Projection, Store
from streams.worker.runtime import UNDECODABLE, decode_telemetry
from streams.worker.settings import WorkerSettings

__all__ = [
    "CopyReport",
    "Plan",
    "Progress",
    "RebuildReport",
    "Verification",
    "copy_slice",
    "plan",
    "rebuild",
    "state_hashes",
    "verify",
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


@dataclass(frozen=True, slots=True)
class Verification:
    """Live against shadow, per projection, with a sample of the devices that differ."""

    equal: dict[str, bool]
    live: dict[str, str]
    shadow: dict[str, str]
    differing_devices: list[str] = field(default_factory=list)

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
    consumer: AIOKafkaConsumer, start: dict[TopicPartition, int], from_ms: int
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
                f"--from is before retention: partition {tp.partition} starts at offset "
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
    settings: WorkerSettings, from_ms: int | None = None, to_ms: int | None = None
) -> Plan:
    """The offsets a rebuild from ``from_ms`` to ``to_ms`` would read; nothing is applied.

    ConfigError for a time in the future, ``to`` not after ``from``, an unknown topic, or a
    ``from`` before retention.
    """
    now_ms = time.time_ns() // 1_000_000
    if from_ms is not None and from_ms > now_ms:
        raise ConfigError("--from lies in the future")
    if to_ms is not None and from_ms is not None and to_ms <= from_ms:
        raise ConfigError("--to must come after --from")
    tps = [TopicPartition(settings.telemetry_topic, p) for p in await _partitions(settings)]
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, group_id=None, **settings.kafka.aiokafka_kwargs()
    )
    await consumer.start()
    try:
        consumer.assign(tps)
        start = await _offsets(consumer, tps, from_ms, end=False)
        end = await _offsets(consumer, tps, to_ms, end=True)
        if from_ms is not None:
            await _check_retention(consumer, start, from_ms)
    finally:
        await consumer.stop()
    return Plan(
        {tp.partition: offset for tp, offset in start.items()},
        {tp.partition: offset for tp, offset in end.items()},
    )


async def _partitions(settings: WorkerSettings) -> list[int]:
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


async def _decode(
    registry: SchemaCache, fetched: dict[TopicPartition, list[Any]], end: dict[TopicPartition, int]
) -> tuple[list[tuple[Position, TelemetryEvent]], int]:
    """The fetched records before ``end`` as events, and how many did not decode."""
    batch: list[tuple[Position, TelemetryEvent]] = []
    bad = 0
    for tp, records in fetched.items():
        for record in records:
            if record.offset >= end[tp]:
                break
            try:
                event = await decode_telemetry(registry, record.value)
            except UNDECODABLE:
                bad += 1
                continue
            batch.append((Position(tp.topic, tp.partition, record.offset), event))
    return batch, bad


async def rebuild(
    settings: WorkerSettings,
    shadow: Store,
    *,
    from_ms: int | None = None,
    to_ms: int | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> RebuildReport:
    """Applies the telemetry log's records from ``from_ms`` (None: earliest) up to ``to_ms``
    (None: the end offsets when the rebuild starts) into ``shadow``, in batches."""
    chosen = await plan(settings, from_ms, to_ms)
    rules = load_alert_rules(settings.alert_rules) if settings.alert_rules else ()
    processor = BatchProcessor(shadow, f"replay-{uuid.uuid4().hex[:8]}", rules=rules)
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, group_id=None, **settings.kafka.aiokafka_kwargs()
    )
    await consumer.start()
    started = time.monotonic()
    events = undecodable = 0
    topic = settings.telemetry_topic
    try:
        tps = [TopicPartition(topic, p) for p in sorted(chosen.start)]
        start = {tp: chosen.start[tp.partition] for tp in tps}
        end = {tp: chosen.end[tp.partition] for tp in tps}
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, start[tp])
        async with open_registry(settings.registry, settings.kafka) as registry:
            total = chosen.records
            last_report = time.monotonic()
            while True:
                pending = [tp for tp in tps if await consumer.position(tp) < end[tp]]
                if not pending:
                    break
                fetched = await consumer.getmany(*pending, timeout_ms=1000, max_records=2000)
                batch, bad = await _decode(registry, fetched, end)
                undecodable += bad
                await asyncio.to_thread(processor.apply, batch)
                events += len(batch)
                if progress and time.monotonic() - last_report >= 1.0:
                    last_report = time.monotonic()
                    elapsed = last_report - started
                    rate = events / elapsed if elapsed else 0.0
                    positions = {tp.partition: (await consumer.position(tp), end[tp]) for tp in tps}
                    left = total - events - undecodable
                    eta = left / rate if rate else None
                    progress(Progress(events, elapsed, rate, positions, eta))
    finally:
        await consumer.stop()
    return RebuildReport(
        events=events,
        undecodable=undecodable,
        seconds=time.monotonic() - started,
        start=chosen.start,
        end=chosen.end,
        hashes=state_hashes(shadow),
    )


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
    tps = [TopicPartition(topic, p) for p in await _partitions(settings)]
    await _partitions(settings.model_copy(update={"telemetry_topic": target}))
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, **kafka.aiokafka_kwargs())
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
            fetched = await consumer.getmany(*pending, timeout_ms=1000, max_records=1000)
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
