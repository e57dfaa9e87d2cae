"""Gateway processes for end-to-end tests: real `iotctl gateway run`, killed for real."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from contracts.kafka import KafkaClientSettings
from devstack import DevStackSettings
from tests.clients import process_env
from tests.stacks import free_port

SUBJECT = "iot.telemetry.v1-value"

_STARTED: list[subprocess.Popen[bytes]] = []


def track(process: subprocess.Popen[bytes]) -> subprocess.Popen[bytes]:
    """Remembers a process a test started, so that it is killed if the test fails."""
    _STARTED.append(process)
    return process


def kill_leftovers() -> None:
    """SIGKILLs and reaps every tracked process still running (after each test)."""
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


async def create_topics(
    kafka: KafkaClientSettings,
    *names: str,
    partitions: int = 6,
    replicas: int = 1,
    config: dict[str, str] | None = None,
) -> None:
    admin = AIOKafkaAdminClient(**kafka.aiokafka_kwargs())
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(name, partitions, replicas, topic_configs=config or {}) for name in names]
        )
    finally:
        await admin.close()


def write_config(
    path: Path, *, prefix: str, topic: str, dlq: str, mqtt_port: int, bootstrap: str
) -> Path:
    """A bridge-mode gateway config confined to ``prefix/devices/+/telemetry`` and the test's
    topics, subscribed to Mosquitto on ``mqtt_port``."""
    config: dict[str, Any] = {
        "mode": "bridge",
        "mqtt": {
            "port": mqtt_port,
            "share_group": prefix,
            "filters": [f"{prefix}/devices/+/telemetry/#"],
            "session_expiry_s": 600,
            "receive_maximum": 500,
        },
        "kafka": {"bootstrap": bootstrap, "dlq_topic": dlq, "request_timeout_ms": 10_000},
        "routes": [
            {
                "name": "telemetry",
                "filter": f"{prefix}/devices/+/telemetry",
                "kafka_topic": topic,
                "subject": SUBJECT,
            }
        ],
        "downlink": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def write_direct_config(
    path: Path,
    *,
    port: int,
    topic: str,
    dlq: str,
    kafka: dict[str, Any] | None = None,
    commands: str | None = None,
    **edge: Any,
) -> Path:
    """A direct-mode gateway config: devices on ``127.0.0.1:port``, the telemetry route to the
    test's ``topic``, commands from ``commands`` (none without); ``edge`` and ``kafka`` add
    settings of those sections."""
    config: dict[str, Any] = {
        "mode": "direct",
        "edge": {"host": "127.0.0.1", "port": port, **edge},
        "kafka": {"dlq_topic": dlq, **(kafka or {})},
        "routes": [
            {
                "name": "telemetry",
                "filter": "devices/+/telemetry",
                "kafka_topic": topic,
                "subject": SUBJECT,
            }
        ],
        "downlink": {"enabled": False}
        if commands is None
        else {"enabled": True, "kafka_topic": commands},
    }
    path.write_text(yaml.safe_dump(config))
    return path


async def start_gateway(
    settings: DevStackSettings, folder: Path, *, prefix: str, topic: str, dlq: str
) -> GatewayProcess:
    """A ready gateway of the test's own (``write_config``'s topics, client id ``<prefix>-gw``),
    its config and log in ``folder``."""
    config = write_config(
        folder / "gateway.yaml",
        prefix=prefix,
        topic=topic,
        dlq=dlq,
        mqtt_port=settings.broker_port,
        bootstrap=settings.kafka_bootstrap,
    )
    gateway = GatewayProcess(config, f"{prefix}-gw", folder / "gateway.log", settings)
    gateway.start()
    await gateway.wait_ready()
    return gateway


class GatewayProcess:
    """One ``iotctl gateway run`` process with its own client id and HTTP port."""

    def __init__(
        self,
        config: Path,
        client_id: str,
        log: Path,
        stack: DevStackSettings | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config, self.client_id, self.log = config, client_id, log
        self.stack = stack or DevStackSettings.from_env()
        self.http_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_env = dict(env or {})
        """More of the process's environment (a stepped clock's, say)."""

    def start(self) -> None:
        env = {
            **os.environ,
            **process_env(self.stack),
            "IOT_GATEWAY_MQTT__CLIENT_ID": self.client_id,
            "IOT_GATEWAY_HTTP__PORT": str(self.http_port),
            **self.extra_env,
        }
        with self.log.open("ab") as log:
            self.process = track(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "iotctl.main",
                        "gateway",
                        "run",
                        "--config",
                        str(self.config),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )

    def stats(self) -> dict[str, Any]:
        url = f"http://127.0.0.1:{self.http_port}/stats"
        with urllib.request.urlopen(url, timeout=2) as response:
            return dict(json.loads(response.read()))

    def ready(self) -> bool:
        try:
            return bool(self.stats()["ready"])
        except OSError:
            return False

    async def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(self.ready):
            assert self.process is not None
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"gateway not ready: {self.log.read_text()[-3000:]}"
            await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no draining, no goodbye; whatever was in flight is the broker's to resend."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def pause(self) -> None:
        """SIGSTOP: frozen, sockets open, as in a long pause or a stalled host."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT (harmless when it runs)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def rss_kib(self) -> int:
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


async def read_headers(
    kafka: KafkaClientSettings,
    topic: str,
    done: Callable[[list[dict[str, bytes]]], bool],
    timeout_s: float,
) -> list[dict[str, bytes]]:
    """The headers of every record in ``topic``, read until ``done(seen)`` or time is up."""
    consumer = AIOKafkaConsumer(
        topic, **kafka.aiokafka_kwargs(), auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    seen: list[dict[str, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not done(seen) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            seen.extend(dict(r.headers) for records in batch.values() for r in records)
    finally:
        await consumer.stop()
    return seen


async def event_ids(
    kafka: KafkaClientSettings, topic: str, wanted: set[str], timeout_s: float
) -> list[str]:
    """Every event_id in ``topic`` (with repeats), read until ``wanted`` are all seen."""

    def done(seen: list[dict[str, bytes]]) -> bool:
        return wanted <= {h["event_id"].decode() for h in seen}

    seen = await read_headers(kafka, topic, done, timeout_s)
    return [headers["event_id"].decode() for headers in seen]


def ledger_ids(ledger: Path) -> tuple[set[str], int]:
    """The event ids of acknowledged good publishes, and the count of acknowledged bad ones."""
    good: set[str] = set()
    bad = 0
    for line in ledger.read_text().splitlines():
        entry = json.loads(line)
        if entry["kind"] in ("ok", "duplicate"):
            good.add(f"{entry['device_id']}:{entry['seq']}")
        else:
            bad += 1
    return good, bad
