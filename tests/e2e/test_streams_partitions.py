"""Finding 4, end to end: records that librdkafka's default partitioner (kcat's) put on
another partition than the platform's are skipped and counted, never applied by a second
writer; a worker refuses a partition count its store did not plan, until `iotctl replay
repartition` records it."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
from confluent_kafka import Producer

from contracts.avro import SchemaCatalog, encode
from contracts.partitioning import partition_for
from contracts.registry.factory import open_registry
from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.store import SqliteStore
from tests.clients import iotctl
from tests.e2e.gateway_harness import create_topics
from tests.e2e.streams_harness import WorkerProcess, publish_readings, until, worker_env
from tests.stacks import free_ports

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SUBJECT = "iot.telemetry.v1-value"
MISROUTED = 'iot_streams_events_skipped_total{reason="misrouted"}'


async def _publish_with_librdkafka(
    settings: DevStackSettings, topic: str, devices: list[str]
) -> None:
    """One reading per device through librdkafka's default partitioner (CRC32 of the key)."""
    kafka = kafka_client(settings)
    async with open_registry("embedded", kafka) as registry:
        writer = await registry.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    producer = Producer({**kafka.confluent_config(), "acks": "all"})
    for device in devices:
        record = {
            "event_id": f"{device}:900",
            "device_id": device,
            "ts": 1_767_225_900_000,
            "received_at": 1_767_225_900_000,
            "seq": 900,
            "metrics": {"temp_c": 30.0},
        }
        producer.produce(topic, key=device.encode(), value=encode(record, writer))
    assert producer.flush(30) == 0


async def test_stray_records_are_skipped_and_an_unplanned_count_is_refused(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    kafka, topic, group = kafka_client(settings), unique("telemetry"), unique("workers")
    await create_topics(kafka, topic, partitions=3)
    await publish_readings(kafka, topic, 1, 120)  # 12 devices, the platform's partitioner
    devices = [f"dev-{n}" for n in range(12)]
    await _publish_with_librdkafka(settings, topic, devices)
    stray = [d for d in devices if zlib.crc32(d.encode()) % 3 != partition_for(d, 3)]
    assert stray, "the two partitioners agree on every device: pick other ids"
    store = tmp_path / "state.db"
    env = worker_env(settings, topic, group, f"sqlite:///{store}", tmp_path / "faust")

    def worker(name: str) -> WorkerProcess:
        [port] = free_ports(1)
        process = WorkerProcess(env, tmp_path / f"{name}.log", port)
        process.start()
        return process

    first = worker("first")
    try:
        await until(
            lambda: first.applied() + first.metric(MISROUTED) >= 132,
            90,
            lambda: f"applied {first.applied()}\n{first.log.read_text()[-2000:]}",
        )
        assert first.applied() == 120 + len(devices) - len(stray)
        assert first.metric(MISROUTED) == len(stray)
    finally:
        assert first.terminate() == 0

    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_partitions({topic: NewPartitions(total_count=5)})
    finally:
        await admin.close()
    refusing = worker("refusing")
    try:
        await until(
            lambda: "repartition" in str(refusing.readyz().get("problem", "")),
            90,
            lambda: f"{refusing.readyz()}\n{refusing.log.read_text()[-2000:]}",
        )
        assert refusing.applied() == 0
    finally:
        assert refusing.terminate() == 0

    grown = await asyncio.to_thread(
        iotctl, env, "replay", "repartition", "--partitions", "5", "--execute", "--json"
    )
    assert grown.returncode == 0, grown.stderr
    assert json.loads(grown.stdout)["executed"] is True
    await publish_readings(kafka, topic, 20, 60)  # now on 5 partitions
    after = worker("after")
    try:
        await until(
            lambda: after.applied() >= 60,
            90,
            lambda: f"applied {after.applied()}\n{after.log.read_text()[-2000:]}",
        )
        assert after.ready()
    finally:
        assert after.terminate() == 0
    shadow = f"sqlite:///{tmp_path / 'shadow.db'}"
    rebuilt = await asyncio.to_thread(
        iotctl, env, "replay", "rebuild", "--shadow", shadow, "--verify", "--jobs", "2", "--json"
    )
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr  # old records, old count
    assert json.loads(rebuilt.stdout)["verify"]["equal"] == {
        "devices": True,
        "windows": True,
        "alerts": True,
    }
    reader = SqliteStore(store)
    try:
        assert sum(d.count for d in reader.devices()) == 120 + len(devices) - len(stray) + 60
        layout = reader.partition_layout(topic)
        assert layout is not None
        assert layout.partitions == 5
    finally:
        reader.close()
