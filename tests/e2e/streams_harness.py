"""Helpers of the stream-worker end-to-end tests: alert rules, the log, end offsets."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition

from iot_gateway.registry.factory import open_registry
from streams.domain import TelemetryEvent
from streams.worker.runtime import telemetry_event

RULES = """
version: 1
rules:
  - {name: warm, metric: temp_c, above: 24.0, clear_below: 22.0}
  - {name: dry, metric: humidity_pct, below: 45.0, clear_above: 48.0}
"""


async def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def log_events(bootstrap: str, topic: str, partitions: int) -> list[TelemetryEvent]:
    """The whole topic, decoded, partition by partition (each device's events in order)."""
    ends = await end_offsets(bootstrap, topic, partitions)
    events: list[TelemetryEvent] = []
    async with open_registry("embedded", bootstrap) as registry:
        for partition in range(partitions):
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
            await consumer.start()
            try:
                tp = TopicPartition(topic, partition)
                consumer.assign([tp])
                await consumer.seek_to_beginning(tp)
                while await consumer.position(tp) < ends[partition]:
                    batch = await consumer.getmany(tp, timeout_ms=1000)
                    events.extend(
                        [telemetry_event(await registry.decode(r.value)) for r in batch.get(tp, [])]
                    )
            finally:
                await consumer.stop()
    return events
