"""Both ways a worker can consume (whole fetches, or faust's stream) give the same state."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.avro import SchemaCatalog, encode
from contracts.kafka import KafkaClientSettings
from contracts.registry.factory import open_registry
from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.replay.rebuild import state_hashes
from streams.store.sqlite import SqliteStore
from tests.clients import process_env
from tests.e2e.gateway_harness import free_port, track

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

SUBJECT = "iot.telemetry.v1-value"
RULES = Path(__file__).resolve().parents[2] / "config" / "alerts.example.yaml"
EVENTS, PARTITIONS = 3000, 3


async def _preload(kafka: KafkaClientSettings, topic: str) -> None:
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    async with open_registry("embedded", kafka) as registry:
        writer = await registry.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    producer = AIOKafkaProducer(**kafka.aiokafka_kwargs(), acks="all", linger_ms=5)
    await producer.start()
    try:
        for i in range(EVENTS):
            device = f"dev-{i % 30}"
            record = {
                "event_id": f"{device}:{i // 30}",
                "device_id": device,
                "ts": 1_767_225_600_000 + i * 500,
                "received_at": 1_767_225_600_000 + i * 500,
                "seq": i // 30,
                "metrics": {"temp_c": 20.0 + (i * 7) % 19, "battery_pct": 100.0 - i / 40},
                "attributes": {},
            }
            await producer.send(topic, key=device.encode(), value=encode(record, writer))
        await producer.flush()
    finally:
        await producer.stop()


def _run_worker(consumer: str, env: dict[str, str], store: Path, log: Path) -> None:
    """Runs one worker until its store holds the whole topic, then stops it."""
    worker_env = {
        **env,
        "IOT_STREAMS_CONSUMER": consumer,
        "IOT_STREAMS_GROUP": f"{env['IOT_STREAMS_GROUP']}-{consumer}",
        "IOT_STREAMS_STORE": f"sqlite:///{store}",
        "IOT_STREAMS_HTTP__PORT": str(free_port()),
    }
    with log.open("ab") as out:
        process = track(
            subprocess.Popen(
                [sys.executable, "-m", "iotctl.main", "streams", "worker"],
                env=worker_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )
    reader = SqliteStore(store)
    reader.migrate()
    deadline = time.monotonic() + 90
    while (
        sum(offset + 1 for offset in reader.positions(worker_env["IOT_STREAMS_GROUP"]).values())
        < EVENTS
    ):
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.2)
    reader.close()
    process.terminate()
    assert process.wait(60) == 0


async def test_batch_and_faust_consumers_build_the_same_state(
    settings: DevStackSettings, unique: Callable[[str], str], tmp_path: Path
) -> None:
    topic = unique("telemetry")
    await _preload(kafka_client(settings), topic)
    env = {
        **os.environ,
        "IOT_STREAMS_TELEMETRY_TOPIC": topic,
        "IOT_STREAMS_GROUP": unique("group"),
        **process_env(settings),
        "IOT_STREAMS_ALERT_RULES": str(RULES),
        "IOT_STREAMS_NOTIFIER__ENABLED": "false",
        "IOT_STREAMS_RELAY": "false",
    }
    hashes = {}
    for consumer in ("batches", "faust"):
        store = tmp_path / f"{consumer}.db"
        await asyncio.to_thread(_run_worker, consumer, env, store, tmp_path / f"{consumer}.log")
        opened = SqliteStore(store)
        hashes[consumer] = state_hashes(opened)
        assert len(opened.devices()) == 30
        opened.close()
    assert hashes["batches"] == hashes["faust"]
