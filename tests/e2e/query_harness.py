"""A gateway and a stream worker of the test's own (topics, group, store, ports) for the
query API's end-to-end tests, and small HTTP/SSE clients for them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from contracts.kafka import KafkaClientSettings
from contracts.partitioning import partition_for
from devstack import DevStackSettings
from tests.clients import mosquitto_pub, process_env
from tests.e2e import gateway_harness
from tests.e2e.gateway_harness import GatewayProcess, create_topics, free_port, write_config

RULES = Path(__file__).resolve().parents[2] / "config" / "alerts.example.yaml"


@dataclass
class QueryStack:
    """Names and processes of one stack; ``url`` is the worker's HTTP root."""

    settings: DevStackSettings
    kafka: KafkaClientSettings
    root: Path
    name: str = field(default_factory=lambda: f"q{uuid.uuid4().hex[:10]}")
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    gateway: GatewayProcess | None = None
    port: int = 0

    @property
    def topic(self) -> str:
        return f"t.query.{self.name}.telemetry"

    alerts = "iot.alerts.v1"
    """Alerts go to the platform's topic (the outbox names it); streams filter by device."""

    @property
    def dlq(self) -> str:
        return f"t.query.{self.name}.dlq"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def device(self, suffix: str) -> str:
        return f"{self.name}-{suffix}"

    def start_gateway(self) -> None:
        asyncio.run(create_topics(self.kafka, self.topic, partitions=3))
        asyncio.run(create_topics(self.kafka, self.dlq, partitions=1))
        config = write_config(
            self.root / "gateway.yaml",
            prefix=self.name,
            topic=self.topic,
            dlq=self.dlq,
            mqtt_port=self.settings.broker_port,
            bootstrap=self.kafka.bootstrap,
        )
        self.gateway = GatewayProcess(
            config, f"gw-{self.name}", self.root / "gateway.log", self.settings
        )
        self.gateway.start()
        assert self.gateway.process is not None
        # this stack outlives single tests (module scope): its own stop() ends it
        gateway_harness._STARTED.remove(self.gateway.process)
        self.processes.append(self.gateway.process)
        asyncio.run(self.gateway.wait_ready())

    def start_worker(self, *, group: str | None = None, **extra: str) -> int:
        """A worker of its own group and store; returns its HTTP port."""
        port = free_port()
        group = group or f"g-{self.name}-{port}"
        env = {
            **os.environ,
            **process_env(self.settings),
            "IOT_STREAMS_GROUP": group,
            "IOT_STREAMS_TELEMETRY_TOPIC": self.topic,
            "IOT_STREAMS_QUERY__DLQ_TOPIC": self.dlq,
            "IOT_STREAMS_STORE": f"sqlite:///{self.root / group}.db",
            "IOT_STREAMS_HTTP__PORT": str(port),
            "IOT_STREAMS_ALERT_RULES": str(RULES),
            "IOT_STREAMS_NOTIFIER__ENABLED": "false",
            "IOT_STREAMS_DATA_DIR": str(self.root / f"faust-{port}"),
            "IOT_STREAMS_QUERY__PROCESSES": json.dumps(
                {"gateway": f"http://127.0.0.1:{self.gateway.http_port}/readyz"}
            ),
            **extra,
        }
        log = self.root / f"worker-{port}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "iotctl.main", "streams", "worker"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            try:
                if get_json(f"http://127.0.0.1:{port}/readyz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if not self.port:
            self.port = port
        return port

    def publish(self, device_id: str, reading: dict[str, Any]) -> None:
        topic = f"{self.name}/devices/{device_id}/telemetry"
        mosquitto_pub(
            self.settings, topic, json.dumps(reading).encode(), port=self.settings.broker_port
        )

    def publish_logged(self, device_id: str, reading: dict[str, Any]) -> None:
        """Publishes and returns once the gateway wrote the reading to Kafka (the MQTT
        broker's PUBACK only means the broker has it; read-your-writes starts at the log)."""
        asyncio.run(self._publish_logged(device_id, reading))

    async def _publish_logged(self, device_id: str, reading: dict[str, Any]) -> None:
        tp = TopicPartition(self.topic, partition_for(device_id, 3))
        consumer = AIOKafkaConsumer(
            group_id=None, enable_auto_commit=False, **self.kafka.aiokafka_kwargs()
        )
        await consumer.start()
        try:
            consumer.assign([tp])
            consumer.seek(tp, (await consumer.end_offsets([tp]))[tp])
            await asyncio.to_thread(self.publish, device_id, reading)
            key = device_id.encode()
            async with asyncio.timeout(30):
                while True:  # until this device's record is in the log
                    batch = await consumer.getmany(tp, timeout_ms=500)
                    if any(r.key == key for r in batch.get(tp, [])):
                        return
        finally:
            await consumer.stop()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@contextmanager
def gateway_stack(
    settings: DevStackSettings, kafka: KafkaClientSettings, root: Path
) -> Iterator[QueryStack]:
    """A stack with its gateway started (its workers are the caller's), stopped on exit."""
    stack = QueryStack(settings, kafka, root)
    try:
        stack.start_gateway()
        yield stack
    finally:
        stack.stop()


def get_json(
    url: str, headers: dict[str, str] | None = None, timeout: float = 15
) -> tuple[int, Any]:
    """(status, parsed JSON body); HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def read_sse(
    url: str, count: int, headers: dict[str, str] | None = None, timeout: float = 30
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Yields (event, id, data) of the first ``count`` events (hello included), then closes."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        event, event_id, data = "message", "", ""
        seen = 0
        for raw in response:
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    yield event, event_id, json.loads(data)
                    seen += 1
                    if seen >= count:
                        return
                event, data = "message", ""
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data += line[6:]
