"""Helpers of the stream-worker end-to-end tests: alert rules, the log, end offsets."""

from __future__ import annotations

from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.kafka import KafkaClientSettings
from contracts.registry.factory import open_registry
from contracts.topics import ALERTS
from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.decoding import telemetry_event
from streams.domain import TelemetryEvent
from streams.projections.alerts import load_alert_rules
from streams.projections.windows import DEFAULT_WINDOWS
from streams.store.port import Store
from tests.e2e.gateway_harness import read_headers
from tests.oracle import oracle

RULES = """
version: 1
rules:
  - {name: warm, metric: temp_c, above: 24.0, clear_below: 22.0}
  - {name: dry, metric: humidity_pct, below: 45.0, clear_above: 48.0}
"""


async def end_offsets(kafka: KafkaClientSettings, topic: str, partitions: int) -> dict[int, int]:
    consumer = AIOKafkaConsumer(**kafka.aiokafka_kwargs())
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
    finally:
        await consumer.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def log_events(
    kafka: KafkaClientSettings, topic: str, partitions: int
) -> list[TelemetryEvent]:
    """The whole topic, decoded, partition by partition (each device's events in order)."""
    ends = await end_offsets(kafka, topic, partitions)
    events: list[TelemetryEvent] = []
    async with open_registry("embedded", kafka) as registry:
        for partition in range(partitions):
            consumer = AIOKafkaConsumer(**kafka.aiokafka_kwargs(), enable_auto_commit=False)
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


async def assert_state_matches_log(
    settings: DevStackSettings,
    topic: str,
    partitions: int,
    store: Store,
    rules_file: Path,
    acked_ok: int,
) -> None:
    """The store's projections equal the oracle over the whole topic, and every derived alert
    is on ``iot.alerts.v1`` at least once (exactly once after dedupe by event id)."""
    kafka = kafka_client(settings)
    events = await log_events(kafka, topic, partitions)
    assert len(events) >= acked_ok
    expected = oracle(events, windows=DEFAULT_WINDOWS, rules=load_alert_rules(rules_file))
    assert store.devices() == expected.devices
    assert store.windows() == expected.windows
    assert store.alert_states() == expected.alerts
    assert sum(d.duplicates for d in expected.devices) > 0  # duplicates were there to absorb

    wanted = {d.event_id for d in expected.derived}
    assert wanted, "the rules should have fired"
    seen = await read_headers(
        kafka,
        ALERTS.name,
        lambda got: wanted <= {h["event_id"].decode() for h in got},
        timeout_s=60,
    )
    published = [h["event_id"].decode() for h in seen if h["event_id"].decode() in wanted]
    assert set(published) == wanted  # every crossing at least once, exactly once after dedupe
