"""Helpers of the stream-worker end-to-end tests: alert rules, the log, end offsets, worker
processes on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from contracts.avro import SchemaCatalog, encode
from contracts.kafka import KafkaClientSettings
from contracts.registry.factory import open_registry
from contracts.topics import ALERTS, TELEMETRY
from devstack import DevStackSettings
from devstack.clients import kafka_client
from streams.decoding import telemetry_event
from streams.domain import TelemetryEvent
from streams.projections.alerts import load_alert_rules
from streams.projections.windows import DEFAULT_WINDOWS
from streams.store.port import Store
from tests.clients import process_env
from tests.e2e.gateway_harness import read_headers, track
from tests.oracle import oracle

TELEMETRY_SUBJECT = f"{TELEMETRY.name}-value"
READING_DEVICES = 12
"""How many devices ``publish_readings`` spreads its records over."""

_ASSIGNED = re.compile(r"assigned \[([0-9, ]*)\]")

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


def worker_env(
    settings: DevStackSettings, topic: str, group: str, store: str, data_dir: Path
) -> dict[str, str]:
    """The environment of a test's worker process: its own topic, group and store, no
    notifier and no query API."""
    return {
        **os.environ,
        **process_env(settings),
        "IOT_STREAMS_GROUP": group,
        "IOT_STREAMS_TELEMETRY_TOPIC": topic,
        "IOT_STREAMS_STORE": store,
        "IOT_STREAMS_NOTIFIER__ENABLED": "false",
        "IOT_STREAMS_QUERY__ENABLED": "false",
        "IOT_STREAMS_DATA_DIR": str(data_dir),
    }


class WorkerProcess:
    """One worker process of the group; its HTTP port serves ``/metrics``."""

    def __init__(self, env: dict[str, str], log: Path, http_port: int) -> None:
        self.http_port = http_port
        self.env = {**env, "IOT_STREAMS_HTTP__PORT": str(self.http_port)}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = track(
                subprocess.Popen(
                    [sys.executable, "-m", "iotctl.main", "streams", "worker"],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def applied(self) -> float:
        """``iot_streams_events_applied_total`` of this process (0 until it serves HTTP)."""
        return self.metric("iot_streams_events_applied_total")

    def metric(self, sample: str) -> float:
        """One sample of ``/metrics``, named with its labels as exposed (e.g.
        ``name{reason="misrouted"}``); 0 while absent or before the process serves HTTP."""
        url = f"http://127.0.0.1:{self.http_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return 0.0
        prefix = sample + " "
        return next((float(x.split()[-1]) for x in text.splitlines() if x.startswith(prefix)), 0.0)

    def readyz(self) -> dict[str, object]:
        """The ``/readyz`` answer (also when it is 503); empty before it serves HTTP."""
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as refused:
            return dict(json.loads(refused.read()))
        except OSError:
            return {}

    def assigned(self) -> set[int]:
        """The partitions of the last assignment this worker logged."""
        found = _ASSIGNED.findall(self.log.read_text(errors="replace"))
        return {int(p) for p in found[-1].split(",") if p.strip()} if found else set()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        """``/readyz`` answers 200 (the worker runs its consumer and store)."""
        url = f"http://127.0.0.1:{self.http_port}/readyz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


async def until(condition: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, what()
        await asyncio.sleep(0.2)


async def publish_readings(
    kafka: KafkaClientSettings, topic: str, first_seq: int, count: int
) -> None:
    """``count`` telemetry records of 12 devices (``dev-0``...), Avro as the gateway writes
    them, with sequence numbers from ``first_seq`` (each device's seq rises by 1 a round)."""
    async with open_registry("embedded", kafka) as registry:
        writer = await registry.register(
            TELEMETRY_SUBJECT, SchemaCatalog.load().latest(TELEMETRY_SUBJECT)
        )
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **kafka.aiokafka_kwargs())
    await producer.start()
    try:
        for n in range(count):
            device, seq = f"dev-{n % READING_DEVICES}", first_seq + n // READING_DEVICES
            record = {
                "event_id": f"{device}:{seq}",
                "device_id": device,
                "ts": 1_767_225_600_000 + seq * 1000,
                "received_at": 1_767_225_600_000 + seq * 1000,
                "seq": seq,
                "metrics": {"temp_c": 20.0 + n % 5},
                "attributes": {},
            }
            await producer.send(topic, key=device.encode(), value=encode(record, writer))
        await producer.flush()
    finally:
        await producer.stop()
