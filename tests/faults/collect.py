"""Collecting a history: the devices' acknowledged publishes and when, and the Kafka topics.

The simulator writes one ledger line per PUBACK, in the order the PUBACKs arrive, and counts
them in ``report.acked`` in the same step; sampling that counter against the clock (an
:class:`AckClock`) dates every ledger line to within one sampling period. A ledger line and a
log record carry the same fields of a reading (seq, boot, the device's ts, event id, and the
values where nothing else names it), so the checker can match them.
"""

from __future__ import annotations

import bisect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from contracts.kafka import KafkaClientSettings
from contracts.registry.factory import open_registry
from streams.decoding import telemetry_event
from streams.domain import TelemetryEvent
from tests.faults.checker import Ack, Record


@dataclass(slots=True)
class AckClock:
    """Samples of (monotonic time, PUBACKs counted so far) of one simulator run."""

    ledger: Path
    samples: list[tuple[float, int]] = field(default_factory=list)

    def sample(self, acked: int) -> None:
        self.samples.append((time.monotonic(), acked))

    def acks(self) -> list[Ack]:
        """The ledger's lines, each dated to ``(after, by]`` by the samples around it."""
        times = [t for t, _ in self.samples]
        counts = [n for _, n in self.samples]
        acks = []
        lines = self.ledger.read_text().splitlines() if self.ledger.exists() else []
        for index, line in enumerate(lines):
            entry = json.loads(line)
            at = bisect.bisect_right(counts, index)  # first sample that had counted this line
            after = times[at - 1] if at > 0 else float("-inf")
            by = times[at] if at < len(times) else float("inf")
            acks.append(
                Ack(
                    entry["device_id"],
                    entry["seq"],
                    entry["kind"],
                    after,
                    by,
                    boot=entry.get("boot"),
                    ts=entry.get("ts"),
                    sent_id=entry.get("event_id"),
                    values=tuple(sorted(entry.get("metrics", {}).items())),
                    device_kind=entry.get("device_kind", ""),
                    publishes=entry.get("publishes", 1),
                )
            )
        return acks


async def _partitions(client: KafkaClientSettings, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(**client.aiokafka_kwargs())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return sorted(TopicPartition(topic, p["partition"]) for p in described["partitions"])


async def end_offsets(client: KafkaClientSettings, topic: str) -> dict[int, int]:
    """The next offset of each partition of ``topic``."""
    tps = await _partitions(client, topic)
    consumer = AIOKafkaConsumer(**client.aiokafka_kwargs())
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def _read_topic(client: KafkaClientSettings, topic: str) -> dict[int, list[Any]]:
    """Every record of ``topic`` up to its end offsets now, per partition, in offset order."""
    tps = await _partitions(client, topic)
    consumer = AIOKafkaConsumer(**client.aiokafka_kwargs(), enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: dict[int, list[Any]] = {tp.partition: [] for tp in tps}
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, items in batch.items():
                records[tp.partition].extend(r for r in items if r.offset < ends[tp])
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return records


async def read_log(
    client: KafkaClientSettings, topic: str
) -> tuple[list[Record], list[TelemetryEvent]]:
    """The telemetry topic decoded: its records' positions and ids, and the events in log
    order (partition by partition, so each device's events keep their order)."""
    records: list[Record] = []
    events: list[TelemetryEvent] = []
    raw = await _read_topic(client, topic)
    async with open_registry("embedded", client) as registry:
        for partition in sorted(raw):
            for item in raw[partition]:
                event = telemetry_event(await registry.decode(item.value))
                events.append(event)
                records.append(_record(partition, item.offset, event))
    return records, events


def _record(partition: int, offset: int, event: TelemetryEvent) -> Record:
    """The checker's view of one logged event: the device's own ts (None where the gateway
    stamped it), and the values of a reading that has neither seq nor ts."""
    ts = None if event.ts_stamped else event.ts
    bare = event.seq is None and ts is None
    return Record(
        partition,
        offset,
        event.event_id,
        event.device_id,
        event.seq,
        boot=event.boot,
        ts=ts,
        values=tuple(sorted(event.metrics.items())) if bare else (),
    )


async def read_header(client: KafkaClientSettings, topic: str, header: str) -> list[str]:
    """Header ``header`` of every record of ``topic`` (empty string when absent)."""
    raw = await _read_topic(client, topic)
    return [
        dict(item.headers).get(header, b"").decode(errors="replace")
        for partition in sorted(raw)
        for item in raw[partition]
    ]
