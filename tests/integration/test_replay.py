"""Replay rebuilds the projections deterministically from the log and finds corrupted state."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from iot_gateway.avro import SchemaCatalog, encode
from iot_gateway.devstack import DevStackSettings
from iot_gateway.kafka_client import KafkaClientSettings
from iot_gateway.registry.factory import open_registry
from streams.errors import ConfigError
from streams.replay import copy_slice, rebuild, verify
from streams.store.sqlite import SqliteStore
from streams.worker.settings import WorkerSettings

SUBJECT = "iot.telemetry.v1-value"
BASE = 1_767_225_600_000
RULES = Path(__file__).resolve().parents[2] / "config" / "alerts.example.yaml"


@pytest.fixture
async def log(settings: DevStackSettings, unique: Callable[[str], str]) -> WorkerSettings:
    """A telemetry topic of 3 partitions holding 1,500 readings of 10 devices (with repeats)."""
    topic = unique("telemetry")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    async with open_registry("embedded", settings.kafka_bootstrap) as registry:
        writer = await registry.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(1500):
            device, seq = f"dev-{i % 10}", i // 10 + 1 - (i % 97 == 0)  # some repeats
            record = {
                "event_id": f"{device}:{seq}",
                "device_id": device,
                "ts": BASE + i * 1000,
                "received_at": BASE + i * 1000 + 5,
                "seq": seq,
                "metrics": {"temp_c": 20 + (i % 23), "humidity_pct": 40 + (i % 11)},
                "attributes": {},
            }
            await producer.send(topic, key=device.encode(), value=encode(record, writer))
        await producer.flush()
    finally:
        await producer.stop()
    return WorkerSettings(
        telemetry_topic=topic,
        kafka=KafkaClientSettings(bootstrap=settings.kafka_bootstrap),
        alert_rules=RULES,
    )


async def test_two_rebuilds_of_the_same_log_have_the_same_state_hash(
    log: WorkerSettings, tmp_path: Path
) -> None:
    first, second = SqliteStore(tmp_path / "a.db"), SqliteStore(tmp_path / "b.db")
    first.migrate()
    second.migrate()
    one = await rebuild(log, first)
    two = await rebuild(log, second)
    assert one.events == two.events == 1500
    assert one.hashes == two.hashes
    assert sum(d.duplicates for d in first.devices()) > 0
    assert verify(first, second).ok


async def test_verify_names_the_corrupted_device(log: WorkerSettings, tmp_path: Path) -> None:
    live, shadow = SqliteStore(tmp_path / "live.db"), SqliteStore(tmp_path / "shadow.db")
    live.migrate()
    shadow.migrate()
    await rebuild(log, live)
    await rebuild(log, shadow)
    with sqlite3.connect(tmp_path / "live.db") as corrupt:  # a bug, or a hand edit
        corrupt.execute("update devices set count = count + 1 where device_id = 'dev-3'")
    check = verify(live, shadow)
    assert not check.ok
    assert check.equal["devices"] is False
    assert check.differing_devices == ["dev-3"]


async def test_bad_ranges_and_unknown_topics_change_nothing(
    log: WorkerSettings, tmp_path: Path, unique: Callable[[str], str]
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.migrate()
    now = int(time.time() * 1000)
    with pytest.raises(ConfigError, match="future"):
        await rebuild(log, store, from_ms=now + 3_600_000)
    with pytest.raises(ConfigError, match="after --from"):
        await rebuild(log, store, from_ms=BASE + 10_000, to_ms=BASE)
    with pytest.raises(ConfigError, match="unknown topic"):
        await rebuild(log.model_copy(update={"telemetry_topic": unique("missing")}), store)
    assert store.devices() == []


async def test_copy_keeps_keys_headers_and_event_ids_for_one_device(
    log: WorkerSettings, settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    target = unique("copy")
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(target, 1, 1)])
    finally:
        await admin.close()
    report = await copy_slice(log.kafka, log.telemetry_topic, target, device_id="dev-4", rate=5000)
    assert (report.read, report.copied) == (1500, 150)
    consumer = AIOKafkaConsumer(
        target, bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    copied = []
    try:
        while len(copied) < 150:
            batch = await consumer.getmany(timeout_ms=1000)
            copied += [r for rs in batch.values() for r in rs]
    finally:
        await consumer.stop()
    assert {r.key for r in copied} == {b"dev-4"}
    async with open_registry("embedded", settings.kafka_bootstrap) as registry:
        first = await registry.decode(copied[0].value)
    assert first["device_id"] == "dev-4"
    assert [r.timestamp for r in copied] == sorted(r.timestamp for r in copied)
    with pytest.raises(ConfigError, match="differ"):
        await copy_slice(log.kafka, target, target)


def _iotctl(log: WorkerSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "IOT_STREAMS_TELEMETRY_TOPIC": log.telemetry_topic,
        "IOT_STREAMS_KAFKA__BOOTSTRAP": log.kafka.bootstrap,
    }
    return subprocess.run(
        [sys.executable, "-m", "iot_gateway.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


async def test_the_cli_plans_rebuilds_verifies_and_refuses_bad_ranges(
    log: WorkerSettings, tmp_path: Path
) -> None:
    planned = await asyncio.to_thread(_iotctl, log, "replay", "rebuild", "--dry-run", "--json")
    assert planned.returncode == 0, planned.stderr
    assert json.loads(planned.stdout)["records"] == 1500
    live = f"sqlite:///{tmp_path / 'live.db'}"
    built = await asyncio.to_thread(_iotctl, log, "replay", "rebuild", "--shadow", live, "--json")
    assert built.returncode == 0, built.stderr
    checked = await asyncio.to_thread(
        _iotctl,
        log,
        "replay",
        "rebuild",
        "--store",
        live,
        "--shadow",
        f"sqlite:///{tmp_path / 'shadow.db'}",
        "--verify",
        "--json",
    )
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["verify"]["equal"] == {
        "devices": True,
        "windows": True,
        "alerts": True,
    }
    hashed = await asyncio.to_thread(_iotctl, log, "state", "hash", "--store", live, "--json")
    assert json.loads(hashed.stdout) == json.loads(built.stdout)["hashes"]
    future = await asyncio.to_thread(
        _iotctl, log, "replay", "rebuild", "--dry-run", "--from", "2099-01-01T00:00Z"
    )
    assert future.returncode == 1
    assert "future" in future.stderr
    garbled = await asyncio.to_thread(
        _iotctl, log, "replay", "rebuild", "--dry-run", "--from", "yesterday"
    )
    assert garbled.returncode == 2
