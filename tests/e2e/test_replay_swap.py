"""Acceptance of replay: corrupt a running worker's state, ``rebuild --verify --swap`` names
the corrupted keys and repairs them while ingest continues; a caught-up live store rebuilds
to its own hash."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.avro import SchemaCatalog, encode
from contracts.kafka import KafkaClientSettings
from contracts.registry.factory import open_registry
from devstack import DevStackSettings
from streams.replay.rebuild import rebuild, state_hashes
from streams.settings import WorkerSettings
from streams.store.sqlite import SqliteStore
from tests.clients import process_env
from tests.e2e.gateway_harness import free_port, track
from tests.e2e.streams_harness import RULES, assert_state_matches_log, end_offsets

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SUBJECT = "iot.telemetry.v1-value"
PARTITIONS, DEVICES, PRELOAD = 3, 30, 3000
BASE = 1_767_225_600_000


class Feed:
    """Publishes telemetry with per-device seq, some records twice (gateway resends)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, writer: Any) -> None:
        self.producer, self.topic, self.writer = producer, topic, writer
        self.seq: dict[str, int] = {}
        self.sent = 0

    async def publish(self, device: str) -> None:
        seq = self.seq[device] = self.seq.get(device, 0) + 1
        n = self.sent
        record = {
            "event_id": f"{device}:{seq}",
            "device_id": device,
            "ts": BASE + seq * 1000,
            "received_at": BASE + seq * 1000 + 3,
            "seq": seq,
            "metrics": {"temp_c": 20.0 + (n * 7) % 9, "humidity_pct": 40.0 + (n * 3) % 11},
            "attributes": {},
        }
        value = encode(record, self.writer)
        copies = 2 if n % 53 == 0 else 1
        for _ in range(copies):
            await self.producer.send(self.topic, key=device.encode(), value=value)
            self.sent += 1

    async def run(self, devices: list[str], stop: asyncio.Event, per_s: float) -> None:
        i = 0
        while not stop.is_set():
            await self.publish(devices[i % len(devices)])
            i += 1
            if i % 20 == 0:
                await self.producer.flush()
                await asyncio.sleep(20 / per_s)
        await self.producer.flush()


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text()[-chars:]


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return track(
            subprocess.Popen(
                [sys.executable, "-m", "iotctl.main", "streams", "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        )


def _positions(store: SqliteStore, group: str) -> dict[int, int]:
    return {tp.partition: offset + 1 for tp, offset in store.positions(group).items()}


async def _caught_up(
    kafka: KafkaClientSettings, topic: str, store: SqliteStore, group: str, worker: Any, log: Path
) -> dict[int, int]:
    ends = await end_offsets(kafka, topic, PARTITIONS)
    deadline = time.monotonic() + 90
    while _positions(store, group) != {p: o for p, o in ends.items() if o}:
        assert worker.poll() is None, _tail(log)
        assert time.monotonic() < deadline, (_positions(store, group), ends)
        await asyncio.sleep(0.2)
    return ends


async def test_rebuild_verify_swap_repairs_corrupted_state_while_ingest_continues(
    settings: DevStackSettings,
    kafka_admin: KafkaClientSettings,
    unique: Callable[[str], str],
    tmp_path: Path,
) -> None:
    topic, group = unique("telemetry"), unique("group")
    admin = AIOKafkaAdminClient(**kafka_admin.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    async with open_registry("embedded", kafka_admin) as registry:
        writer = await registry.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    producer = AIOKafkaProducer(acks="all", linger_ms=5, **kafka_admin.aiokafka_kwargs())
    await producer.start()
    feed = Feed(producer, topic, writer)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    live_db, log = tmp_path / "live.db", tmp_path / "worker.log"
    env = {
        **os.environ,
        **process_env(settings),
        "IOT_STREAMS_TELEMETRY_TOPIC": topic,
        "IOT_STREAMS_GROUP": group,
        "IOT_STREAMS_STORE": f"sqlite:///{live_db}",
        "IOT_STREAMS_ALERT_RULES": str(rules),
        "IOT_STREAMS_NOTIFIER__ENABLED": "false",
        "IOT_STREAMS_HTTP__PORT": str(free_port()),
    }
    live = SqliteStore(live_db)
    live.migrate()
    try:
        for i in range(PRELOAD):
            await feed.publish(f"dev-{i % DEVICES}")
        await producer.flush()
        worker = _start_worker(env, log)
        await _caught_up(kafka_admin, topic, live, group, worker, log)

        # A bug (or a hand edit) damages devices that see no more events below.
        with sqlite3.connect(live_db) as db:
            db.execute("UPDATE devices SET count = count + 1000 WHERE device_id = 'dev-25'")
            db.execute("DELETE FROM windows WHERE device_id = 'dev-27' AND metric = 'temp_c'")
            db.execute("UPDATE alert_states SET value = -1 WHERE device_id = 'dev-28'")

        stop = asyncio.Event()
        ingest = asyncio.create_task(feed.run([f"dev-{i}" for i in range(10)], stop, 400))
        await asyncio.sleep(1.0)
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "iotctl.main",
                "replay",
                "rebuild",
                "--store",
                f"sqlite:///{live_db}",
                "--shadow",
                f"sqlite:///{tmp_path / 'shadow.db'}",
                "--verify",
                "--swap",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        await asyncio.sleep(1.0)  # ingest goes on after the swap too
        stop.set()
        await ingest
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        check = report["verify"]
        assert check["aligned"], check
        assert check["equal"] == {"devices": False, "windows": False, "alerts": False}
        assert check["differing_devices"] == ["dev-25", "dev-27", "dev-28"]
        assert check["differing_keys"]["devices"] == ["dev-25"]
        assert check["differing_keys"]["windows"]
        assert all(k.startswith("dev-27/temp_c/") for k in check["differing_keys"]["windows"])
        assert all(k.startswith("dev-28/") for k in check["differing_keys"]["alerts"])
        assert report["swap"]["generation"] == 1

        await _caught_up(kafka_admin, topic, live, group, worker, log)
        assert "store swapped to generation 1" in _tail(log, 10**7)
        assert feed.sent > PRELOAD + 400  # ingest really ran during the swap
        await assert_state_matches_log(settings, topic, PARTITIONS, live, rules, feed.sent)

        # A rebuild of the caught-up live store gives the live hash.
        again = SqliteStore(tmp_path / "again.db")
        again.migrate()
        worker_settings = WorkerSettings(
            telemetry_topic=topic, group=group, kafka=kafka_admin, alert_rules=rules
        )
        rebuilt = await rebuild(worker_settings, again)
        assert rebuilt.hashes == state_hashes(live)
        again.close()
        worker.terminate()
        assert worker.wait(60) == 0
    finally:
        live.close()
        with contextlib.suppress(Exception):
            await producer.stop()
